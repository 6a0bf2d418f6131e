"""The plan of a run: which inputs, what to read of each (incremental runs: what earlier runs did not
read), each input's format and the columns they give. Made once, before any stage starts, and not
changed after (:class:`RunPlan`): every stage thread reads it, none writes it.

The only module of the run that calls into :mod:`pipeline.formats`: detecting a format, the formats'
columns and their Parquet settings, and the parse task a chunk becomes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipeline.config import Config, ConfigError, origin_clash
from pipeline.errors import FormatMismatch
from pipeline.formats import Format, FormatKey, choose, get_format, key_of, parquet_options, union_schema
from pipeline.inputs import incremental
from pipeline.inputs.remote import Settings
from pipeline.output import safety
from pipeline.output.dataset import Published
from pipeline.output.layout import Layout
from pipeline.output.record import FileCounts, RunRecord
from pipeline.stages.parse import ParseTask, with_origin
from pipeline.stages.read import BOM, Chunk, Source, head_lines, resolve_inputs
from pipeline.transforms import TransformSpec

log = logging.getLogger(__name__)

FormatSetting = str | dict[str, str]  # run.format, or a source's: a name, "auto", or a format string


def input_specs(cfg: Config) -> list[str]:
    """Every input spec of the run (``run.inputs`` or the sources')."""
    run = cfg.run
    return [spec for s in run.sources for spec in s.inputs] or list(run.inputs)


def find_inputs(
    cfg: Config, layout: Layout, record: RunRecord
) -> tuple[list[str], list[FormatSetting], list[str]]:
    """Every input file, the format setting of each and the name of its source: ``run.inputs`` with
    ``run.format`` (no name), or each of ``[[run.sources]]`` with its own (a file in two sources is read
    once, with the first). Inputs that are missing go to ``record.missing``; files of the output and
    its record are left out."""
    run = cfg.run
    sources = [(s.inputs, s.format, s.name) for s in run.sources] or [(run.inputs, run.format, "")]
    by_file: dict[str, tuple[FormatSetting, str]] = {}
    remote = Settings(run.storage_options, cfg.read.max_retries, cfg.read.timeout_s)
    for specs, setting, name in sources:
        files, missing = resolve_inputs(specs, remote)
        record.missing += missing
        for path in files:
            by_file.setdefault(path, (setting, name))
    kept, skipped = safety.own_files(layout, input_specs(cfg), by_file)
    if skipped:
        log.info(
            "input: skipped %d files of the output %s and its record, inside the input folder",
            len(skipped),
            layout.output,
        )
    return kept, [by_file[path][0] for path in kept], [by_file[path][1] for path in kept]


@dataclass(frozen=True)
class RunPlan:
    """What a run reads and how: fixed before the stages start."""

    reads: tuple[incremental.Plan, ...]  # each input, by file id
    formats: tuple[Format, ...]  # each input's format, by file id
    union: tuple[FormatKey, ...]  # the formats of a run that has several (else empty)
    known: dict[str, incremental.FileState]  # incremental: what earlier runs took
    rebuild: str | None  # why an incremental run rebuilds in full instead of appending
    incremental: bool  # run.incremental
    appends: bool  # adds to the published dataset (a record describes it) rather than replacing it
    seen_before: bool  # incremental over inputs seen before: finding no new line is not an error
    # run.source_column / run.file_column: the columns added to every row, and their values by file id
    origin: tuple[str, ...] = ()
    origins: tuple[tuple[tuple[str, str], ...], ...] = ()

    def path(self, file_id: int) -> str:
        return self.reads[file_id].path

    def in_order(self) -> frozenset[int]:
        """The inputs whose lines parse with what a header earlier in the file says: read in order
        from their start, never by byte ranges."""
        return frozenset(i for i, f in enumerate(self.formats) if f.headed)

    @property
    def schema(self) -> pa.Schema:
        """The columns the formats give (their union when there are several), then the origin columns."""
        if self.union:
            return with_origin(union_schema(self.union), self.origin)
        own = self.formats[0].schema if self.formats else get_format("combined").schema
        return with_origin(own, self.origin)

    def state_changed(self) -> bool:
        """Whether this run learnt something about its inputs that the published state lacks."""
        return incremental.needs_saving(self.known, list(self.reads))

    def new_state(self, offsets: list[int], counts: list[FileCounts]) -> dict[str, Any]:
        """The incremental state to publish: where each input stands after this run."""
        lines = [c.first_line - 1 + c.lines for c in counts]
        errors = [c.error for c in counts]
        return incremental.updated(self.known, list(self.reads), offsets, lines, errors)

    def parquet_options(self, schema: pa.Schema) -> dict[str, Any]:
        """The writers' Parquet settings for ``schema``: a single format's own, unless a column was
        retyped (by a transform, or the dataset); else each column's type's."""
        single = self.formats[0].parquet_options if len({f.key for f in self.formats}) == 1 else None
        # the format's own settings suit its own types; a column a transform (or the dataset) retyped
        # takes the settings of its type: an encoding of integers cannot write floats
        own = self.formats[0].schema if single is not None else pa.schema([])
        retyped = [f.name for f in schema if f.name in own.names and own.field(f.name).type != f.type]
        if retyped:
            single = None
        options = {
            key: [c for c in value if c in schema.names]
            if isinstance(value, list)
            else {c: v for c, v in value.items() if c in schema.names}
            for key, value in (single or parquet_options(schema)).items()
        }
        # a dictionary-typed column (the origin columns) is written as Parquet's dictionary
        dictionaries = [f.name for f in schema if pa.types.is_dictionary(f.type)]
        if dictionaries and isinstance(options.get("use_dictionary"), list):
            options["use_dictionary"] = list(dict.fromkeys([*options["use_dictionary"], *dictionaries]))
        return options

    def tasks(
        self, cfg: Config, transforms: tuple[TransformSpec, ...], panels: bool
    ) -> Callable[[Chunk], ParseTask]:
        """What a chunk of an input becomes for the parse: its format and the run's settings. Called on
        each input's chunks in file order: a chunk's format is the one in effect at its start, which a
        header in an earlier chunk may have changed (:meth:`pipeline.formats.base.Format.carry`)."""
        keys = [f.key for f in self.formats]
        headed = self.in_order()
        max_line, reject_bytes = cfg.read.max_line_bytes, cfg.parse.reject_bytes
        since_us, until_us = _micros(cfg.run.since), _micros(cfg.run.until)
        union = self.union
        origins = self.origins

        def task(chunk: Chunk) -> ParseTask:
            key = keys[chunk.file_id]
            if chunk.file_id in headed and not chunk.segments:  # a packed file's read ends in its pack
                keys[chunk.file_id] = get_format(key).carry(chunk.data) or key
            packed = tuple(origins[s.file_id] for s in chunk.segments) if origins else ()
            return ParseTask(
                chunk,
                key,
                max_line,
                reject_bytes,
                since_us=since_us,
                until_us=until_us,
                transforms=transforms,
                union=union,
                panels=panels,
                origin=origins[chunk.file_id] if origins and not packed else (),
                origins=packed,
            )

        return task

    def pack_key(self) -> Callable[[Chunk], tuple[Hashable, bool] | None]:
        """How the whole read of a small file may be packed with others (:mod:`pipeline.stages.pack`):
        with those of its format key (the one in effect at its start), and only first in a pack when
        its lines would read a header's state from the lines before them."""
        keys = [f.key for f in self.formats]

        def pack(chunk: Chunk) -> tuple[Hashable, bool] | None:
            if not chunk.whole or chunk.segments:
                return None
            key = keys[chunk.file_id]
            return key, get_format(key).stands_alone(chunk.data)

        return pack


def make_plan(
    cfg: Config,
    files: list[str],
    settings: list[FormatSetting],
    published: Published | None,
    full_refresh: bool,
    record: RunRecord,
    sources: list[str] | None = None,
) -> RunPlan:
    """Decide what to read of each input and with which format; each input's counts go into
    ``record`` (its format once known). ``sources``: each input's source name (:func:`find_inputs`).
    Raises :class:`FormatMismatch` for an ``auto`` input that no format reads, :class:`ConfigError`
    for an origin column that an ``auto`` input's format has."""
    incr = cfg.run.incremental
    rebuild = None
    if incr and not full_refresh and published is not None and published.problem:
        rebuild = published.problem
        log.warning(
            "incremental: %s: rebuilding the dataset from every input instead of adding to it (committed "
            "only if it holds at least the rows the dataset held)",
            published.problem,
        )
    appends = incr and not full_refresh and rebuild is None
    known: dict[str, incremental.FileState] = {}
    if not incr:
        reads = [incremental.Plan(p, "new") for p in files]
    else:
        if appends and published is not None:
            known = published.state or {}
        reads = incremental.plan(files, known)
    record.counts = [FileCounts(p.path, mode=p.mode, first_line=p.first_line) for p in reads]
    threads = cfg.read.workers if isinstance(cfg.read.workers, int) else 1
    formats, union = _formats(reads, settings, record.counts, threads)
    formats = tuple(_at_offset(f, p) for f, p in zip(formats, reads, strict=True))
    seen_before = incr and not full_refresh and bool(known)
    origin, origins = _origins(cfg, reads, formats, sources or [""] * len(reads))
    return RunPlan(tuple(reads), formats, union, known, rebuild, incr, appends, seen_before, origin, origins)


def _origins(
    cfg: Config, reads: list[incremental.Plan], formats: tuple[Format, ...], sources: list[str]
) -> tuple[tuple[str, ...], tuple[tuple[tuple[str, str], ...], ...]]:
    """The origin columns (run.source_column, run.file_column) and each input's values of them. The
    config checked them against the formats it names; an ``auto`` input's is known only now."""
    columns = cfg.run.origin_columns()
    if not columns:
        return (), ()
    problem = origin_clash(columns, list(dict.fromkeys(f.key for f in formats)))
    if problem is not None:
        raise ConfigError(f"format auto: {problem}")
    values = {"source_column": sources, "file_column": [p.path for p in reads]}
    per_file = tuple(
        tuple((column, values[setting][k]) for setting, column in columns.items()) for k in range(len(reads))
    )
    return tuple(columns.values()), per_file


def _formats(
    reads: list[incremental.Plan], settings: list[FormatSetting], counts: list[FileCounts], threads: int = 1
) -> tuple[tuple[Format, ...], tuple[FormatKey, ...]]:
    """Each input's compiled format (``auto``: the built-in that parses most of its first lines, found
    on ``threads`` threads), and the formats' union when there are several."""
    detected = _detect_all([p.path for p, s in zip(reads, settings, strict=True) if s == "auto"], threads)
    keys: list[FormatKey] = []
    for plan, count, setting in zip(reads, counts, settings, strict=True):
        keys.append(detected[plan.path] if setting == "auto" else key_of(setting))
        count.format = keys[-1] if isinstance(keys[-1], str) else f"{keys[-1][0]} format string"
    distinct = tuple(dict.fromkeys(keys))
    return tuple(get_format(k) for k in keys), distinct if len(distinct) > 1 else ()


def _detect_all(paths: list[str], threads: int) -> dict[str, FormatKey]:
    """:func:`detect` of each path, ``threads`` at a time (read.workers): each is a round trip to a
    remote store, and AWS writes its logs as thousands of small objects. Each file is judged on its own
    lines, whatever the others hold; the first file in input order that no format reads raises."""
    if len(paths) < 2 or threads < 2:
        return {path: detect(path) for path in paths}
    with ThreadPoolExecutor(min(threads, len(paths)), thread_name_prefix="detect") as pool:
        return dict(zip(paths, pool.map(detect, paths), strict=True))


def _at_offset(fmt: Format, plan: incremental.Plan) -> Format:
    """The format in effect where an input's read starts: past its start, a headed format's is the
    last header before that offset, found by reading the input up to it (its chunks' headers are
    carried from there on)."""
    if not fmt.headed or not plan.reads or plan.start_offset <= 0:
        return fmt
    try:
        source = Source(plan.path)
    except (OSError, EOFError, ValueError):
        return fmt  # the reader reports the input's error
    try:
        left, rest, first = plan.start_offset, b"", True
        while left > 0:
            block = source.read(min(left, 4 << 20))
            if not block:
                break
            left -= len(block)
            if first:
                block, first = block.removeprefix(BOM), False
            cut = (rest + block).rfind(b"\n") + 1
            lines, rest = (rest + block)[:cut], (rest + block)[cut:][: 1 << 20]  # a header is short
            fmt = get_format(fmt.carry(lines) or fmt.key) if lines else fmt
    except (OSError, EOFError, ValueError):
        return fmt
    finally:
        source.close()
    if rest:  # the offset ends a line that had no newline (a cut last line taken)
        fmt = get_format(fmt.carry(rest + b"\n") or fmt.key)
    return fmt


def detect(path: str) -> FormatKey:
    """The format of ``path`` (``format = "auto"``): the built-in that reads most of its first lines."""
    try:
        lines = head_lines(path)
    except (OSError, EOFError, ValueError):
        return "combined"  # the reader reports the file's error
    if not lines:
        return "combined"  # nothing to read: whatever the format
    chosen = choose(lines)
    if chosen is None:
        raise FormatMismatch(
            f"format auto: no built-in format reads any of the first {len(lines):,} lines of {path}, "
            "and they are not JSON lines. Paste the server's format into the config "
            "([run.format] nginx = '...' or apache = '...'), or leave the file out with a glob"
        )
    key, rows = chosen
    name = key if isinstance(key, str) else "JSON lines"
    log.info("format auto: %s looks like %s (%d of %d lines)", path, name, rows, len(lines))
    return key


def _micros(when: datetime | None) -> int | None:
    """Microseconds since the epoch (UTC) of an aware datetime."""
    return None if when is None else (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
