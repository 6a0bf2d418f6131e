"""The dataset and its record: layout, safety checks, the lock, the atomic commit."""
