"""JSON lines whose keys come in any order: ``[run.format] jsonl = {column = "key", ...}``.

nginx's ``escape=json`` templates write their keys in a fixed order and compile like any format string
(:mod:`pipeline.formats.spec`). Logs from other writers (a Go or Node service, a log shipper) order keys
as they like; for those the config maps each output column to a key.

Each chunk is read by Arrow's JSON reader (C++, all lines at once), or with the same result by the
compiled loop of :mod:`pipeline.formats.jsonl_nested` or a template of the lines
(:mod:`pipeline.formats.jsonl_template`) where those take it. Arrow's reader, like polars', stops at the
first malformed line; here the lines around it are read again by Arrow and that line with ``json.loads``
(:func:`_read`), so a bad line is a reject (``no match``) and never the end of the file.
Values are then typed by their column's name, as an nginx variable with that column would be
(:data:`pipeline.formats.spec.NGINX_VARIABLES`): ``ts`` from ``$time_local``, ISO 8601 or epoch seconds
(milliseconds, microseconds or nanoseconds where the number is too large for seconds), whichever each
value is; ``request`` split into method, path, query and protocol; ``status`` int16; durations float64
seconds; sizes int64; any other column a string. A missing key and JSON ``null`` are null, and so are
``""`` and ``"-"`` except in the address and the user agent, which are kept as logged (as in every
other format).

A key may be a path into nested objects and lists (:mod:`pipeline.formats.jsonpath`), found in Arrow's
struct and list columns. The built-in JSON access logs (:mod:`pipeline.formats.json_servers`) are plans
of their own: each column typed as its documentation says, read from the first of several key paths
with a value, and keys a line must have.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import binary_array, string_buffers
from pipeline.formats import compiled, compiled_types, jsonl_nested, jsonl_template, jsonpath
from pipeline.formats.base import Family, Format, FormatKey, Planned, Reason, RejectRows, Rows
from pipeline.formats.json_servers import JSON_SERVERS
from pipeline.formats.spec import NGINX_VARIABLES, TIME_KINDS, TS_TYPE, Field, FormatSpecError
from pipeline.formats.vector import IntArray, line_bounds, reject_lines

# Which kind a column of this name has: the kind of the nginx variable that makes it.
_KINDS: dict[str, tuple[str, float]] = {
    str(v.column): (v.kind, v.scale) for v in NGINX_VARIABLES.values() if v.column and v.kind != "request"
}
_KINDS |= {"ts": ("time_any", 1.0), "user_agent": ("agent", 1.0)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DASH = binary_array([b"-"], pa.string())[0]  # a scalar without pa.scalar, which imports pandas


@dataclass(frozen=True)
class Entry:
    """One output column (``request``: the request line's columns) and the key paths it is read from:
    the first path with a value (neither null nor ``""``) gives it. ``kind`` and ``scale`` type the value
    as :class:`~pipeline.formats.spec.Field` does; ``part`` takes a part of the text first: ``host`` or
    ``port`` of an address (``1.2.3.4:80``, ``[::1]:80``; an address without a port is its own host),
    ``path`` or ``query`` of a request target."""

    column: str
    keys: tuple[str, ...]
    kind: str = "string"
    scale: float = 1.0
    part: str = ""
    nulls: tuple[bytes, ...] = ()

    @cached_property
    def paths(self) -> tuple[jsonpath.KeyPath, ...]:
        return tuple(jsonpath.parse(k) for k in self.keys)


def _entry(column: str, key: str) -> Entry:
    """A key map's column: typed by the column's name (see the module's text)."""
    if column == "request":
        return Entry(column, (key,), "request")
    kind, scale = _KINDS.get(column, ("string", 1.0))
    return Entry(column, (key,), "time_local" if kind == "time_any" else kind, scale)


@dataclass(frozen=True)
class JsonPlan:
    """Output columns and the JSON key paths each comes from; ``required``: key paths every row has a
    value for (a line without one is a reject, ``no match``: a built-in's lines of another logger)."""

    entries: tuple[Entry, ...]
    required: tuple[str, ...] = ()
    name: str = "jsonl"
    escape: str = "json"

    @classmethod
    def compile(cls, mapping: Mapping[str, Any]) -> JsonPlan:
        if not mapping or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items()
        ):
            raise FormatSpecError("jsonl", "give a table of output columns and JSON keys: {ts = 'time', ...}")
        if "ts" not in mapping:
            raise FormatSpecError(
                "jsonl", "map the column 'ts' to the key of the time: the output is partitioned by date"
            )
        if "date" in mapping:
            raise FormatSpecError("jsonl", "'date' is the partition column; name that column otherwise")
        for column, key in mapping.items():
            try:
                jsonpath.parse(key)
            except jsonpath.PathError as exc:
                raise FormatSpecError("jsonl", f"column {column!r}: key {key!r}: {exc}") from exc
        return cls(tuple(_entry(column, key) for column, key in mapping.items()))

    @property
    def mapping(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((e.column, e.keys) for e in self.entries)

    @cached_property
    def paths(self) -> tuple[jsonpath.KeyPath, ...]:
        """Every key path read, each once: the entries' and the required ones."""
        texts = dict.fromkeys([*(k for e in self.entries for k in e.keys), *self.required])
        return tuple(jsonpath.parse(t) for t in texts)

    @cached_property
    def numeric(self) -> frozenset[str]:
        """The paths whose values only numbers are made of (a duration, an epoch, the time): a number
        there gives the same value whichever type Arrow's reader gives its column."""
        used: dict[str, bool] = {}
        for e, f in zip(self.entries, self.fields, strict=True):
            number = not e.part and (f.kind in ("float", "duration", "epoch") or f.kind in TIME_KINDS)
            for key in e.keys:
                used[key] = used.get(key, True) and number
        return frozenset(k for k, number in used.items() if number)

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        """One field per entry, typed as :mod:`pipeline.formats.engine` types them."""
        out = []
        for e in self.entries:
            column = None if e.kind == "request" else e.column
            out.append(Field(" | ".join(e.keys), e.kind, column, False, e.scale, nulls=e.nulls))
        return tuple(out)

    def schema(self) -> pa.Schema:
        return pa.schema([c for f in self.fields for c in f.columns()])

    @property
    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(self.mapping).encode(), usedforsecurity=False).hexdigest()
        return f"jsonl-{digest[:16]}"


class JsonFormat(Planned[JsonPlan]):
    """JSON lines read with a :class:`JsonPlan`."""

    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        return scan(self.plan, data, first_line, max_line_bytes, reject_bytes)


class Jsonl(Family):
    """``{jsonl = {column = "key", ...}}`` (its key holds the mapping as JSON text), and the built-in
    JSON access logs of :data:`pipeline.formats.json_servers.JSON_SERVERS` by name."""

    names = tuple(JSON_SERVERS)
    tables = ("jsonl",)

    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        if isinstance(setting, str) and setting in JSON_SERVERS:
            return setting
        if isinstance(setting, str) or len(setting) != 1 or not isinstance(setting["jsonl"], Mapping):
            raise FormatSpecError("jsonl", "give {jsonl = {column = 'key', ...}} and nothing else")
        JsonPlan.compile(setting["jsonl"])
        return ("jsonl", json.dumps(dict(setting["jsonl"])))

    def load(self, key: FormatKey) -> Format:
        if isinstance(key, str):
            return JsonFormat(key, builtin_plan(key))
        return JsonFormat(key, JsonPlan.compile(json.loads(key[1])))

    def guess(self, lines: Sequence[bytes]) -> tuple[FormatKey, int] | None:
        """The mapping :func:`suggest` proposes for ``lines``, and how many of them are JSON objects;
        None where a built-in JSON format reads at least half of those objects (it is named instead)."""
        suggested = suggest(list(lines)) if lines else None
        if suggested is None:
            return None
        objects, mapping = suggested
        data = b"".join(line.rstrip(b"\r\n").replace(b"\n", b" ") + b"\n" for line in lines)
        for name in JSON_SERVERS:
            if 2 * len(scan(builtin_plan(name), data, 1, len(data) + 1, 0).lines) >= objects:
                return None
        return ("jsonl", json.dumps(mapping)), objects


@lru_cache(maxsize=8)
def builtin_plan(name: str) -> JsonPlan:
    """The plan of a built-in JSON format (:data:`pipeline.formats.json_servers.JSON_SERVERS`)."""
    server = JSON_SERVERS[name]
    entries = tuple(Entry(c.name, c.keys, c.kind, c.scale, c.part, c.nulls) for c in server.columns)
    return JsonPlan(entries, server.required, name)


def scan(
    plan: JsonPlan, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int
) -> Rows:
    """The rows and rejects of a chunk of complete JSON lines; every line becomes a row or a reject."""
    from pipeline.formats import engine  # lazily: see _typed

    a = np.frombuffer(data, dtype=np.uint8)
    starts, ends, newlines, crlf = line_bounds(a)
    rejects = RejectRows()
    bounds = jsonl_template.Bounds(data, a, starts, ends, newlines, crlf)
    lines_ok, quick = _read(bounds, plan, max_line_bytes, rejects, first_line, reject_bytes)
    by_path = _Columns(quick, data, plan.paths)
    idx = np.flatnonzero(lines_ok)
    ok = np.ones(len(idx), dtype=bool)
    for key in plan.required:  # another logger's lines: no match
        ok &= by_path.present(key)
    reasons = np.full(len(idx), Reason.NO_MATCH, dtype=object)
    days = np.zeros(len(idx), dtype=np.int64)
    typed_fields = []
    for unit in _units(plan, by_path):
        if isinstance(unit, int):  # an entry typed from its strings
            entry, f = plan.entries[unit], plan.fields[unit]
            strings = by_path.strings(entry)
            typed, f_days = _typed(plan, f, strings)
        else:  # entries whose values are the chunk's text, typed where they are, together
            one = _OnePlan(plan.escape, unit[0])
            text = by_path.text
            typed = engine._Typed(one, text, engine._Positions(text), by_path.dashed, unit[1], idx)  # type: ignore[arg-type]
            by_path.keep_absent(typed, unit[0], unit[2])
            f_days = None
        bad = ~typed.ok & ok
        reasons[bad] = typed.reason[bad]
        if f_days is not None and strings.null_count:  # the time: absent is not the same as unreadable
            reasons[bad & ~_valid(strings)] = Reason.MISSING_TIME
        ok &= typed.ok
        if f_days is not None:
            days = f_days
        typed_fields.append(typed)
    for j in np.flatnonzero(~ok):
        k = int(idx[j])
        rejects.add(first_line + k, reasons[j], bytes(data[starts[k] : ends[k]]), reject_bytes)
    keep = np.flatnonzero(ok)
    schema = plan.schema()

    def build(order: IntArray | None) -> pa.RecordBatch:
        rows = keep if order is None else keep[order]
        built: dict[str, pa.Array] = {}
        for typed in typed_fields:
            batch = typed.batch(rows, {}, idx)
            built |= {name: batch.column(name) for name in batch.schema.names}
        return pa.RecordBatch.from_arrays([built[n] for n in schema.names], schema=schema)

    # a built-in's optional keys are often absent; a key map's absent key is likely a typo
    valued = {} if plan.name != "jsonl" else by_path.valued(idx)
    return Rows(days[keep], idx[keep], rejects, build, valued)


class _Columns:
    """Each key path's string column (by its text), made from a quick read's spans where it is asked
    for; and each entry's spans, where its paths have them."""

    def __init__(
        self, quick: jsonl_template.Quick, chunk: bytes | memoryview, paths: tuple[jsonpath.KeyPath, ...]
    ):
        texts = [p.text for p in paths]
        self.chunk, self.quick_text = chunk, quick.text
        self.found = dict(zip(texts, quick.columns, strict=True))
        self.spans = dict(zip(texts, quick.spans, strict=True))
        self.presents = dict(zip(texts, quick.present, strict=True))

    @cached_property
    def dashed(self) -> bytes:
        """The chunk and a ``-`` after it, which an absent value's span reads: the log's empty value;
        then any decoded values of the quick read (``Quick.text``, which is all of it)."""
        return self.quick_text if self.quick_text is not None else bytes(self.chunk) + b"-"

    @cached_property
    def text(self) -> Any:
        """:attr:`dashed` as bytes for the engine's loops."""
        return np.frombuffer(self.dashed, dtype=np.uint8)

    def __getitem__(self, path: str) -> pa.Array:
        column = self.found[path]
        if callable(column):  # typed by Arrow's reader, where it is asked for (jsonl_nested._Again)
            column = self.found[path] = column()
        if column is None:
            span = self.spans[path]
            assert span is not None  # a column left to make is a quick read's text
            column = self.found[path] = jsonl_template.text_column(self.dashed, span, self.presents[path])
        return column

    def present(self, path: str) -> Any:
        """The lines with a value for ``path`` (not absent, not null)."""
        present = self.presents[path]
        if present is not None:
            return present
        if self.found[path] is None:
            span = self.spans[path]
            assert span is not None
            return np.ones(span.shape[1], dtype=bool)
        column = self[path]
        return _valid(column) if column.null_count else np.ones(len(column), dtype=bool)

    def valued(self, lines: IntArray) -> dict[str, IntArray]:
        """Each path's lines that have a value for it (``lines``: the object lines, each column's rows)."""
        return {t: lines[self.present(t)] for t in self.found}

    def entry_spans(self, entry: Entry) -> tuple[IntArray, Any] | None:
        """The spans (start/end rows) of an entry's values where its paths have spans, and the lines with
        a value: the first of its keys with one (see :func:`_first`), then its part (:func:`_part`).
        Without the compiled loops, only an entry whose values are a key's own (the numpy engine reads a
        run's spans in their order through the chunk)."""
        found = [self.spans[k] for k in entry.keys]
        if found[0] is None or (len(found) == 1 and not entry.part):
            return None if found[0] is None else (found[0], self.presents[entry.keys[0]])
        if not compiled.loaded():
            return None
        lo, hi = found[0][0], found[0][1]
        has = self.present(entry.keys[0])
        if has.all() and (hi > lo).all():  # the first key has a value on every line: the others no say
            found = found[:1]
        if any(f is None for f in found):
            return None
        for key, other in zip(entry.keys[1:], found[1:], strict=False):
            take = (~has | (hi == lo)) & self.present(key)
            lo, hi, has = np.where(take, other[0], lo), np.where(take, other[1], hi), has | take  # type: ignore[index]
        if entry.part:
            lo, hi, has = compiled_types.part_spans(self.text, lo, hi, has, _PARTS.index(entry.part))
        dash = len(self.chunk)
        return np.stack([np.where(has, lo, dash), np.where(has, hi, dash + 1)]), has

    def strings(self, entry: Entry) -> pa.Array:
        """An entry's values as strings: the first of its keys with one, then its part; from the
        spans where its keys have them (:meth:`entry_spans`)."""
        spans = self.entry_spans(entry)
        if spans is not None:
            return jsonl_template.text_column(self.dashed, spans[0], spans[1])
        return _part(_first([self[k] for k in entry.keys]), entry.part)

    def keep_absent(self, typed: Any, fields: tuple[Field, ...], presents: tuple[Any, ...]) -> None:
        """An address or agent is kept as logged ("-" too), but an absent value is no value."""
        for f, present in zip(fields, presents, strict=True):
            if f.kind in ("ip", "agent") and present is not None and not present.all():
                typed.values = [
                    (name, (*spec[:4], present)) if name == f.column and spec[0] == "string" else (name, spec)
                    for name, spec in typed.values
                ]


_PARTS = ("path", "query", "host", "port")  # kernels_json.parts's numbers of them
Unit = int | tuple[tuple[Field, ...], IntArray, tuple[Any, ...]]


def _units(plan: JsonPlan, by_path: _Columns) -> list[Unit]:
    """The plan's entries in order, as what is typed at once: an entry typed from its strings (its
    index), or a run of entries whose values are the chunk's own text (a quick read's spans), as their
    fields, spans (field, start/end, line) and lines with a value, which the engine types where they
    are. The units keep the entries' order, so a line's reason is still that of the first entry it
    fails. For the numpy engine a run's values follow each other in every line (it cuts its strings so),
    as a template's keys do: a key that starts before the last one's, or where it starts (the same key
    again), starts a new run; the compiled loops read spans in any order."""
    ordered = not compiled.loaded()
    units: list[Unit] = []
    fields: list[Field] = []
    found: list[IntArray] = []
    presents: list[Any] = []
    for j, (entry, f) in enumerate(zip(plan.entries, plan.fields, strict=True)):
        spans = None if f.kind in TIME_KINDS else by_path.entry_spans(entry)  # the time: _time_any
        if fields and (
            spans is None or (ordered and spans[0].shape[1] and spans[0][0, 0] <= found[-1][0, 0])
        ):
            units.append((tuple(fields), np.stack(found), tuple(presents)))
            fields, found, presents = [], [], []
        if spans is None:
            units.append(j)
        else:
            fields.append(f)
            found.append(spans[0])
            presents.append(spans[1])
    if fields:
        units.append((tuple(fields), np.stack(found), tuple(presents)))
    return units


def _first(alternatives: list[pa.Array]) -> pa.Array:
    """Per row, the first of ``alternatives`` (string arrays) with a value: not null, not ``""``."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    out = alternatives[0]
    for other in alternatives[1:]:
        empty = pc.fill_null(pc.equal(pc.binary_length(out), 0), True)
        out = pc.if_else(pc.and_(empty, pc.is_valid(other)), other, out)
    return out


# An address's host and port: "1.2.3.4:80", "[::1]:80"; anything else (a bare address) is its own host.
_HOST_PORT = r"^(?:\[([^\]]*)\]|([^:\[\]]*)):(\d+)$"


def _part(strings: pa.Array, part: str) -> pa.Array:
    """The ``part`` (see :class:`Entry`) of each value."""
    import pyarrow.compute as pc

    if not part:
        return strings
    if part in ("host", "port"):
        # the pattern takes only a value with a colon: where none has one (Caddy's remote_ip and
        # remote_port), a literal search spares its regexes (each value its own host)
        colon = pc.any(pc.match_substring(strings, ":")).as_py()
        if part == "host":
            return pc.replace_substring_regex(strings, _HOST_PORT, r"\1\2") if colon else strings
        # a port logged on its own (Caddy's remote_port) is itself; a bare address has none
        none = pa.nulls(len(strings), pa.string())
        alone = pc.if_else(pc.match_substring_regex(strings, r"^\d+$"), strings, none)
        if not colon:
            return alone
        split = pc.match_substring_regex(strings, _HOST_PORT)
        return pc.if_else(split, pc.replace_substring_regex(strings, _HOST_PORT, r"\3"), alone)
    if part == "path":  # what is before the first "?": a literal split, cheaper than a regex
        return pc.list_element(pc.split_pattern(strings, "?", max_splits=1), 0)
    query = pc.replace_substring_regex(strings, r"^[^?]*\?", "", max_replacements=1)
    return pc.if_else(pc.match_substring(strings, "?"), query, pa.nulls(len(strings), pa.string()))


def _read(
    bounds: jsonl_template.Bounds,
    plan: JsonPlan,
    max_line_bytes: int,
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> tuple[Any, jsonl_template.Quick]:
    """Which lines are JSON objects, and each path's value of those lines as strings (null: absent), or
    the spans of the paths whose values are the chunk's text (a quick read's: :class:`jsonl_template.Quick`).

    Where Arrow's reader stops at a line (a malformed object, a key whose type changes), the lines
    before it are read by Arrow, that line by ``json.loads``, and the rest again by Arrow: a few bad
    lines cost a few more reads, not the chunk's every line in Python. After :data:`_STOPS` stops,
    or a stop that does not name its line, the rest is read line by line.

    Where the compiled loops are loaded, the compiled read (:mod:`pipeline.formats.jsonl_nested`: any key
    order, nested paths) reads the chunk instead where it takes it, else lines that one writer wrote alike
    are read by their template (:mod:`pipeline.formats.jsonl_template`): the same columns, without
    Arrow's parse."""
    data, starts, ends, paths = bounds.data, bounds.starts, bounds.ends, plan.paths
    shape = _object_shaped(data, starts, ends, max_line_bytes, rejects, first_line, reject_bytes)
    # the compiled read (where the loops are loaded: any key order, nested paths; faster than the
    # template where both take a chunk), else the template's
    quick = jsonl_nested.read(bounds, shape, paths, plan.numeric, _ARROW_READS)
    keys = jsonl_template.top_keys(paths)
    if quick is None and keys is not None:
        quick = jsonl_template.read(bounds, shape, keys, max_line_bytes, _ARROW_READS)
    if quick is not None:
        return shape, quick
    none: list[Any] = [None] * len(paths)
    good = shape.copy()
    pending = np.flatnonzero(shape)
    parts: list[list[pa.Array]] = []
    each = (data, starts, ends)
    for _ in range(_STOPS):
        if len(pending) == 0:
            break
        try:
            parts.append(_arrow(_body(data, starts, ends, pending), paths, len(pending)))
            pending = pending[:0]
            break
        except _ARROW_STOPS as exc:
            row = _stop_row(exc, len(pending))
        if row is None:
            break
        if row:
            try:
                parts.append(_arrow(_body(data, starts, ends, pending[:row]), paths, row))
            except _ARROW_STOPS:
                row = 0  # the lines before it do not read either: from the first, line by line
        one = pending[row : row + 1]
        found = _read_each(*each, one, paths, rejects, first_line, reject_bytes)
        good[one], pending = found[0][one], pending[row + 1 :]
        parts.append(found[1])
    if len(pending):
        found = _read_each(*each, pending, paths, rejects, first_line, reject_bytes)
        good[pending] = found[0][pending]
        parts.append(found[1])
    if len(parts) == 1:
        return good, jsonl_template.Quick(list(parts[0]), none, none)
    empty = [pa.array([], pa.string()) for _ in paths]
    joined: list[pa.Array | None] = [
        pa.concat_arrays([p[k] for p in parts] or [empty[k]]) for k in range(len(paths))
    ]
    return good, jsonl_template.Quick(joined, none, none)


# What stops Arrow's reader in a chunk (then read in parts, or line by line), and how many times a
# chunk is read in parts before its rest is read line by line (a key whose type changes every few lines)
_ARROW_STOPS = (
    pa.ArrowInvalid,
    pa.ArrowNotImplementedError,
    pa.ArrowTypeError,
    pa.ArrowIndexError,
    ValueError,
)
_STOPS = 8
_ROW = re.compile(r"JSON parse error: .* in row (\d+)$")


def _stop_row(exc: Exception, n: int) -> int | None:
    """The line (among ``n``) at which Arrow's reader stopped, where its message names one."""
    m = _ROW.search(str(exc)) if isinstance(exc, pa.ArrowInvalid) else None
    return int(m.group(1)) if m is not None and int(m.group(1)) < n else None


def _body(data: bytes | memoryview, starts: IntArray, ends: IntArray, lines: IntArray) -> bytes | memoryview:
    """The lines numbered ``lines`` (in order) of a chunk, each with the byte after it (its line end)."""
    if len(lines) == lines[-1] - lines[0] + 1:  # a run of lines: one slice
        return data[starts[lines[0]] : ends[lines[-1]] + 1]
    a = np.frombuffer(data, dtype=np.uint8)
    edges = np.zeros(len(a) + 1, dtype=np.int8)
    np.add.at(edges, starts[lines], 1)
    np.add.at(edges, ends[lines] + 1, -1)
    keep: Any = np.cumsum(edges[:-1]) > 0
    return bytes(a[keep].tobytes())


def _object_shaped(
    data: bytes | memoryview,
    starts: IntArray,
    ends: IntArray,
    max_line_bytes: int,
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> Any:
    """Which lines could be a JSON object; the others are rejected, with their reason."""
    n = len(starts)
    length = ends - starts
    a = np.frombuffer(data, dtype=np.uint8)
    # Lines that cannot be a JSON object (blank, too long, not {...}, a raw control byte) are rejected
    # here, all at once, so that one bad line does not send its whole chunk down the slow path.
    shape = (length > 0) & (length <= max_line_bytes)
    shape &= (a.take(starts, mode="clip") == 123) & (a.take(ends - 1, mode="clip") == 125)
    control = np.flatnonzero(a < 32)
    control = control[(a[control] != 10) & (a[control] != 13)]
    shape[np.searchsorted(starts, control, side="right") - 1] = False
    # Arrow's JSON reader passes invalid UTF-8 inside a string through into the string column, which
    # would then fail at write time: the lines with bytes beyond ASCII are checked one by one
    bad_utf8 = np.zeros(n, dtype=bool)
    for i in np.unique(np.searchsorted(starts, np.flatnonzero(a >= 128), side="right") - 1):
        bad_utf8[i] = shape[i] and _not_utf8(bytes(data[starts[i] : ends[i]]))
    shape &= ~bad_utf8
    # the reasons of the others, for all at once (a chunk of another format's lines is all rejects)
    nul = np.zeros(n, dtype=bool)
    nul[np.searchsorted(starts, control[a[control] == 0], side="right") - 1] = True
    reasons = np.select(
        [length == 0, length > max_line_bytes, nul, bad_utf8],
        [_REASON_CODES[r] for r in (Reason.EMPTY, Reason.TOO_LONG, Reason.NUL_BYTE, Reason.INVALID_UTF8)],
        _REASON_CODES[Reason.NO_MATCH],
    )
    out = np.flatnonzero(~shape)
    why = [_REASONS[c] for c in reasons[out].tolist()]
    reject_lines(rejects, out, why, data, starts, ends, first_line, reject_bytes)
    return shape


_REASONS = (Reason.EMPTY, Reason.TOO_LONG, Reason.NUL_BYTE, Reason.INVALID_UTF8, Reason.NO_MATCH)
_REASON_CODES = {r: c for c, r in enumerate(_REASONS)}


def _read_each(
    data: bytes | memoryview,
    starts: IntArray,
    ends: IntArray,
    candidates: IntArray,
    paths: tuple[jsonpath.KeyPath, ...],
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> tuple[Any, list[pa.Array]]:
    """``_read`` line by line with ``json.loads``, for a chunk Arrow's reader stops in: a malformed
    line is a reject, and the others are read."""
    good = np.zeros(len(starts), dtype=bool)
    values: list[list[bytes | None]] = [[] for _ in paths]
    for i in candidates:
        line = bytes(data[starts[i] : ends[i]])
        record: Any = None
        why: Reason | None
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            why = Reason.INVALID_UTF8 if _not_utf8(line) else Reason.NO_MATCH
        else:
            why = None if isinstance(record, dict) else Reason.NO_MATCH
        row: list[bytes | None] = []
        try:
            row = [_text(jsonpath.record_value(record, path)) for path in paths] if why is None else []
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"), which Arrow's reader refuses too
            why = Reason.NO_MATCH
        if why is not None:
            rejects.add(first_line + int(i), why, line, reject_bytes)
            continue
        good[i] = True
        for k, text in enumerate(row):
            values[k].append(text)
    return good, [_strings(v) for v in values]


def _arrow(data: bytes | memoryview, paths: tuple[jsonpath.KeyPath, ...], n: int) -> list[pa.Array]:
    return _arrow_columns(_arrow_table(data, n), paths)


def _arrow_table(data: bytes | memoryview, n: int) -> pa.Table:
    """The ``n`` lines ``data`` read by Arrow's JSON reader, in one block (its types are the lines')."""
    import pyarrow.json as pj

    table = pj.read_json(
        io.BytesIO(data), read_options=pj.ReadOptions(block_size=max(len(data), 1 << 16) + 1)
    )
    if table.num_rows != n:  # Arrow skips blank lines: the rows would not be the lines
        raise ValueError("rows and lines differ")
    # Arrow's reader (pyarrow 26) makes an invalid list array of a list that starts with null inside an
    # object ({"a": {"b": [null, 1]}}), which would crash a later step: checked here, cheaply (about 2%
    # of the read), and read line by line where it happens
    table.validate(full=True)
    return table


def _arrow_columns(table: pa.Table, paths: tuple[jsonpath.KeyPath, ...]) -> list[pa.Array]:
    """Each path's values in a table of Arrow's JSON reader, as strings."""
    out = []
    for path in paths:
        column = jsonpath.arrow_value(table, path)
        if pa.types.is_nested(column.type) and column.null_count == len(column):
            column = pa.nulls(len(column), pa.string())  # a path to lists or objects that no line has
        if pa.types.is_nested(column.type):
            raise ValueError(f"{path.text} holds objects or lists")  # kept as JSON text, line by line
        if pa.types.is_timestamp(column.type):
            column = _epoch_strings(column)
        out.append(column if pa.types.is_string(column.type) else column.cast(pa.string()))
    return out


_ARROW_READS = jsonl_template.ArrowReads(_arrow_table, _arrow_columns, _ARROW_STOPS)


def _epoch_strings(column: pa.Array) -> pa.Array:
    """A timestamp column (Arrow's reader makes ISO 8601 strings timestamps, in UTC) as epoch seconds
    with microseconds, which the time kinds read back exactly (its own string form drops the offset)."""
    unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[column.type.unit]
    count = len(column) + column.offset
    ticks = np.frombuffer(column.buffers()[1], dtype=np.int64, count=count)[column.offset :]
    micros = ticks * (1_000_000 // unit) if unit <= 1_000_000 else ticks // (unit // 1_000_000)
    seconds, fraction = np.divmod(micros, 1_000_000)
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    whole = pa.array(seconds).cast(pa.string())
    part = pc.utf8_lpad(pa.array(fraction).cast(pa.string()), 6, "0")
    text = pc.binary_join_element_wise(whole, part, ".")
    return (
        text
        if column.null_count == 0
        else pc.if_else(column.is_valid(), text, pa.nulls(len(text), pa.string()))
    )


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int | float):
        return repr(value).encode()
    return json.dumps(value).encode()  # an object or a list: kept as its JSON text


def _strings(values: list[bytes | None]) -> pa.Array:
    present = np.array([v is not None for v in values], dtype=bool)
    return binary_array([v or b"" for v in values], pa.string(), present)


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _typed(plan: JsonPlan, f: Field, strings: pa.Array) -> tuple[Any, IntArray | None]:
    """One column's values typed by kind (an engine ``_Typed`` over the column's own buffer), and the
    UTC days when it is the time."""
    import pyarrow.compute as pc  # lazily: see pipeline.formats.vector

    from pipeline.formats import engine

    strings = strings.cast(pa.string())
    if f.kind == "time_local" and f.column == "ts":
        strings = _wall(strings)
    valid = np.ones(len(strings), dtype=bool) if strings.null_count == 0 else _valid(strings)
    if not valid.all():
        # an absent key reads as "-", the log's empty value (null in every kind), written in its own
        # place: the spans must stay in order through the data, as the engine's strings need
        strings = pc.fill_null(strings, _DASH)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32, count=len(strings) + 1 + strings.offset)
    offsets = offsets[strings.offset :].astype(np.int64)
    raw = strings.buffers()[2]
    # a byte past the values: lookups at an empty span's start need one even when every value is ""
    data = (raw.to_pybytes() if raw is not None else b"") + b" "
    a = np.frombuffer(data, dtype=np.uint8)
    spans = np.stack([offsets[:-1], offsets[1:]])[None, :, :]
    one = _OnePlan(plan.escape, (f,))
    if f.kind == "time_local" and f.column == "ts":  # the time: as written, whichever form it is in
        typed = _time_any(one, a, data, spans)
        return typed, typed.days
    typed = engine._Typed(one, a, engine._Positions(a), data, spans, np.arange(len(strings)))  # type: ignore[arg-type]
    if f.kind in ("ip", "agent") and not valid.all():  # kept as logged, but an absent key is no value
        typed.values = [
            (name, (*spec[:4], valid)) if spec[0] == "string" else (name, spec) for name, spec in typed.values
        ]
    return typed, None


# Go's "2006/01/02 15:04:05" and its fractions (Caddy's "wall" times: local time without an offset), and
# ISO 8601 with an offset without its colon (Caddy's "iso8601": 2006-01-02T15:04:05.000-0700)
_WALL = r"^(\d{4})/(\d\d)/(\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)$"
_ISO_OFFSET = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d)(\d\d)$"


def _wall(strings: pa.Array) -> pa.Array:
    """Go's wall times as RFC 3339 in UTC (they say no offset), and ISO 8601 offsets with their colon,
    for the vectorised time kinds."""
    import pyarrow.compute as pc

    wall, iso = _could_be(strings)
    for could, pattern, replacement in ((wall, _WALL, r"\1-\2-\3T\4Z"), (iso, _ISO_OFFSET, r"\1:\2")):
        if could and pc.any(pc.match_substring_regex(strings, pattern)).as_py():
            strings = pc.replace_substring_regex(strings, pattern, replacement)
    return strings


def _could_be(strings: pa.Array) -> tuple[bool, bool]:
    """Whether any value could match :data:`_WALL` (19 bytes at least, a ``/`` at its fifth) and
    :data:`_ISO_OFFSET` (24 at least, a ``T`` at its eleventh, a sign at its fifth from last): a look at
    three bytes of each value spares most chunks the two regex passes (BENCHMARKS.md, "JSON lines by key
    map")."""
    _, offsets, a = string_buffers(strings)
    if not len(a):
        return False, False
    lo, hi = offsets[:-1], offsets[1:]
    width = hi - lo
    wall = (width >= 19) & (a.take(lo + 4, mode="clip") == ord("/"))
    sign = a.take(hi - 5, mode="clip")
    iso = (
        (width >= 24) & (a.take(lo + 10, mode="clip") == ord("T")) & ((sign == ord("+")) | (sign == ord("-")))
    )
    return bool(wall.any()), bool(iso.any())


def _valid(strings: pa.Array) -> Any:
    bits = np.unpackbits(
        np.frombuffer(strings.buffers()[0], dtype=np.uint8),
        count=len(strings) + strings.offset,
        bitorder="little",
    )
    return bits[strings.offset :].astype(bool)


# The forms of a time, each tried on the values the earlier ones did not read. An epoch number too large
# for seconds (past the year 9999) is milliseconds (JavaScript's Date.now(), Caddy's unix_milli_float),
# then microseconds, then nanoseconds: so each reads a time after 1978. A number is no other form (those
# hold a ":" or a "/"), so the epochs come last, after the text forms, which they would only slow down.
_NUMBER = re.compile(rb"[0-9]+(?:\.[0-9]+)?")
_TIME_FORMS = (
    ("time_local", 1.0),
    ("time_iso8601", 1.0),
    ("time_rfc3339", 1.0),
    ("epoch", 1.0),
    ("epoch", 1e-3),
    ("epoch", 1e-6),
    ("epoch", 1e-9),
)


def _time_any(one: _OnePlan, a: Any, data: bytes, spans: Any) -> Any:
    """``ts`` from whichever of ``$time_local``, ``$time_iso8601``, RFC 3339 or epoch seconds (or
    milliseconds, microseconds, nanoseconds: :data:`_TIME_FORMS`) each value is."""
    from pipeline.formats import engine

    n = spans.shape[2]
    if n and _NUMBER.fullmatch(bytes(data[spans[0, 0, 0] : spans[0, 1, 0]])):  # epoch seconds, likely:
        # no other form reads a number
        epoch = _OnePlan(one.escape, (Field(one.fields[0].var, "epoch", "ts", False, 1.0),))
        with np.errstate(invalid="ignore"):
            typed = engine._Typed(epoch, a, engine._Positions(a), data, spans, np.arange(n))  # type: ignore[arg-type]
        if typed.ok.all():
            return typed
    best = None
    for kind, scale in _TIME_FORMS:
        plan = _OnePlan(one.escape, (Field(one.fields[0].var, kind, "ts", False, scale),))
        if best is None:
            best = engine._Typed(plan, a, engine._Positions(a), data, spans, np.arange(n))  # type: ignore[arg-type]
            continue
        left = np.flatnonzero(~best.ok)  # each form is tried on the lines the earlier ones did not read
        if len(left) == 0:
            break
        with np.errstate(invalid="ignore"):  # a number too large for this scale: not read, no warning
            typed = engine._Typed(plan, a, engine._Positions(a), data, spans[:, :, left], left)  # type: ignore[arg-type]
        if typed.ok.any():
            _merge(best, typed, left)
    assert best is not None
    # Any other ISO 8601 form (a fraction, "Z": what Go, Node and most shippers write), one by one
    us = best.values[0][1][2]
    for j in np.flatnonzero(~best.ok):
        try:
            when = datetime.fromisoformat(bytes(data[spans[0, 0, j] : spans[0, 1, j]]).decode())
        except (ValueError, UnicodeDecodeError):
            continue
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        micros = (when - _EPOCH) // timedelta(microseconds=1)
        best.ok[j], us[j], best.days[j] = True, micros, micros // 86_400_000_000
    return best


def _merge(best: Any, other: Any, rows: Any) -> None:
    """The times ``other`` read (of the lines ``rows``) into ``best``."""
    read = other.ok
    at = rows[read]
    best.ok[at] = True
    best.days[at] = other.days[read]
    (_, spec_best), (_, spec_other) = best.values[0], other.values[0]
    spec_best[2][at] = spec_other[2][read]


@dataclass(frozen=True)
class _OnePlan:
    """What engine._Typed needs of a plan, for one column."""

    escape: str
    fields: tuple[Field, ...]

    def schema(self) -> pa.Schema:
        return pa.schema([c for f in self.fields for c in f.columns()])


def suggest(lines: list[bytes]) -> tuple[int, dict[str, str]] | None:
    """For JSON lines, a ``jsonl`` mapping that reads them: each key of the first object under the
    column of the nginx variable of that name (``remote_addr`` as ``ip``), other keys under their own
    name, and the first key with "time" in it as ``ts`` when no key is a known time. Also how many of
    ``lines`` are JSON objects. None when the lines are not JSON objects."""
    objects = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            objects.append(record)
    if not objects:
        return None
    mapping: dict[str, str] = {}
    for key in objects[0]:
        var = NGINX_VARIABLES.get(key.lower())
        column = (
            "request" if key.lower() == "request" else (var.column if var and var.column else key.lower())
        )
        if column not in mapping and column != "date":
            mapping[column] = key
    if "ts" not in mapping:
        timed = next((k for k in objects[0] if "time" in k.lower()), None)
        if timed is None:
            return None
        mapping = {"ts": timed, **{c: k for c, k in mapping.items() if k != timed}}
    return len(objects), mapping


__all__ = ["TS_TYPE", "JsonFormat", "JsonPlan", "Jsonl", "scan", "suggest"]
