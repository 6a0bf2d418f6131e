"""Where the bytes come from: local and remote inputs, byte ranges, what an incremental run reads."""
