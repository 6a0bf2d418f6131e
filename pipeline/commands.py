"""What the CLI commands do. ``cli.py`` only declares the command line and calls these."""

from __future__ import annotations

import copy
import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from pipeline.config import Config, ConfigError, load_config
from pipeline.errors import ExitCode, FormatMismatch, Interrupted, LockedError, NoInput
from pipeline.forkserver import start_early
from pipeline.text import safe_text
from pipeline.tuning import tune_process

log = logging.getLogger("pipeline")


class SafeFormatter(logging.Formatter):
    """Escapes control characters in log messages: they carry file names and log text from the
    internet, which must not be able to drive the terminal (tracebacks are left as they are).

    String arguments are escaped whole, newlines included (a file name is untrusted); the message
    itself line by line, so that our own multi-line messages (config errors, the format mismatch)
    still print as separate lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and args:
            record = copy.copy(record)  # other handlers see the record as it was
            record.args = tuple(safe_text(a) if isinstance(a, str) else a for a in args)
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return "\n".join(safe_text(line) for line in super().formatMessage(record).split("\n"))


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
    config: Path | None,
    inputs: list[str] | None,
    output: str | None,
    sets: list[str] | None,
    since: str | None = None,
    until: str | None = None,
) -> Config:
    """Load the config and apply the command line's ``--input``, ``--output``, ``--set``, ``--since``
    and ``--until``."""
    cfg = load_config(config, sets)
    if inputs:  # replaces the config's inputs, [[run.sources]] included (read with run.format)
        cfg.run.inputs = list(inputs)
        cfg.run.sources = []
    if output:
        cfg.run.output = output
    for option, key, value in (("--since", "since", since), ("--until", "until", until)):
        if value is not None:
            data = cfg.run.model_dump() | {key: value}
            try:
                cfg.run = type(cfg.run).model_validate(data)
            except ValueError as exc:
                raise ConfigError(f"{option} {value!r}: {_first_error(exc)}") from exc
    if not cfg.run.inputs and not cfg.run.sources:
        raise ConfigError("no inputs: set run.inputs (or [[run.sources]]) in the config, or pass --input")
    return cfg


def run(
    config: Path | None,
    inputs: list[str] | None,
    output: str | None,
    sets: list[str] | None,
    quiet: bool,
    full_refresh: bool = False,
    since: str | None = None,
    until: str | None = None,
) -> int:
    """``logpipe run``: returns the exit code."""
    try:
        cfg = build_config(config, inputs, output, sets, since, until)
    except ConfigError as exc:
        setup_logging("info")
        log.error("%s", exc)
        return ExitCode.USAGE
    # --quiet (cron): nothing on success; on a problem, one line each (see report.problems)
    setup_logging("error" if quiet else cfg.run.log_level)
    tune_process()
    if cfg.parse.executor == "process":
        start_early(cfg.parse.start_method)
    # imported only now: pyarrow and numpy load while the fork server boots on the other core
    from pipeline.report import problems, summary
    from pipeline.runner import run_pipeline

    with signals_raise():
        result = run_pipeline(cfg, full_refresh)
    if quiet:
        for line in problems(result.manifest):
            log.error("%s", line)
        return int(result.exit_code)
    error = result.error
    if isinstance(error, LockedError | NoInput | FormatMismatch):
        log.error("%s", error)
    elif isinstance(error, Interrupted):
        log.warning("run interrupted by signal %d; previous output untouched", error.signum)
    elif error is not None:
        log.error("run failed: %s", error, exc_info=cfg.run.log_level == "debug")
    print(summary(result.manifest))  # noqa: T201 - the summary is the command's output
    return int(result.exit_code)


def _first_error(exc: ValueError) -> str:
    """The message of a pydantic error without its location and input (the caller names them)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first["msg"]).removeprefix("Value error, ")
    return str(exc)


def validate_config(path: Path) -> int:
    """``logpipe validate-config``: 0 and the resolved config, or 2 and the errors."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return ExitCode.USAGE
    print(cfg.resolved().model_dump_json(indent=2))  # noqa: T201
    return ExitCode.OK


DETECT_LINES = 1000  # lines of each file that `logpipe detect` tries the formats on
DETECT_BYTES = 4 << 20  # at most this much of each file is decompressed for it


def detect(paths: list[Path]) -> int:
    """``logpipe detect``: the built-in format that parses most of each file's first lines; 0 when
    every file has one, 1 when some file has none (or cannot be read)."""
    from pipeline.formats import detect as rank
    from pipeline.formats.jsonl import suggest
    from pipeline.formats.spec import BUILTINS
    from pipeline.read import head_lines

    setup_logging("warning")
    code = ExitCode.OK
    for path in paths:
        name = safe_text(str(path))
        try:
            lines = head_lines(str(path), DETECT_LINES, DETECT_BYTES)
        except (OSError, EOFError, ValueError) as exc:
            log.error("%s: cannot read: %s", name, exc)
            code = ExitCode.FAILURE
            continue
        best, rows = rank(lines)[0] if lines else ("", 0)
        suggested = suggest(lines) if rows == 0 else None
        if suggested is not None:
            objects, mapping = suggested
            toml = "\n".join(f"  {column} = {json.dumps(key)}" for column, key in mapping.items())
            share = f"{objects:,} of its first {len(lines):,} non-empty lines are JSON objects"
            out = f"{name}: JSON lines, {share}; read them with\n  [run.format.jsonl]\n{toml}"
        elif rows == 0:
            out = (
                f"{name}: no built-in format parses its first {len(lines):,} lines; paste the server's "
                "format into the config as [run.format] nginx = '...' or apache = '...'"
            )
            code = ExitCode.FAILURE
        else:
            dialect, text = BUILTINS[best]
            share = f"{rows:,} of its first {len(lines):,} non-empty lines ({rows / len(lines):.1%})"
            out = f"{name}: {best}, {share}\n  run.format = \"{best}\"  # {dialect}: '{text}'"
        print(out)  # noqa: T201 - the command's output
    return int(code)
