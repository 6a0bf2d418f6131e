"""What the CLI commands do. ``cli.py`` only declares the command line and calls these."""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pipeline import defaults
from pipeline.config import Config, ConfigError, load_config
from pipeline.config_source import compiled_for, input_bytes
from pipeline.errors import (
    ExitCode,
    FormatMismatch,
    HistoryShrinks,
    Interrupted,
    LockedError,
    NoInput,
    PathConflict,
    Refused,
)
from pipeline.executors.forkserver import start_early
from pipeline.inputs.remote import redact_text
from pipeline.output.signals import signals_raise
from pipeline.runtime import tune_process
from pipeline.text import safe_text

if TYPE_CHECKING:
    from pipeline.output.manifest import Extras, Manifest
    from pipeline.report.history import DateRange

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
        return safe_lines(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return redact_text(super().formatException(ei))


def safe_lines(text: str) -> str:
    """``text`` fit for a terminal: secrets redacted (a URL's userinfo or signature, a storage
    option's secret), control characters escaped line by line (its own newlines kept)."""
    return "\n".join(safe_text(line) for line in redact_text(text).split("\n"))


def setup_logging(level: str) -> None:
    """Log to stderr with timestamps; stdout is kept for the summary."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


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
    report: Path | None = None,
    allow_shrink: bool = False,
) -> int:
    """``logpipe run``: returns the exit code."""
    try:
        cfg = build_config(config, inputs, output, sets, since, until)
        if report is not None:
            cfg.run.report = str(report)
    except ConfigError as exc:
        setup_logging("info")
        log.error("%s", exc)
        return ExitCode.USAGE
    # --quiet (cron): nothing on success; on a problem, one line each (see report.problems)
    setup_logging("error" if quiet else cfg.run.log_level)
    tune_process()
    if cfg.parse.executor == "process":
        inputs = [*cfg.run.inputs, *(path for source in cfg.run.sources for path in source.inputs)]
        wanted = compiled_for(cfg.parse.compiled, input_bytes(inputs, defaults.COMPILED_MIN_BYTES))
        start_early(cfg.parse.start_method, wanted)
    # imported only now: pyarrow and numpy load while the fork server boots on the other core
    from pipeline.output.manifest import as_manifest
    from pipeline.report.summary import problems, summary
    from pipeline.runner import run_pipeline

    protected = [config.parent] if config is not None else []
    with signals_raise():
        result = run_pipeline(cfg, full_refresh, protected=protected, allow_shrink=allow_shrink)
    manifest = as_manifest(result.manifest)
    if cfg.run.report and result.extras is not None:
        _write_report(manifest, cast("Extras", result.extras), Path(cfg.run.report))
    if quiet:
        for line in problems(manifest):
            log.error("%s", line)
        return int(result.exit_code)
    error = result.error
    if isinstance(error, LockedError | NoInput | FormatMismatch | Refused | PathConflict | HistoryShrinks):
        log.error("%s", error)
    elif isinstance(error, Interrupted) and error.committed:
        log.warning(
            "signal %d arrived during the commit, which was completed first: the new dataset and its "
            "record are published",
            error.signum,
        )
    elif isinstance(error, Interrupted):
        log.warning("run interrupted by signal %d; previous output untouched", error.signum)
    elif error is not None:
        log.error("run failed: %s", error, exc_info=cfg.run.log_level == "debug")
    print(summary(manifest))  # noqa: T201 - the summary is the command's output
    return int(result.exit_code)


def compact(output: str, config: Path | None, sets: list[str] | None, min_files: int, quiet: bool) -> int:
    """``logpipe compact``: merge the small files of the output's date partitions; returns the exit
    code (0 also when there was nothing to compact)."""
    try:
        cfg = load_config(config, sets)
    except ConfigError as exc:
        setup_logging("info")
        log.error("%s", exc)
        return ExitCode.USAGE
    setup_logging("error" if quiet else "warning")
    from pipeline.output.compact import Sizes
    from pipeline.output.compact import compact as compaction
    from pipeline.output.layout import Layout

    with signals_raise():
        outcome = compaction(Layout.of(output, cfg.run.meta_dir), Sizes.of(cfg.write), min_files)
    if isinstance(outcome.error, Interrupted):
        log.warning("compaction interrupted by signal %d; the dataset is as it was", outcome.error.signum)
    elif outcome.error is not None:
        log.error("%s", outcome.error)
    elif outcome.signal is not None:
        log.warning(
            "signal %d arrived during the commit, which was completed first: the compacted files are "
            "published",
            outcome.signal,
        )
    if not quiet and outcome.error is None:
        print(outcome.summary())  # noqa: T201 - the command's output
    return int(outcome.exit_code)


def _write_report(manifest: Manifest, extras: Extras | None, to: Path) -> bool:
    """Render the HTML run report to ``to``; a report that cannot be written is logged, and does not
    change the run's exit code (the data is committed, and ``logpipe report`` can draw it again)."""
    from pipeline.report.data import report_data
    from pipeline.report.html import render

    return _write_html(render(report_data(manifest, extras)), to)


def _write_html(html: str, to: Path) -> bool:
    """Write a report page atomically (a reader never sees half of it); False, logged, when it cannot."""
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
        tmp = to.with_name(f".{to.name}.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(to)
    except OSError as exc:
        log.error("cannot write the report %s: %s", to, exc)
        return False
    log.info("report: %s", to)
    return True


def report(path: Path, to: Path, since: str | None = None, until: str | None = None) -> int:
    """``logpipe report``: draw an earlier run's report from its record, or the report of a date range of
    a dataset (``--since``/``--until``, both days included) from its Parquet files; which one is told by
    what ``path`` holds (:func:`pipeline.report.data.what_is`). 0; 1 when the record or the dataset
    cannot be read or the file cannot be written; 2 for a bad date range, or one given with a record."""
    from pipeline.report.data import find_record, what_is
    from pipeline.report.history import DateRange, parse_date

    setup_logging("warning")
    try:
        span = DateRange(parse_date("--since", since), parse_date("--until", until))
    except ValueError as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    kind = what_is(path)
    if kind is None:
        log.error(
            "%s: neither a run record (a manifest, last-run.json, OUTPUT.meta or its current/) nor a "
            "dataset (a directory of date=YYYY-MM-DD partitions, or with a record beside it)",
            path,
        )
        return ExitCode.FAILURE
    if kind == "dataset":
        return _history_report(path, span, to)
    if span != DateRange():
        log.error("%s is a run record: --since and --until take a dataset (the output directory)", path)
        return ExitCode.USAGE
    try:
        manifest, extras = find_record(path)
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return ExitCode.FAILURE
    if extras is None:
        log.warning("%s: no report data beside the manifest: the report has the numbers only", path)
    ok = _write_report(manifest, extras, to)
    if ok:
        print(f"report: {to}")  # noqa: T201 - the command's output
    return ExitCode.OK if ok else ExitCode.FAILURE


def _history_report(output: Path, span: DateRange, to: Path) -> int:
    """The report of the dates of the dataset ``output`` in ``span`` ."""
    from pipeline.report.history import HistoryError, history_data
    from pipeline.report.html import render

    try:
        data = history_data(output.resolve(), span)
    except HistoryError as exc:
        log.error("%s", exc)
        return ExitCode.FAILURE
    covers = data["history"]
    if not covers["dates"]:
        log.warning("%s: no date of the dataset is in the range: the report says so", output)
    if not _write_html(render(data), to):
        return ExitCode.FAILURE
    first, last = covers["first"] or "-", covers["last"] or "-"
    print(f"report: {to} ({covers['dates']} dates, {first} to {last}, {data['rows']:,} rows)")  # noqa: T201
    return ExitCode.OK


def profile(
    config: Path | None,
    inputs: list[str] | None,
    sets: list[str] | None,
    budget: str,
    write: Path | None,
) -> int:
    """``logpipe profile``: sample runs within the budget, the verdicts, the recommended settings."""
    from pipeline.diagnostics.profile import ProfileError, report, run_profile, write_config

    try:
        cfg = build_config(config, inputs, None, sets)
        budget_s = _seconds(budget)
    except ConfigError as exc:
        setup_logging("info")
        log.error("%s", exc)
        return ExitCode.USAGE
    setup_logging("warning")
    tune_process()
    start_early(cfg.parse.start_method)  # trials on processes, whatever the starting executor

    def progress(t: Any) -> None:
        what = ", ".join(f"{k}={v}" for k, v in t.changes.items()) or "starting config"
        log.warning("profile: %.2f s  %s", t.wall_s, what)

    try:
        with signals_raise():
            prof = run_profile(cfg, budget_s, progress if sys.stderr.isatty() else lambda t: None)
    except ProfileError as exc:
        log.error("%s", exc)
        return ExitCode.FAILURE
    print(report(prof))  # noqa: T201 - the command's output
    if write is not None:
        try:
            write_config(prof, config, write)
        except (OSError, ConfigError) as exc:
            log.error("cannot write %s: %s", write, exc)
            return ExitCode.FAILURE
        print(f"wrote {write} (check it with: logpipe validate-config {write})")  # noqa: T201
    return ExitCode.OK


def _seconds(text: str) -> float:
    """A duration such as ``30``, ``30s``, ``2m``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min)?\s*", text)
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(f"--budget {text!r}: a duration such as 30s or 2m")
    return float(m.group(1)) * (60 if m.group(2) in ("m", "min") else 1)


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
        # keys and values come from the file: escaped as `run` escapes its log
        print(safe_lines(str(exc)), file=sys.stderr)  # noqa: T201
        return ExitCode.USAGE
    from pipeline.inputs.remote import redact_config

    # storage_options' values are credentials: shown masked, as in the manifest
    print(json.dumps(redact_config(cfg.resolved().model_dump(mode="json")), indent=2))  # noqa: T201
    return ExitCode.OK


DETECT_LINES = 1000  # lines of each file that `logpipe detect` tries the formats on
DETECT_BYTES = 4 << 20  # at most this much of each file is decompressed for it
DETECT_THREADS = 8  # files read at once: the heads of many small objects are a round trip each


@dataclass(frozen=True)
class Verdict:
    """What ``logpipe detect`` found of one file: its format (a built-in's name, or a JSON lines
    mapping), how many of its first lines that reads; neither when none does; ``error`` when the file
    cannot be read."""

    path: str
    lines: int = 0
    rows: int = 0
    builtin: str = ""
    mapping: dict[str, str] | None = None
    error: str = ""

    @property
    def name(self) -> str:
        return safe_text(self.path)

    def line(self) -> str:
        """The verdict in one line."""
        if self.mapping is not None:
            objects = f"{self.rows:,} of its first {self.lines:,} non-empty lines are JSON objects"
            return f"{self.name}: JSON lines, {objects}"
        if self.builtin:
            share = (
                f"{self.rows:,} of its first {self.lines:,} non-empty lines ({self.rows / self.lines:.1%})"
            )
            return f"{self.name}: {self.builtin}, {share}"
        return f"{self.name}: no built-in format parses its first {self.lines:,} lines"


def _judge(path: str) -> Verdict:
    from pipeline.formats import choose
    from pipeline.formats import detect as rank
    from pipeline.formats.jsonl import suggest
    from pipeline.stages.read import head_lines

    try:
        lines = head_lines(path, DETECT_LINES, DETECT_BYTES)
    except (OSError, EOFError, ValueError) as exc:
        return Verdict(path, error=str(exc))
    best, rows = rank(lines)[0] if lines else ("", 0)
    key, count = (choose(lines) or ("", 0)) if lines else ("", 0)
    if isinstance(key, str) and count > rows:
        best, rows = key, count  # a format known by its headers (a W3C file's directives)
    suggested = suggest(lines) if rows == 0 else None
    if suggested is not None:
        return Verdict(path, len(lines), suggested[0], mapping=suggested[1])
    return Verdict(path, len(lines), rows, best if rows else "")


def _format_comment(builtin: str) -> str:
    """What a built-in format is: its format string, or the server whose documentation defines it."""
    from pipeline.formats.json_servers import JSON_SERVERS
    from pipeline.formats.servers import SERVERS
    from pipeline.formats.spec import BUILTINS
    from pipeline.formats.w3c import DIALECTS

    if builtin in BUILTINS:
        dialect, text = BUILTINS[builtin]
        return f"{dialect}: '{text}'"
    server = SERVERS.get(builtin) or JSON_SERVERS.get(builtin) or DIALECTS[builtin]
    return f"{server.title}: {server.url}"


def _setting(verdict: Verdict) -> str:
    """The ``format = ...`` value (TOML) that reads a file."""
    if verdict.mapping is not None:
        pairs = ", ".join(f"{column} = {json.dumps(key)}" for column, key in verdict.mapping.items())
        return f"{{jsonl = {{{pairs}}}}}"
    return json.dumps(verdict.builtin)


def _detail(verdict: Verdict) -> str:
    """One file's verdict with the setting that reads it, on lines of their own."""
    if verdict.mapping is not None:
        toml = "\n".join(f"  {column} = {json.dumps(key)}" for column, key in verdict.mapping.items())
        return f"{verdict.line()}; read them with\n  [run.format.jsonl]\n{toml}"
    if not verdict.builtin:
        return f"{verdict.line()}; {_PASTE}"
    return f"{verdict.line()}\n  run.format = {_setting(verdict)}  # {_format_comment(verdict.builtin)}"


_PASTE = "paste the server's format into the config as [run.format] nginx = '...' or apache = '...'"


def _suggestion(verdicts: list[Verdict]) -> list[str]:
    """The config that reads the files of ``verdicts``: one format for all, or a named source for each."""
    groups: dict[str, list[Verdict]] = {}
    for v in verdicts:
        if v.builtin or v.mapping is not None:
            groups.setdefault(_setting(v), []).append(v)
    if len(groups) == 1:
        ((setting, (first, *_)),) = groups.items()
        comment = f"  # {_format_comment(first.builtin)}" if first.builtin else ""
        return [f"run.format = {setting}{comment}"]
    out: list[str] = []
    for k, (setting, group) in enumerate(groups.items()):
        name = group[0].builtin or f"jsonl{k + 1}"
        inputs = ", ".join(_toml_string(v.path) for v in group)
        comment = f"  # {_format_comment(group[0].builtin)}" if group[0].builtin else ""
        out += ["", "[[run.sources]]", f"name = {json.dumps(name)}", f"inputs = [{inputs}]"]
        out += [f"format = {setting}{comment}"]
    return out[1:]


def _toml_string(text: str) -> str:
    """``text`` as a TOML string whose every control character is escaped: a file's name is untrusted,
    and the config printed must read back as the same name."""
    return json.dumps(text).replace("\x7f", "\\u007f")  # JSON leaves DEL as it is; TOML does not


def detect(specs: list[str]) -> int:
    """``logpipe detect``: the built-in format that parses most of each file's first lines; 0 when
    every file has one, 1 when some file has none (or cannot be read, or a spec names no file).

    Files, directories, globs and URLs are expanded as a run's inputs are. One file: its format and
    the setting that reads it; several: a line per file, then the config that reads them all."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.stages.read import resolve_inputs

    setup_logging("warning")
    code = ExitCode.OK
    files, missing = resolve_inputs(specs)
    for report in missing:
        log.error("%s: %s", report.path, report.error)
        code = ExitCode.FAILURE
    with ThreadPoolExecutor(DETECT_THREADS) as pool:
        verdicts = list(pool.map(_judge, files))
    for v in verdicts:
        if v.error:
            log.error("%s: cannot read: %s", v.path, v.error)
        elif len(verdicts) == 1:
            print(_detail(v))  # noqa: T201 - the command's output
        else:
            print(v.line())  # noqa: T201
        if v.error or (not v.builtin and v.mapping is None):
            code = ExitCode.FAILURE
    if len(verdicts) > 1:
        suggestion = _suggestion(verdicts)
        unread = any(v.error or (not v.builtin and v.mapping is None) for v in verdicts)
        left_out = f"; the files above that no format reads are left out ({_PASTE})" if unread else ""
        if suggestion:
            print("\n".join(["", f"# read them with{left_out}", *suggestion]))  # noqa: T201
    return int(code)
