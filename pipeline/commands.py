"""What the CLI commands do. ``cli.py`` only declares the command line and calls these."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from pipeline.config import Config, ConfigError, load_config
from pipeline.errors import ExitCode, Interrupted, LockedError
from pipeline.forkserver import start_early
from pipeline.text import safe_text
from pipeline.tuning import tune_process

log = logging.getLogger("pipeline")


class SafeFormatter(logging.Formatter):
    """Escapes control characters in log messages: they carry file names and log text from the
    internet, which must not be able to drive the terminal (tracebacks are left as they are)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record))


def setup_logging(level: str) -> None:
    """Log to stderr with timestamps; stdout is kept for the summary."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` in the main thread while the run lasts."""

    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:  # a second Ctrl-C must not cut short the cleanup of the first
            log.warning("signal %d: already stopping, cleaning up", signum)
            return
        stopping = True
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def build_config(
    config: Path | None, inputs: list[str] | None, output: str | None, sets: list[str] | None
) -> Config:
    """Load the config and apply the command line's ``--input``, ``--output`` and ``--set``."""
    cfg = load_config(config, sets)
    if inputs:
        cfg.run.inputs = list(inputs)
    if output:
        cfg.run.output = output
    if not cfg.run.inputs:
        raise ConfigError("no inputs: set run.inputs in the config or pass --input")
    return cfg


def run(
    config: Path | None,
    inputs: list[str] | None,
    output: str | None,
    sets: list[str] | None,
    quiet: bool,
    full_refresh: bool = False,
) -> int:
    """``logpipe run``: returns the exit code."""
    try:
        cfg = build_config(config, inputs, output, sets)
    except ConfigError as exc:
        setup_logging("info")
        log.error("%s", exc)
        return ExitCode.USAGE
    setup_logging(cfg.run.log_level)
    tune_process()
    if cfg.parse.executor == "process":
        start_early(cfg.parse.start_method)
    # imported only now: pyarrow and numpy load while the fork server boots on the other core
    from pipeline.report import summary
    from pipeline.runner import run_pipeline

    with signals_raise():
        result = run_pipeline(cfg, full_refresh)
    if isinstance(result.error, LockedError):
        log.error("%s", result.error)
    elif result.error is not None and not isinstance(result.error, Interrupted):
        log.error("run failed: %s", result.error, exc_info=cfg.run.log_level == "debug")
    elif isinstance(result.error, Interrupted):
        log.warning("run interrupted by signal %d; previous output untouched", result.error.signum)
    if not quiet:
        print(summary(result.manifest))  # noqa: T201 - the summary is the command's output
    return int(result.exit_code)


def validate_config(path: Path) -> int:
    """``logpipe validate-config``: 0 and the resolved config, or 2 and the errors."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return ExitCode.USAGE
    print(cfg.resolved().model_dump_json(indent=2))  # noqa: T201
    return ExitCode.OK
