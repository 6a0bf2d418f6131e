"""The three stages: read (threads), parse (an executor's workers), write (threads)."""
