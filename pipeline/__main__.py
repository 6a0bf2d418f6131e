"""``python -m pipeline`` is the ``logpipe`` command."""

from pipeline.cli import main

main()
