"""What every log format shares: the interface a format family implements, the reject vocabulary, and
the finishing steps of a parse (rejects in line order, rows grouped by UTC date, the dates' partitions).

A *family* (:class:`Family`) reads one kind of ``run.format`` setting: the built-in names and the
server's own format strings (``pipeline.formats.engine``), or ``{jsonl = {...}}``
(``pipeline.formats.jsonl``). It compiles a setting's :data:`FormatKey` into a :class:`Format`. The
registry in ``pipeline/formats/__init__.py`` lists the families; nothing outside a family's own module
knows which one it has.

A format's :meth:`Format.parse` is the same for every family: the family's :meth:`Format.scan` finds the
chunk's rows (their UTC days, their lines, the rejects), and :func:`finish` puts them in the order every
format returns them in. ``scan`` builds the batch only when :func:`finish` asks, with the row order
already known, so that a family that cuts its columns out of the chunk gathers them in that order once.

Header and comment lines (a W3C file's ``#Fields:``, ``#Date:``) are neither rows nor rejects: a scan
counts them in :attr:`Rows.skipped`. A header that describes the lines after it is per-file state, and
it belongs in the key (the key of such a format names the header it parses with), so that it crosses the
process boundary with each chunk's task like any key; a header that changes within a chunk is the
family's own business, in its scan.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import pyarrow as pa

from pipeline import defaults

# A format's name in the config (a built-in), or (the setting's table, its value as text): hashable and
# picklable, so it is what crosses the process boundary; each worker compiles it once and keeps it.
FormatKey = str | tuple[str, str]

# what a format is given when its caller does not say (the read and parse settings do)
MAX_LINE_BYTES = defaults.MAX_LINE_BYTES
REJECT_BYTES = defaults.REJECT_BYTES

_EPOCH = date(1970, 1, 1)


class Reason(StrEnum):
    """Why a line was rejected. A fixed vocabulary so rejects can be counted and filtered."""

    EMPTY = "empty line"
    TOO_LONG = "line too long"
    INVALID_UTF8 = "invalid UTF-8"
    NUL_BYTE = "NUL byte"
    NO_MATCH = "no match"
    BAD_TIMESTAMP = "bad timestamp"
    # JSON lines: the time's key is absent (or null); W3C: the header names no date or no time field
    MISSING_TIME = "missing time"
    OUT_OF_RANGE = "out-of-range number"
    TRUNCATED = "truncated input"


@dataclass
class RejectRows:
    """Rejected lines of one chunk: absolute line numbers, reasons and the raw bytes (possibly cut)."""

    lines: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    raw_len: list[int] = field(default_factory=list)
    # Rejects without raw bytes (blank lines): the line numbers of each reason as one int64 array, so a
    # chunk of blank lines costs 8 bytes a line rather than a Python object per line. They take their
    # place in line order when the chunk's rejects become a batch (``pipeline.stages.parse.rejects_batch``).
    blank: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, line: int, reason: Reason | str, raw: bytes, limit: int, length: int | None = None) -> None:
        """Record one rejected line, keeping at most ``limit`` bytes of it (``length``: its full size).
        ``reason``: one of :class:`Reason`, or a transform's own words."""
        self.lines.append(line)
        self.reasons.append(str(reason))
        self.raw.append(raw[:limit])
        self.raw_len.append(len(raw) if length is None else length)

    def add_blank(self, lines: Any, reason: Reason | str) -> None:
        """Record the lines numbered ``lines`` (a numpy integer array), whose raw bytes are empty."""
        if len(lines):
            self.blank.append((str(reason), np.asarray(lines, dtype=np.int64)))

    def extend(self, other: RejectRows) -> None:
        """Append the rejects of ``other``."""
        self.lines += other.lines
        self.reasons += other.reasons
        self.raw += other.raw
        self.raw_len += other.raw_len
        self.blank += other.blank

    def sort(self) -> None:
        """Put the rejects in line order (a parse finds them in several passes); the blank ones take
        their place when the rejects become a batch."""
        if len(self.lines) < 2 or self.lines == sorted(self.lines):
            # found in order (a chunk of another format's lines, all rejects at once): sorting numbers
            # that are in order is one pass in C, reordering four lists a Python object per line each
            return
        order = sorted(range(len(self.lines)), key=self.lines.__getitem__)
        self.lines = [self.lines[i] for i in order]
        self.reasons = [self.reasons[i] for i in order]
        self.raw = [self.raw[i] for i in order]
        self.raw_len = [self.raw_len[i] for i in order]

    def __len__(self) -> int:
        return len(self.lines) + sum(len(lines) for _, lines in self.blank)

    def counts(self) -> dict[str, int]:
        """Number of rejects per reason."""
        out: dict[str, int] = {}
        for r in self.reasons:
            out[r] = out.get(r, 0) + 1
        for r, lines in self.blank:
            out[r] = out.get(r, 0) + len(lines)
        return out


@dataclass
class FormatResult:
    """A parsed chunk: rows sorted by UTC date, where each date's rows start, and the rejects."""

    batch: pa.RecordBatch
    partitions: list[tuple[str, int, int]]  # (YYYY-MM-DD, offset, length) into ``batch``
    rejects: RejectRows
    rows: Any = None  # each row's line, counted from 0 in the chunk (numpy int64); None: not known
    # JSON lines with a key map: each mapped key's lines that have a value for it (numpy int64, from 0)
    valued: Mapping[str, Any] = field(default_factory=dict)
    skipped: int = 0  # header and comment lines: neither rows nor rejects

    @property
    def absent(self) -> tuple[str, ...]:
        """The mapped keys that no line of the chunk has a value for."""
        return tuple(key for key, lines in self.valued.items() if not len(lines))


@dataclass
class Rows:
    """What a scan found in a chunk, rows in line order: the finishing steps (:func:`finish`) order them.

    ``build(order)`` makes the batch of the rows in ``order`` (positions among these rows; None: as they
    are)."""

    days: Any  # each row's UTC day (numpy int64)
    lines: Any  # each row's line, counted from 0 in the chunk (numpy int64)
    rejects: RejectRows
    build: Callable[[Any], pa.RecordBatch]
    valued: Mapping[str, Any] = field(default_factory=dict)  # see FormatResult
    skipped: int = 0


def finish(rows: Rows) -> FormatResult:
    """The one place a parse's rows and rejects are put in the order every format returns them in:
    rejects by line, rows grouped by UTC date (stable: lines keep their order within a date), with each
    date's partition."""
    rows.rejects.sort()
    days, lines = rows.days, rows.lines
    order = None
    if len(days) and np.any(np.diff(days) < 0):
        order = np.argsort(days, kind="stable")
        days, lines = days[order], lines[order]
    return FormatResult(rows.build(order), partitions(days), rows.rejects, lines, rows.valued, rows.skipped)


def partitions(days: Any) -> list[tuple[str, int, int]]:
    """(date, offset, length) of each run of equal days in ``days`` (already sorted)."""
    if len(days) == 0:
        return []
    cut = np.flatnonzero(np.diff(days)) + 1
    bounds = np.concatenate([[0], cut, [len(days)]])
    return [
        ((_EPOCH + timedelta(days=int(days[b]))).isoformat(), int(b), int(e - b))
        for b, e in itertools.pairwise(bounds)
    ]


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows with ``schema``."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


class Format(ABC):
    """A compiled format: its key, its schema, its Parquet settings and its parser.

    A family implements :attr:`key`, :attr:`schema` and :meth:`scan`; everything else is shared."""

    key: FormatKey

    @property
    def name(self) -> str:
        """How messages name it: the built-in's name, quoted, or the setting's table."""
        return repr(self.key) if isinstance(self.key, str) else f"(the {self.key[0]} format string)"

    @property
    @abstractmethod
    def schema(self) -> pa.Schema:
        """The output columns (without the ``date`` partition column)."""

    @cached_property
    def parquet_options(self) -> dict[str, Any]:
        """Per-column Parquet settings (see :func:`parquet_options`)."""
        return parquet_options(self.schema)

    def parse(
        self,
        data: bytes | memoryview,
        first_line: int,
        max_line_bytes: int = MAX_LINE_BYTES,
        reject_bytes: int = REJECT_BYTES,
    ) -> FormatResult:
        """Parse a chunk of complete ``\\n``-terminated lines; ``first_line`` is the number of its first line.

        ``data`` may be a memoryview (a shared-memory block): it is read in place, never copied whole.
        Every line ends up as a row of the returned batch, in its rejects with its reason, or counted as
        skipped (a header). Lines longer than ``max_line_bytes`` are rejected; rejects keep at most
        ``reject_bytes`` of a line."""
        if not data:
            return FormatResult(empty_batch(self.schema), [], RejectRows())
        return finish(self.scan(data, first_line, max_line_bytes, reject_bytes))

    @abstractmethod
    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        """The rows and rejects of a chunk that is not empty (see :meth:`parse`)."""

    # Whether a line is read with what a header earlier in its file says (a W3C ``#Fields:``): such a
    # file is read in order from its start, never in byte ranges that no header precedes.
    headed = False

    def carry(self, data: bytes | memoryview) -> FormatKey | None:
        """The key the lines after the chunk ``data`` parse with, when a header in it changes it; None
        when it does not (every format without headers). Called on each chunk of a file in order."""
        return None

    def stands_alone(self, data: bytes | memoryview) -> bool:
        """Whether the lines of ``data`` parse the same after other lines of this format (whatever
        header those held) as on their own: then a file's lines may follow another file's in one parse
        (``pipeline.stages.pack``). Always, for a format without headers."""
        return True


class _Plan(Protocol):
    def schema(self) -> pa.Schema: ...


P = TypeVar("P", bound=_Plan)


@dataclass(frozen=True)
class Planned(Format, Generic[P]):
    """A format compiled into a plan, which gives its schema."""

    key: FormatKey
    plan: P

    @cached_property
    def schema(self) -> pa.Schema:
        return self.plan.schema()


class Family(ABC):
    """One kind of ``run.format`` setting: the built-in names it reads, the tables (``{nginx = ...}``)
    it reads, how a setting becomes a :data:`FormatKey`, and how a key is compiled."""

    names: Sequence[str] = ()  # built-in formats: ``format = "auto"`` tries each on a file's lines
    tables: Sequence[str] = ()  # the keys of the ``run.format`` tables it reads
    aliases: Mapping[str, str] = {}  # other names of its built-in formats (not tried by ``auto``)

    @abstractmethod
    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        """The key of a setting of this family; raises FormatSpecError naming what is wrong."""

    @abstractmethod
    def load(self, key: FormatKey) -> Format:
        """The compiled format of a key :meth:`key` gave."""

    def guess(self, lines: Sequence[bytes]) -> tuple[FormatKey, int] | None:
        """A format of this family made to read ``lines`` (``format = "auto"``), and how many of them it
        reads; None when it has no such guess. Built-in names are tried apart (:attr:`names`)."""
        return None


# Columns that repeat a lot (worth a Parquet dictionary) unless named here, and the integer columns that
# mostly grow or stay small (delta encoding packs them; BENCHMARKS.md, "Design figures", has figures).
_UNIQUE_STRINGS = frozenset(
    {"ip", "path", "query", "uri", "request_uri", "args", "query_string", "request_id", "req_id"}
    | {"http_x_forwarded_for", "upstream_addr", "remote_addr", "server_addr"}
)
_STATISTICS = ("ts", "status", "bytes")


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Per-column Parquet settings for any schema: a dictionary for the columns that repeat, min/max
    statistics where they let readers skip row groups, delta encoding for growing or small integers."""
    names = schema.names
    strings = [f.name for f in schema if pa.types.is_string(f.type) and f.name not in _UNIQUE_STRINGS]
    small = [f.name for f in schema if f.name in ("status", "is_bot", "server_port")]
    # a column is either dictionary- or delta-encoded: Parquet rejects an encoding for a dictionary
    # column (a server has a few ports, so server_port keeps its dictionary)
    deltas = [f.name for f in schema if (f.name == "ts" or pa.types.is_int64(f.type)) and f.name not in small]
    return {
        "use_dictionary": strings + small,
        "write_statistics": [n for n in _STATISTICS if n in names],
        "column_encoding": dict.fromkeys(deltas, "DELTA_BINARY_PACKED"),
    }
