"""JSON lines whose keys come in any order: ``[run.format] jsonl = {column = "key", ...}``.

nginx's ``escape=json`` templates write their keys in a fixed order and compile like any format string
(:mod:`pipeline.formats.spec`). Logs from other writers (a Go or Node service, a log shipper) order keys
as they like; for those the config maps each output column to a key.

Each chunk is read by Arrow's JSON reader (C++, all lines at once). Arrow's reader, like polars', stops at
the first malformed line; here such a chunk is read again line by line with ``json.loads``, so a bad
line is a reject (``no match``) and never the end of the file. Values are then typed by their column's
name, as an nginx variable with that column would be (:data:`pipeline.formats.spec.NGINX_VARIABLES`):
``ts`` from ``$time_local``, ``$time_iso8601`` or epoch seconds, whichever each value is; ``request`` split
into method, path, query and protocol; ``status`` int16; durations float64 seconds; sizes int64; any
other column a string. A missing key and JSON ``null`` are null, and so are ``""`` and ``"-"`` except in
the address and the user agent, which are kept as logged (as in every other format).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import binary_array
from pipeline.formats.base import Family, Format, FormatKey, Planned, Reason, RejectRows, Rows
from pipeline.formats.spec import NGINX_VARIABLES, TS_TYPE, Field, FormatSpecError
from pipeline.formats.vector import IntArray, line_bounds

# Which kind a column of this name has: the kind of the nginx variable that makes it.
_KINDS: dict[str, tuple[str, float]] = {
    str(v.column): (v.kind, v.scale) for v in NGINX_VARIABLES.values() if v.column and v.kind != "request"
}
_KINDS |= {"ts": ("time_any", 1.0), "user_agent": ("agent", 1.0)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DASH = binary_array([b"-"], pa.string())[0]  # a scalar without pa.scalar, which imports pandas


@dataclass(frozen=True)
class JsonPlan:
    """Output columns and the JSON key each comes from."""

    mapping: tuple[tuple[str, str], ...]  # (column, key) in the order given
    escape: str = "json"
    name: str = "jsonl"

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
        return cls(tuple(mapping.items()))

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        """One field per mapped column, typed as :mod:`pipeline.formats.engine` types them."""
        out = []
        for column, key in self.mapping:
            if column == "request":
                out.append(Field(key, "request", None, False))
                continue
            kind, scale = _KINDS.get(column, ("string", 1.0))
            out.append(Field(key, "time_local" if kind == "time_any" else kind, column, False, scale))
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
    """``{jsonl = {column = "key", ...}}``; its key holds the mapping as JSON text."""

    tables = ("jsonl",)

    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        if isinstance(setting, str) or len(setting) != 1 or not isinstance(setting["jsonl"], Mapping):
            raise FormatSpecError("jsonl", "give {jsonl = {column = 'key', ...}} and nothing else")
        JsonPlan.compile(setting["jsonl"])
        return ("jsonl", json.dumps(dict(setting["jsonl"])))

    def load(self, key: FormatKey) -> Format:
        return JsonFormat(key, JsonPlan.compile(json.loads(key[1])))

    def guess(self, lines: Sequence[bytes]) -> tuple[FormatKey, int] | None:
        """The mapping :func:`suggest` proposes for ``lines``, and how many of them are JSON objects."""
        suggested = suggest(list(lines)) if lines else None
        if suggested is None:
            return None
        objects, mapping = suggested
        return ("jsonl", json.dumps(mapping)), objects


def scan(
    plan: JsonPlan, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int
) -> Rows:
    """The rows and rejects of a chunk of complete JSON lines; every line becomes a row or a reject."""
    a = np.frombuffer(data, dtype=np.uint8)
    starts, ends, _, _ = line_bounds(a)
    rejects = RejectRows()
    keys = [key for _, key in plan.mapping]
    lines_ok, values = _read(data, starts, ends, keys, max_line_bytes, rejects, first_line, reject_bytes)
    idx = np.flatnonzero(lines_ok)
    ok = np.ones(len(idx), dtype=bool)
    reasons = np.full(len(idx), Reason.NO_MATCH, dtype=object)
    days = np.zeros(len(idx), dtype=np.int64)
    typed_fields = []
    for f, strings in zip(plan.fields, values, strict=True):
        typed, f_days = _typed(plan, f, strings)
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

    absent = tuple(key for key, v in zip(keys, values, strict=True) if v.null_count == len(v))
    return Rows(days[keep], idx[keep], rejects, build, absent)


def _read(
    data: bytes | memoryview,
    starts: IntArray,
    ends: IntArray,
    keys: list[str],
    max_line_bytes: int,
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> tuple[Any, list[pa.Array]]:
    """Which lines are JSON objects, and each key's value of those lines as strings (null: absent)."""
    shape = _object_shaped(data, starts, ends, max_line_bytes, rejects, first_line, reject_bytes)
    candidates = np.flatnonzero(shape)
    body = (
        data
        if len(candidates) == len(starts)
        else b"".join(bytes(data[starts[i] : ends[i] + 1]) for i in candidates)
    )
    try:
        return shape, _arrow(body, keys, len(candidates))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        pass  # a malformed object among them: read those line by line
    return _read_each(data, starts, ends, candidates, keys, rejects, first_line, reject_bytes)


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
    for i in np.flatnonzero(~shape):
        line = bytes(data[starts[i] : ends[i]])
        reason = Reason.EMPTY if not line else Reason.TOO_LONG if len(line) > max_line_bytes else None
        reason = reason or (Reason.NUL_BYTE if b"\x00" in line else None)
        reason = reason or (Reason.INVALID_UTF8 if bad_utf8[i] else Reason.NO_MATCH)
        rejects.add(first_line + int(i), reason, line, reject_bytes)
    return shape


def _read_each(
    data: bytes | memoryview,
    starts: IntArray,
    ends: IntArray,
    candidates: IntArray,
    keys: list[str],
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> tuple[Any, list[pa.Array]]:
    """``_read`` line by line with ``json.loads``, for a chunk Arrow's reader stops in: a malformed
    line is a reject, and the others are read."""
    good = np.zeros(len(starts), dtype=bool)
    values: list[list[bytes | None]] = [[] for _ in keys]
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
        if why is not None:
            rejects.add(first_line + int(i), why, line, reject_bytes)
            continue
        good[i] = True
        for k, key in enumerate(keys):
            values[k].append(_text(record.get(key)))
    return good, [_strings(v) for v in values]


def _arrow(data: bytes | memoryview, keys: list[str], n: int) -> list[pa.Array]:
    import pyarrow.json as pj

    table = pj.read_json(
        io.BytesIO(data), read_options=pj.ReadOptions(block_size=max(len(data), 1 << 16) + 1)
    )
    if table.num_rows != n:  # Arrow skips blank lines: the rows would not be the lines
        raise ValueError("rows and lines differ")
    out = []
    for key in keys:
        if key not in table.column_names:
            out.append(pa.nulls(n, pa.string()))
            continue
        column = table.column(key).combine_chunks()
        if pa.types.is_nested(column.type):
            raise ValueError(f"{key} holds objects or lists")
        if pa.types.is_timestamp(column.type):
            column = _epoch_strings(column)
        out.append(column if pa.types.is_string(column.type) else column.cast(pa.string()))
    return out


def _epoch_strings(column: pa.Array) -> pa.Array:
    """A timestamp column (Arrow's reader makes ISO 8601 strings timestamps, in UTC) as epoch seconds
    with microseconds, which the time kinds read back exactly (its own string form drops the offset)."""
    unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[column.type.unit]
    count = len(column) + column.offset
    ticks = np.frombuffer(column.buffers()[1], dtype=np.int64, count=count)[column.offset :]
    micros = ticks * (1_000_000 // unit) if unit <= 1_000_000 else ticks // (unit // 1_000_000)
    seconds, fraction = np.divmod(micros, 1_000_000)
    text = np.char.add(np.char.add(seconds.astype(str), "."), np.char.zfill(fraction.astype(str), 6))
    valid = None if column.null_count == 0 else _valid(column)
    return binary_array([t.encode() for t in text.tolist()], pa.string(), valid)


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


def _valid(strings: pa.Array) -> Any:
    bits = np.unpackbits(
        np.frombuffer(strings.buffers()[0], dtype=np.uint8),
        count=len(strings) + strings.offset,
        bitorder="little",
    )
    return bits[strings.offset :].astype(bool)


def _time_any(one: _OnePlan, a: Any, data: bytes, spans: Any) -> Any:
    """``ts`` from whichever of ``$time_local``, ``$time_iso8601`` or epoch seconds each value is."""
    from pipeline.formats import engine

    n = spans.shape[2]
    rows = np.arange(n)
    best = None
    for kind in ("time_local", "time_iso8601", "epoch"):
        plan = _OnePlan(one.escape, (Field(one.fields[0].var, kind, "ts", False),))
        typed = engine._Typed(plan, a, engine._Positions(a), data, spans, rows)  # type: ignore[arg-type]
        if best is None:
            best = typed
            continue
        better = typed.ok & ~best.ok  # lines this form reads and the earlier ones did not
        if better.any():
            _merge(best, typed, better)
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
    best.ok[rows] = True
    best.days[rows] = other.days[rows]
    (_, spec_best), (_, spec_other) = best.values[0], other.values[0]
    spec_best[2][rows] = spec_other[2][rows]


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
