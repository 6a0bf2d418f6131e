"""What bounds each stage: per-stage timing and verdicts, and ``logpipe profile``."""
