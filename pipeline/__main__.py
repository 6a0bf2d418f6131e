"""The ``logpipe`` command (also ``python -m pipeline``).

Deliberately light: for ``logpipe run`` the fork server is started before typer, pydantic and the
config are imported (see :func:`pipeline.forkserver.start_for_command_line`).
"""

import sys


def main() -> None:
    """Console-script entry point."""
    from pipeline.forkserver import skip_main_import, start_for_command_line

    skip_main_import()
    if sys.argv[1:2] == ["run"]:
        from pipeline.tuning import tune_process

        tune_process()  # before the fork server starts: it inherits the settings
        start_for_command_line(sys.argv[1:])
    from pipeline.cli import app

    app()


if __name__ == "__main__":
    main()
