"""The three stages: read (threads), parse (an executor's workers), write (threads).

``read``, ``parse`` and ``write`` do the work of each; ``intake`` (the read threads), ``dispatch`` (the
parse stage's dispatch and collect threads) and ``write.write_results`` (a write thread) move it, over
the bounded channels of ``flow``.
"""
