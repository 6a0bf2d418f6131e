"""Run configuration: TOML files in ``configs/``, validated at load time with pydantic.

pydantic replaces a hand-written validator: it rejects unknown keys and wrong types and reports every
bad field at once; :func:`load_config` turns its errors into messages that name the key and the
allowed values. ``"auto"`` worker counts are resolved from the cores this process may use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, MutableMapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipeline import defaults
from pipeline.config_source import ConfigError as _ConfigError
from pipeline.config_source import apply_overrides, read_file
from pipeline.executors.kinds import ExecutorKind

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
_UNITS = {"": 1, "b": 1, "k": KiB, "kb": 1000, "kib": KiB, "m": MiB, "mb": 1000**2, "mib": MiB}
_UNITS |= {"g": GiB, "gb": 1000**3, "gib": GiB}

# invalid configuration: raised here, and by pipeline.config_source for the file and --set items
ConfigError = _ConfigError


def _size(value: Any) -> Any:
    """Accept byte sizes as integers or strings such as ``"4MiB"``, ``"512 KiB"``, ``"1GB"``."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError("a byte size such as 4194304, '4MiB', '512KiB' or '1GB'")
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return value


def _workers(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer or 'auto'")
    return value


def _format(value: Any) -> Any:
    """A built-in format's name, or ``{nginx = "<log_format>"}`` / ``{apache = "<LogFormat>"}``:
    compiled now, so that a mistake in the format string is a config error naming its position."""
    from pipeline.formats import builtin_names, compile_setting
    from pipeline.formats.spec import FormatSpecError

    if value == "auto":  # chosen per input file from its first lines (pipeline.formats.detect)
        return value
    if not isinstance(value, str | dict):
        raise ValueError(
            f"a built-in format ({', '.join(builtin_names())}) or a table such as "
            "{nginx = '<log_format string>'} or {apache = '<LogFormat string>'}"
        )
    try:
        compile_setting(value)
    except FormatSpecError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _when(value: Any) -> Any:
    """A time bound: a TOML date or datetime, or an ISO string (``2026-11-01``, ``2026-11-01T10:00``,
    with an offset or ``Z``); a date is its midnight, a time without offset is UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("an ISO date or time such as 2026-11-01 or 2026-11-01T10:00:00+01:00") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError("an ISO date or time such as 2026-11-01 or 2026-11-01T10:00:00+01:00")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _transforms(value: Any) -> Any:
    """``run.transforms``: each entry a built-in's name, ``"package.module:function"`` or a table with
    ``name`` and options; each is imported now, so that a typo is a config error."""
    from pipeline.transforms import TransformError, TransformSpec, load

    if not isinstance(value, list):
        raise ValueError("a list of transforms, e.g. ['anonymize_ip', 'mypkg.mod:func']")
    for k, entry in enumerate(value):
        try:
            load(TransformSpec.parse(entry).target)
        except (TransformError, ValueError) as exc:
            raise ValueError(f"entry {k}: {exc}") from exc
    return value


# [protocol://]host:port, the host a name, an IPv4 address or a bracketed IPv6 one
_ADDRESS = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?(?:\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+):\d{1,5}")


def _address(value: Any) -> Any:
    """``parse.address``: a Dask scheduler as ``[protocol://]host:port`` (``tcp://10.0.0.5:8786``), or
    empty for a LocalCluster."""
    if not isinstance(value, str):
        return value  # pydantic reports the type
    value = value.strip()
    if value and _ADDRESS.fullmatch(value) is None:
        raise ValueError("a Dask scheduler address such as 'tcp://10.0.0.5:8786', or '' for a LocalCluster")
    return value


def _column(value: Any) -> Any:
    """A column of the rows' origin (``run.source_column``, ``run.file_column``): a plain name that
    every reader takes without quoting, or empty for none."""
    if isinstance(value, str) and re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)?", value) is None:
        raise ValueError(
            "a column name of letters, digits and '_' (not starting with a digit), or '' for none"
        )
    return value


def _source_name(value: Any) -> Any:
    """A ``[[run.sources]]`` name: the value of its rows' source column, so text without control
    characters."""
    if isinstance(value, str) and (len(value) > 200 or re.search(r"[\x00-\x1f\x7f]", value)):
        raise ValueError("a name of at most 200 characters, none of them a control character")
    return value


ColumnName = Annotated[str, BeforeValidator(_column)]
ByteSize = Annotated[int, BeforeValidator(_size)]
Transforms = Annotated[list[str | dict[str, Any]], BeforeValidator(_transforms)]
TimeBound = Annotated[datetime | None, BeforeValidator(_when)]
FormatSetting = Annotated[str | dict[str, Any], BeforeValidator(_format)]
Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceSection(_Section):
    """``[[run.sources]]``: inputs written in one format (several sources: one run, their columns' union)."""

    inputs: list[str] = Field(min_length=1, description="this source's files, directories or globs")
    format: FormatSetting = Field(default="combined", description="the format of this source's lines")
    name: Annotated[str, BeforeValidator(_source_name)] = Field(
        default="",
        description="the value of this source's rows in the `run.source_column` column; when one source "
        "has a name, every source needs one, each its own",
    )


class RunSection(_Section):
    """``[run]``: what to read, where to write, how to report."""

    inputs: list[str] = Field(
        default_factory=list,
        description="files, directories (every non-hidden file inside, recursively), globs (`**` allowed) "
        "and URLs; `--input` replaces them",
    )
    sources: list[SourceSection] = Field(
        default_factory=list,
        description="instead of `inputs`: `[[run.sources]]` tables of `inputs`, `format` and `name`, "
        "several formats in one run (their columns' union)",
    )
    source_column: ColumnName = Field(
        default="source",
        description="the column that names each row's source (`[[run.sources]]` with a `name`); absent "
        "when the sources have no names (or with `--input`); empty: never",
    )
    file_column: ColumnName = Field(
        default="",
        description='the column that names each row\'s input file, e.g. "file" (the path as the manifest '
        "and the rejects name it: a URL for a remote input); empty: none",
    )
    # not "out": the shipped configs write out/laptop, out/server and out/cron
    output: str = Field(
        default="out/default",
        pattern=r"\S",
        description="the dataset's folder, owned by logpipe: replaced by every successful run, refused "
        "when it holds anything logpipe did not write; `--output` replaces it",
    )
    meta_dir: str = Field(
        default="",
        description="the run's record (manifest, rejects, incremental state); empty: `OUTPUT.meta` beside "
        "the output",
    )
    format: FormatSetting = Field(
        default="combined", description="the format of the input lines (`auto`: chosen per file)"
    )
    progress: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="progress bars (`auto`: when stderr is a terminal); `off`: a log line every 10 s",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="log level")
    incremental: bool = Field(
        default=False,
        description="remember what was read of each input, and read only what is new",
    )
    compact: int = Field(
        default=0,
        ge=0,
        description="incremental runs: after a commit, compact each date partition the run wrote to that "
        "holds this many small files (under `write.max_rows_per_file` rows) or more, as `logpipe compact` "
        "does; `0`: never",
    )
    max_reject_ratio: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="more rejected lines than this share (of an input's first lines, or of the run) stops "
        "the run, nothing committed (exit 6); `1` turns it off",
    )
    transforms: Transforms = Field(
        default_factory=list, description="functions applied to each parsed batch, in order"
    )
    since: TimeBound = Field(
        default=None,
        description="keep rows at or after this time; the others are counted as filtered (`--since`)",
    )
    until: TimeBound = Field(default=None, description="keep rows before this time (`--until`)")
    report: str = Field(
        default="", description="write the HTML run report to this file; empty: none (`--report`)"
    )
    panels: bool = Field(
        default=False,
        description="collect the report's access-log panels without drawing a report (`logpipe report` "
        "draws them later)",
    )
    report_days: int = Field(
        default=7,
        ge=0,
        le=36600,
        description="incremental runs: the report's access-log panels cover this many days of the dataset, "
        "ending at its newest date (read back from its Parquet files), not only the run's new lines; `0`: "
        "only the new lines",
    )
    # remote inputs (URLs): added to each store's own credentials (environment, ~/.aws, ...), passed to
    # fsspec; never recorded (the manifest shows the keys, not the values: pipeline.inputs.remote)
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="remote inputs: fsspec options on top of the store's own credentials; "
        "`[run.storage_options.s3]` for one store (values masked in the manifest)",
    )

    @model_validator(mode="after")
    def _compact(self) -> RunSection:
        if self.compact == 1:
            raise ValueError("run.compact: 0 (never) or the number of small files (2 or more)")
        if self.compact and not self.incremental:
            raise ValueError("run.compact compacts after incremental runs: set run.incremental = true")
        return self

    @model_validator(mode="after")
    def _window(self) -> RunSection:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"run.since ({self.since}) must be before run.until ({self.until})")
        return self

    @model_validator(mode="after")
    def _source_names(self) -> RunSection:
        """Named sources: every source named, each name its own (a row's source is never a guess)."""
        names = [s.name for s in self.sources]
        if any(names):
            unnamed = [k for k, name in enumerate(names) if not name]
            if unnamed:
                raise ValueError(
                    f"run.sources[{unnamed[0]}].name is missing: when one source has a name, every source "
                    f"needs one (the others: {', '.join(repr(n) for n in names if n)})"
                )
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(
                    f"run.sources: the name {twice[0]!r} is given to several sources; "
                    "each source needs a name of its own"
                )
        return self

    @model_validator(mode="after")
    def _origin_columns(self) -> RunSection:
        """run.source_column and run.file_column must not take the name of a column of the rows."""
        from pipeline.formats import key_of

        columns = self.origin_columns()
        if len(set(columns.values())) < len(columns):
            raise ValueError(
                f"run.source_column and run.file_column are both {self.file_column!r}: give them "
                "different names"
            )
        settings = [s.format for s in self.sources] or [self.format]
        problem = origin_clash(columns, [key_of(s) for s in settings if s != "auto"])
        if problem is not None:
            raise ValueError(problem)
        return self

    def origin_columns(self) -> dict[str, str]:
        """The columns this run adds to every row, by the setting that names them: the row's source
        (when the sources have names), its input file."""
        named = any(s.name for s in self.sources)
        both = {"source_column": (self.source_column, named), "file_column": (self.file_column, True)}
        return {setting: column for setting, (column, on) in both.items() if column and on}

    @model_validator(mode="after")
    def _sources_agree(self) -> RunSection:
        """Sources that share a column must type it alike (``auto`` ones are checked at run time)."""
        from pipeline.formats import FormatSpecError, key_of, union_schema

        keys = tuple(dict.fromkeys(key_of(s.format) for s in self.sources if s.format != "auto"))
        if len(keys) > 1:
            try:
                union_schema(keys)
            except FormatSpecError as exc:
                raise ValueError(f"run.sources: {exc}") from exc
        return self


def origin_clash(columns: dict[str, str], keys: list[Any]) -> str | None:
    """Why the origin columns (:meth:`RunSection.origin_columns`) cannot be added to the columns of the
    formats ``keys``, or None: a name a format's column or the partition column ``date`` has."""
    from pipeline.formats import get_format

    taken = {"date": "the partition column"}
    for key in keys:
        taken |= {name: f"a column of the format {key!r}" for name in get_format(key).schema.names}
    for setting, column in columns.items():
        if column in taken:
            return (
                f"run.{setting} = {column!r} is {taken[column]}: choose another name "
                f"(taken: {', '.join(sorted(taken))})"
            )
    return None


class ReadSection(_Section):
    """``[read]``: the thread pool that reads, decompresses and cuts line-aligned chunks."""

    workers: Workers = Field(default="auto", description="reader threads")
    # waiting on disks and decompression in C: threads
    executor: Literal["thread"] = Field(default="thread", description="where the read stage runs")
    chunk_bytes: ByteSize = Field(
        default=4 * MiB,
        ge=64 * KiB,
        le=1 * GiB,
        description="target chunk size; a chunk holds at most `chunk_bytes / 64` lines",
    )
    queue_depth: int = Field(default=4, ge=1, le=1024, description="chunks waiting between read and parse")
    pack_bytes: ByteSize = Field(
        default=1 * MiB,
        ge=0,
        le=1 * GiB,
        description="a file whose lines are at most this many bytes is parsed in one task with other such "
        "files of its format, up to `chunk_bytes` a task (0: each file a task of its own)",
    )
    max_line_bytes: ByteSize = Field(
        default=defaults.MAX_LINE_BYTES,
        ge=1 * KiB,
        le=256 * MiB,
        description="longer lines are rejected as `line too long`",
    )
    max_retries: int = Field(
        default=defaults.READ_MAX_RETRIES,
        ge=0,
        le=100,
        description="remote inputs: retries of a failed request, with backoff",
    )
    timeout_s: float = Field(
        default=defaults.READ_TIMEOUT_S,
        gt=0,
        le=3600,
        description="remote inputs: the most one request or listing may take",
    )


class ParseSection(_Section):
    """``[parse]``: where chunks are parsed into Arrow batches (a local process pool by default)."""

    workers: Workers = Field(default="auto", description="parser processes or threads")
    queue_depth: int = Field(
        default=4, ge=1, le=1024, description="parsed batches waiting between parse and write"
    )
    executor: ExecutorKind = Field(
        default=defaults.EXECUTOR,
        description="`process` (a pool), `thread` (threads of the main process: they share its GIL), "
        "`inline` (serial, in one thread) or `dask` (a Dask cluster)",
    )
    address: Annotated[str, BeforeValidator(_address)] = Field(
        default="",
        description='with `executor = "dask"`: the scheduler; empty: a LocalCluster of `workers` '
        "processes (an address with another executor is an error)",
    )
    start_method: Literal["forkserver", "spawn"] = Field(
        default=defaults.START_METHOD, description="how the process pool starts its workers"
    )
    compiled: Literal["auto", "on", "off"] = Field(
        default=defaults.COMPILED,
        description="the engine's compiled loops (Numba): `on`, `off`, or `auto`: on when the inputs hold "
        f"at least {defaults.COMPILED_MIN_BYTES >> 20} MiB (loading them costs ~0.9 s of CPU once per run)",
    )
    max_retries: int = Field(
        default=defaults.PARSE_MAX_RETRIES, ge=0, le=100, description="retries of a chunk whose worker died"
    )
    reject_bytes: ByteSize = Field(
        default=defaults.REJECT_BYTES,
        ge=0,
        le=16 * MiB,
        description="bytes of a rejected line kept in the rejects file",
    )
    # the parse itself takes well under a second per chunk, so the default only catches hangs
    chunk_timeout_s: float = Field(
        default=defaults.CHUNK_TIMEOUT_S,
        gt=0,
        le=86400,
        description="a chunk still being parsed after this many seconds (a transform that never returns) "
        "fails the run, naming its file, lines and transforms",
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> ParseSection:
        # an address that is silently not used would parse locally while the user thinks on a cluster
        if self.address and self.executor != "dask":
            raise ValueError(
                f"parse.address is only used with parse.executor = 'dask' (executor is {self.executor!r})"
            )
        return self


class WriteSection(_Section):
    """``[write]``: the writer threads producing hive-partitioned Parquet."""

    workers: Workers = Field(default=1, description="writer threads")
    # Parquet encoding and writing release the GIL: threads
    executor: Literal["thread"] = Field(default="thread", description="where the write stage runs")
    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = Field(
        default="zstd", description="the Parquet files' codec"
    )
    compression_level: int | None = Field(
        default=None, ge=-7, le=22, description="the codec's level; unset: Arrow's default"
    )
    row_group_rows: int = Field(
        default=128 * 1024, ge=1024, le=64 * 1024 * 1024, description="rows per Parquet row group"
    )
    max_rows_per_file: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="a new file is started after this many rows"
    )
    max_open_files: int = Field(default=16, ge=1, le=4096, description="open Parquet files per writer")


class Config(_Section):
    """The whole configuration (docs/configuration.md is generated from it: pipeline.config_docs)."""

    run: RunSection = Field(default_factory=RunSection)
    read: ReadSection = Field(default_factory=ReadSection)
    parse: ParseSection = Field(default_factory=ParseSection)
    write: WriteSection = Field(default_factory=WriteSection)

    def resolved(self) -> ResolvedConfig:
        """This config with every ``"auto"`` worker count replaced by a number for this machine."""
        cores = available_cores()
        data = self.model_dump()
        for section, (_, rule) in AUTO_WORKERS.items():
            if data[section]["workers"] == "auto":
                data[section]["workers"] = rule(cores)
        return ResolvedConfig.model_validate(data)


# What ``workers = "auto"`` means in each stage, given the cores this process may use: the rule as the
# docs print it, and the rule.
AUTO_WORKERS: dict[str, tuple[str, Callable[[int], int]]] = {
    "read": ("min(4, max(2, cores))", lambda cores: min(4, max(2, cores))),
    "parse": ("cores", lambda cores: cores),
    "write": ("max(1, cores // 8)", lambda cores: max(1, cores // 8)),
}


# A resolved config: what a run uses. Its worker counts are numbers (the type says so, and validation
# holds it to that); :meth:`Config.resolved` is the one step that makes it.
ResolvedWorkers = Annotated[int, Field(ge=1)]


class ResolvedReadSection(ReadSection):
    workers: ResolvedWorkers


class ResolvedParseSection(ParseSection):
    workers: ResolvedWorkers


class ResolvedWriteSection(WriteSection):
    workers: ResolvedWorkers


class ResolvedConfig(Config):
    """A :class:`Config` whose ``"auto"`` worker counts are resolved (:meth:`Config.resolved`)."""

    read: ResolvedReadSection
    parse: ResolvedParseSection
    write: ResolvedWriteSection


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. taskset or a cgroup cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Settings that name files: in a config file they are relative to the file's own directory (as in
# docker compose), so a cron job finds the same files whatever its working directory.
PATH_KEYS = ("inputs", "output", "meta_dir", "report")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load and validate ``path`` (None: built-in defaults), then apply ``--set`` overrides.

    Paths in the file are taken relative to the file's directory; paths given with ``--set`` relative
    to the current directory. Errors name the file, or the ``--set`` item, they come from.
    """
    data: dict[str, Any] = {}
    where = str(path) if path is not None else "defaults"
    if path is not None:
        data = read_file(path)
        validate(data, where)  # the file's own errors are the file's
        _rebase(data, Path(path).parent)
    sets = apply_overrides(data, overrides or [])
    return validate(data, where, sets)


def _rebase(data: dict[str, Any], base: Path) -> None:
    """Make the file paths of a config file's ``[run]`` relative to ``base`` (its directory)."""
    run = data.get("run")
    if not isinstance(run, dict):
        return

    def rebased(value: str) -> str:
        if not value or "://" in value or os.path.isabs(os.path.expanduser(value)):
            return os.path.expanduser(value)
        return os.path.normpath(base / value)

    map_paths(run, rebased)


def map_paths(run: MutableMapping[str, Any], fn: Callable[[str], str]) -> None:
    """Replace every file path of a ``[run]`` table by ``fn(path)``, in place: the ``PATH_KEYS``, the
    inputs of ``[[run.sources]]`` and the files a transform takes (geoip's database)."""
    from pipeline.transforms import PATH_OPTIONS

    for key in PATH_KEYS:
        value = run.get(key)
        if isinstance(value, str):
            run[key] = fn(value)
        elif isinstance(value, list):
            run[key] = [fn(v) if isinstance(v, str) else v for v in value]
    for source in run.get("sources") or []:
        if isinstance(source, MutableMapping) and isinstance(source.get("inputs"), list):
            source["inputs"] = [fn(v) if isinstance(v, str) else v for v in source["inputs"]]
    for entry in run.get("transforms") or []:
        if isinstance(entry, MutableMapping):
            for key in PATH_OPTIONS:
                if isinstance(entry.get(key), str):
                    entry[key] = fn(entry[key])


def validate(data: dict[str, Any], where: str = "config", sets: dict[str, str] | None = None) -> Config:
    """Validate a config mapping; raise :class:`ConfigError` listing every bad key.

    ``sets`` maps dotted keys to the ``--set`` items that gave them: their errors name the item.
    """
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = _describe(exc, sets or {})
        origin = {"--set" if line.lstrip().startswith("--set") else where for line in problems}
        head = where if origin == {where} else "--set" if origin == {"--set"} else f"{where} and --set"
        raise ConfigError(f"{head}: invalid configuration\n" + "\n".join(problems)) from exc


def _describe(exc: ValidationError, sets: dict[str, str]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "int", "literal"))]
        key = ".".join(loc) or "(top level)"
        item = next((sets[k] for k in sets if key == k or key.startswith(k + ".")), None)
        if item is not None:
            key = f"--set {item}: {key}"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            lines.append(f"  {key}: unknown key; allowed keys here: {', '.join(allowed)}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg} (got {err.get('input')!r})")
    return list(dict.fromkeys(lines))


def _allowed_keys(section: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section:
        field = model.model_fields.get(part)
        if (
            field is None
            or not isinstance(field.annotation, type)
            or not issubclass(field.annotation, BaseModel)
        ):
            return sorted(model.model_fields)
        model = field.annotation
    return sorted(model.model_fields)
