"""Run configuration: TOML files in ``configs/``, validated at load time with pydantic.

pydantic replaces a hand-written validator: it rejects unknown keys and wrong types and reports every
bad field at once; :func:`load_config` turns its errors into messages that name the key and the
allowed values. ``"auto"`` worker counts are resolved from the cores this process may use.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, MutableMapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pipeline.executors.forkserver import DEFAULT_EXECUTOR, DEFAULT_START_METHOD
from pipeline.executors.kinds import ExecutorKind

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
_UNITS = {"": 1, "b": 1, "k": KiB, "kb": 1000, "kib": KiB, "m": MiB, "mb": 1000**2, "mib": MiB}
_UNITS |= {"g": GiB, "gb": 1000**3, "gib": GiB}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


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
    from pipeline.formats import compile_setting
    from pipeline.formats.spec import BUILTINS, FormatSpecError

    if value == "auto":  # chosen per input file from its first lines (pipeline.formats.detect)
        return value
    if not isinstance(value, str | dict):
        raise ValueError(
            f"a built-in format ({', '.join(sorted(BUILTINS))}) or a table such as "
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


ByteSize = Annotated[int, BeforeValidator(_size)]
Transforms = Annotated[list[str | dict[str, Any]], BeforeValidator(_transforms)]
TimeBound = Annotated[datetime | None, BeforeValidator(_when)]
FormatSetting = Annotated[str | dict[str, Any], BeforeValidator(_format)]
Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceSection(_Section):
    """``[[run.sources]]``: inputs written in one format (several sources: one run, their columns' union)."""

    inputs: list[str] = Field(min_length=1, description="files, directories or globs")
    format: FormatSetting = "combined"


class RunSection(_Section):
    """``[run]``: what to read, where to write, how to report."""

    inputs: list[str] = Field(default_factory=list, description="files, directories or globs")
    sources: list[SourceSection] = Field(default_factory=list)
    # not "out": the shipped configs write out/laptop, out/server and out/cron
    output: str = Field(default="out/default", pattern=r"\S", description="the dataset's folder")
    meta_dir: str = Field(default="", description="manifest, rejects, state; empty: OUTPUT.meta")
    format: FormatSetting = "combined"
    progress: Literal["auto", "on", "off"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    incremental: bool = False
    max_reject_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    transforms: Transforms = Field(default_factory=list)
    since: TimeBound = None  # keep rows at or after this time; the others are counted as filtered
    until: TimeBound = None  # keep rows before this time
    report: str = Field(default="", description="write the HTML run report here; empty: none")
    panels: bool = False  # collect the report's access-log panels (always with a report)
    # remote inputs (URLs): added to each store's own credentials (environment, ~/.aws, ...), passed to
    # fsspec; never recorded (the manifest shows the keys, not the values: pipeline.inputs.remote)
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _window(self) -> RunSection:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"run.since ({self.since}) must be before run.until ({self.until})")
        return self

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


class ReadSection(_Section):
    """``[read]``: the thread pool that reads, decompresses and cuts line-aligned chunks."""

    workers: Workers = "auto"
    executor: Literal["thread"] = "thread"  # waiting on disks and decompression in C: threads
    chunk_bytes: ByteSize = Field(default=4 * MiB, ge=64 * KiB, le=1 * GiB)
    queue_depth: int = Field(default=4, ge=1, le=1024)
    max_line_bytes: ByteSize = Field(default=1 * MiB, ge=1 * KiB, le=256 * MiB)
    # remote inputs: retries of a failed request (exponential backoff), and how long one may stall
    max_retries: int = Field(default=3, ge=0, le=100)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)


class ParseSection(_Section):
    """``[parse]``: where chunks are parsed into Arrow batches (a local process pool by default)."""

    workers: Workers = "auto"
    queue_depth: int = Field(default=4, ge=1, le=1024)
    executor: ExecutorKind = DEFAULT_EXECUTOR
    # executor = "dask": the scheduler, e.g. "tcp://host:8786"; empty: a LocalCluster of `workers` processes
    address: Annotated[str, BeforeValidator(_address)] = ""
    start_method: Literal["forkserver", "spawn"] = DEFAULT_START_METHOD
    max_retries: int = Field(default=2, ge=0, le=100)
    reject_bytes: ByteSize = Field(default=4 * KiB, ge=0, le=16 * MiB)
    # a chunk still being parsed after this long fails the run (a transform that never returns);
    # the parse itself takes well under a second per chunk, so the default only catches hangs
    chunk_timeout_s: float = Field(default=300.0, gt=0, le=86400)

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

    workers: Workers = 1
    executor: Literal["thread"] = "thread"  # Parquet encoding and writing release the GIL: threads
    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = "zstd"
    compression_level: int | None = Field(default=None, ge=-7, le=22)
    row_group_rows: int = Field(default=128 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_rows_per_file: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_open_files: int = Field(default=16, ge=1, le=4096)


class Config(_Section):
    """The whole configuration. Sections and keys are documented in the README."""

    run: RunSection = Field(default_factory=RunSection)
    read: ReadSection = Field(default_factory=ReadSection)
    parse: ParseSection = Field(default_factory=ParseSection)
    write: WriteSection = Field(default_factory=WriteSection)

    def resolved(self) -> Config:
        """A copy with every ``"auto"`` worker count replaced by a number for this machine."""
        cores = available_cores()
        auto = {"read": min(4, max(2, cores)), "parse": cores, "write": max(1, cores // 8)}
        data = self.model_dump()
        for section, default in auto.items():
            if data[section]["workers"] == "auto":
                data[section]["workers"] = default
        return Config.model_validate(data)

    def workers(self, stage: str) -> int:
        """Worker count of ``stage`` (call on a resolved config)."""
        value = getattr(self, stage).workers
        if not isinstance(value, int):
            raise ConfigError(f"{stage}.workers is not resolved yet")
        return value


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. taskset or a cgroup cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as a TOML value, or taken as a plain string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. parse.workers=4")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


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
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        validate(data, where)  # the file's own errors are the file's
        _rebase(data, Path(path).parent)
    sets: dict[str, str] = {}
    for item in overrides or []:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
        sets[".".join(keys)] = item
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
