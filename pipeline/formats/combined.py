"""Apache/Nginx *combined* log format, parsed with vectorised numpy over the raw chunk bytes.

    ip ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "method target protocol" status bytes "referrer" "agent"

Why not one regex per line: a regex costs microseconds a line, in Arrow's C++ or in Python's ``re``
(figures: BENCHMARKS.md, "Design figures"), while the lines of a chunk can be split all at once. Almost
every real line is plain printable ASCII with exactly six quotes, so the *fast path* finds the field
boundaries for all lines at once from the positions of spaces and quotes (``np.flatnonzero``) and
checks the fixed layout around them. Lines that do not fit that shape exactly (non-ASCII, control bytes,
backslash escapes, an unusual number of quotes or spaces) go to the *slow path*, a Python ``re`` over the
bytes of that line, which is the ground truth and also accepts the valid variants: ``\\"`` inside quoted
fields, the request ``"-"``, and the request lines nginx could not parse and logs with status 400
(``"GET /"``, ``""``, an SSH banner, TLS handshake bytes): their row has a null method, path, query and
protocol and the ``request`` column holds the text as logged. Both paths produce byte spans into the chunk;
every column is then cut from the chunk buffer with one ``take`` (no per-line Python objects), and the
timestamp is parsed arithmetically from its fixed-width digits instead of ``strptime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import from_buffers
from pipeline.formats.base import Format, FormatKey, Reason, RejectRows, Rows
from pipeline.formats.vector import (
    MAX_DIGITS,
    TS_WIDTH,
    BoolArray,
    ByteArray,
    IntArray,
    all_digits,
    cast_spans,
    fast_candidates,
    find,
    is_bot,
    is_dash,
    line_bounds,
    merge_lines,
    parse_ints,
    parse_time_local,
    reject_blank_and_long,
    string_columns,
)

SCHEMA = pa.schema(
    [
        ("ip", pa.string()),
        ("user", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("method", pa.string()),
        ("path", pa.string()),
        ("query", pa.string()),
        ("protocol", pa.string()),
        ("request", pa.string()),  # as logged, where it does not split into method, target, protocol
        ("status", pa.int16()),
        ("bytes", pa.int64()),
        ("referrer", pa.string()),
        ("user_agent", pa.string()),
        ("is_bot", pa.bool_()),
    ]
)

# How to store the columns (the figures are in BENCHMARKS.md, "Design figures"): dictionary-encode only
# the low-cardinality columns (trying a dictionary on ip, path or ts is wasted work before the writer
# falls back to plain), keep min/max statistics only where they help readers skip row groups, and
# delta-encode the integers (timestamps mostly increase; response sizes pack into fewer bits).
PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["user", "method", "protocol", "status", "referrer", "user_agent", "is_bot"],
    "write_statistics": ["ts", "status", "bytes"],
    "column_encoding": {"ts": "DELTA_BINARY_PACKED", "bytes": "DELTA_BINARY_PACKED"},
}


# Span columns: one (start, end) byte range per field and line.
IP, IDENT, USER, TIME, METHOD, TARGET, PROTOCOL, STATUS, BYTES, REFERRER, AGENT = range(11)
NFIELDS = 11

# The ground truth. Byte pattern, so spans are byte offsets and \S, \d are ASCII-only.
_QUOTED = rb'"((?:[^"\\]|\\.)*)"'
SLOW_RE = re.compile(
    rb"(\S+) (\S+) (\S+) \[([^\]]+)\] "
    rb'"(?:(\S+) (\S+) (\S+)|-|' + _QUOTED[1:-1] + rb')" '
    rb"(\d{3}) (\d+|-) " + _QUOTED + rb" " + _QUOTED
)
_RAW_GROUP = 8  # a request that does not split
# regex group number of each span column
_GROUPS = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12)

TS_SPACE = 20  # where its space is


@dataclass(frozen=True)
class CombinedFormat(Format):
    """The combined format through its own parser: the rows the plan engine gives (a test checks it),
    found with fewer passes over the chunk, since every field's place is known."""

    key: FormatKey = "combined"

    @property
    def schema(self) -> pa.Schema:
        return SCHEMA

    @cached_property
    def parquet_options(self) -> dict[str, Any]:
        return PARQUET_OPTIONS

    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        return scan(data, first_line, max_line_bytes, reject_bytes)


def scan(data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
    """The rows and rejects of a chunk of complete ``\\n``-terminated lines (see ``Format.parse``)."""
    a = np.frombuffer(data, dtype=np.uint8)
    starts, ends, newlines, crlf = line_bounds(a)
    n = len(starts)

    request_dash = np.zeros(n, dtype=bool)
    raw_request: dict[int, tuple[int, int]] = {}  # line -> (start, end) of a request that does not split
    rejects = RejectRows()

    length = ends - starts
    too_long = length > max_line_bytes
    fast = fast_candidates(a, starts, newlines, crlf) & ~too_long
    idx, spans = _fast_spans(a, starts, ends, fast)  # the lines it took, their (field, start/end, line) spans
    slow_lines, slow_spans = [], []
    for i in np.flatnonzero(~fast & (length > 0) & ~too_long):
        line_spans = _slow_line(
            data,
            int(starts[i]),
            int(ends[i]),
            int(i),
            request_dash,
            raw_request,
            rejects,
            first_line,
            reject_bytes,
        )
        if line_spans is not None:
            slow_lines.append(int(i))
            slow_spans.append(line_spans)
    idx, spans = merge_lines(idx, spans, slow_lines, slow_spans)  # rare: the odd lines the regex took
    reject_blank_and_long(rejects, data, starts, ends, too_long, first_line, reject_bytes)

    # value checks on every matched line, whichever path found its fields
    ts_us, days, ts_ok = parse_time_local(a, spans[TIME, 0], spans[TIME, 1])
    nbytes, bytes_null, num_ok = parse_ints(data, a, spans[BYTES, 0], spans[BYTES, 1])
    for j in np.flatnonzero(~ts_ok):
        k = int(idx[j])
        # A ']' inside the time field means the line does not even have the shape (the regex stops the
        # time at the first ']'); the fast path lets such lines through to here.
        time_field = bytes(data[spans[TIME, 0, j] : spans[TIME, 1, j]])
        reason = Reason.NO_MATCH if b"]" in time_field else Reason.BAD_TIMESTAMP
        rejects.add(first_line + k, reason, bytes(data[starts[k] : ends[k]]), reject_bytes)
    for j in np.flatnonzero(ts_ok & ~num_ok):
        k = int(idx[j])
        rejects.add(first_line + k, Reason.OUT_OF_RANGE, bytes(data[starts[k] : ends[k]]), reject_bytes)
    keep = ts_ok & num_ok
    if not keep.all():
        # as (field x start/end, line) rows: compressing those is cheaper than compressing the last
        # axis of the 3-D array
        idx, spans = idx[keep], spans.reshape(2 * NFIELDS, -1).compress(keep, axis=1).reshape(NFIELDS, 2, -1)
        ts_us, days, nbytes, bytes_null = ts_us[keep], days[keep], nbytes[keep], bytes_null[keep]

    def build(order: IntArray | None) -> pa.RecordBatch:
        return _build_batch(a, data, spans, idx, request_dash, raw_request, ts_us, nbytes, bytes_null, order)

    return Rows(days, idx, rejects, build)


def _fast_spans(a: ByteArray, starts: IntArray, ends: IntArray, cand: BoolArray) -> tuple[IntArray, IntArray]:
    """Find field spans of candidate lines from space and quote positions; clear ``cand`` where the
    line does not have the exact fixed layout (those lines go to the slow path).

    Returns the lines taken and their spans, (field, start/end, line) in the order of the lines."""
    ci = np.flatnonzero(cand)
    if len(ci) == 0:
        return ci, np.zeros((NFIELDS, 2, 0), dtype=np.int64)
    ok, cols = _fixed_layout(a, starts[ci], ends[ci])
    # the numbers are checked over the lines still in the running only, whose spans are in order
    k = np.flatnonzero(ok)
    ok[k] = _numbers_ok(a, cols, k)
    taken = np.flatnonzero(ok)  # found once; np.compress would find them again for each span row
    cand[ci[~ok]] = False
    return ci[taken], _gather_spans(cols, taken)


def _fixed_layout(
    a: ByteArray, s: IntArray, e: IntArray
) -> tuple[BoolArray, tuple[tuple[IntArray, IntArray], ...]]:
    """Whether each line (``s``, ``e``: its bounds) has the fixed layout of spaces, quotes and brackets,
    and the (start, end) of each of its fields, in field order (meaningless where it has not)."""
    pad = np.full(8, len(a) + 64, dtype=np.int64)  # sentinels past the end: lookups never overrun
    sp = np.concatenate([np.flatnonzero(a == 32), pad])
    qt = np.concatenate([np.flatnonzero(a == 34), pad])
    ok = np.ones(len(s), dtype=bool)

    def at(pos: IntArray) -> ByteArray:
        return a.take(pos, mode="clip")

    def nth(positions: IntArray, i: IntArray) -> IntArray:
        # clipped lookups land on the sentinels, which fail every check below
        return positions.take(i, mode="clip")

    i_sp = np.searchsorted(sp, s)
    s1, s2, s3 = nth(sp, i_sp), nth(sp, i_sp + 1), nth(sp, i_sp + 2)
    ok &= (s1 > s) & (s2 > s1 + 1) & (s3 > s2 + 1) & (s3 + 31 < e)
    ok &= (at(s3 + 1) == 91) & (at(s3 + 2 + TS_WIDTH) == 93) & (at(s3 + 3 + TS_WIDTH) == 32)
    q1 = s3 + 4 + TS_WIDTH
    i_q = np.searchsorted(qt, s)
    ok &= nth(qt, i_q) == q1
    q2, q3, q4, q5, q6 = (nth(qt, i_q + k) for k in range(1, 6))
    ok &= (q6 == e - 1) & (nth(qt, i_q + 6) > e)
    # (a ']' inside the fixed-width time is left to the timestamp check, see scan)
    # The spaces after the user's follow in a fixed order: the one inside the time, the one before
    # the request, then the request's two, which must split it into three non-empty words, and the
    # one after it (this replaces a second search through all spaces of the chunk).
    ok &= (nth(sp, i_sp + 3) == s3 + 2 + TS_SPACE) & (nth(sp, i_sp + 4) == q1 - 1)
    m_end, p_start = nth(sp, i_sp + 5), nth(sp, i_sp + 6)
    ok &= (m_end > q1 + 1) & (p_start > m_end + 1) & (q2 > p_start + 1) & (nth(sp, i_sp + 7) == q2 + 1)
    # ' ddd bytes "' between request and referrer (status and bytes are checked to be digits in
    # _numbers_ok, so there are no other spaces in between)
    ok &= (at(q2 + 1) == 32) & (at(q2 + 5) == 32) & (at(q3 - 1) == 32) & (q3 - 1 > q2 + 6)
    ok &= (at(q4 + 1) == 32) & (q5 == q4 + 2)
    cols = (
        (s, s1),
        (s1 + 1, s2),
        (s2 + 1, s3),
        (s3 + 2, s3 + 2 + TS_WIDTH),
        (q1 + 1, m_end),
        (m_end + 1, p_start),
        (p_start + 1, q2),
        (q2 + 2, q2 + 5),
        (q2 + 6, q3 - 1),
        (q3 + 1, q4),
        (q5 + 1, q6),
    )
    return ok, cols


def _numbers_ok(a: ByteArray, cols: tuple[tuple[IntArray, IntArray], ...], k: IntArray) -> BoolArray:
    """Of the lines ``k``: status is three digits, and bytes digits (at most MAX_DIGITS + 1: longer goes
    the slow way) or "-". Checked by Arrow, which wants the spans in order through the chunk."""
    (st_s, st_e), (b_s, b_e) = cols[STATUS], cols[BYTES]
    dash = is_dash(a, b_s, b_e)
    status_ok = all_digits(a, st_s[k], st_e[k])
    bytes_ok = all_digits(a, b_s[k], b_e[k]) & (b_e - b_s <= MAX_DIGITS + 1)[k]
    return status_ok & (bytes_ok | dash[k])


def _gather_spans(cols: tuple[tuple[IntArray, IntArray], ...], taken: IntArray) -> IntArray:
    """The (field, start/end, line) spans of the lines ``taken``."""
    spans = np.empty((NFIELDS, 2, len(taken)), dtype=np.int64)
    for f, (lo, hi) in enumerate(cols):  # straight into place: no stacked copy to compress again
        lo.take(taken, out=spans[f, 0])
        hi.take(taken, out=spans[f, 1])
    return spans


def _slow_line(
    data: bytes | memoryview,
    start: int,
    end: int,
    i: int,
    request_dash: BoolArray,
    raw_request: dict[int, tuple[int, int]],
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> IntArray | None:
    """Parse one odd line with the ground-truth regex: its (field, start/end) spans, or None when it
    is rejected (with its reason)."""
    line = bytes(data[start:end])
    if b"\x00" in line:
        rejects.add(first_line + i, Reason.NUL_BYTE, line, reject_bytes)
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        rejects.add(first_line + i, Reason.INVALID_UTF8, line, reject_bytes)
        return None
    m = SLOW_RE.fullmatch(line)
    if m is None:
        rejects.add(first_line + i, Reason.NO_MATCH, line, reject_bytes)
        return None
    if m.group(METHOD + 1) is None:
        request_dash[i] = True  # "-", or a request line kept as logged
        if m.group(_RAW_GROUP) is not None:
            raw_request[i] = (start + m.start(_RAW_GROUP), start + m.end(_RAW_GROUP))
    spans = np.empty((NFIELDS, 2), dtype=np.int64)
    for f, g in enumerate(_GROUPS):
        lo, hi = m.span(g)
        if lo < 0:  # the request "-": method/target/protocol are null; an empty span in field order
            lo = hi = m.end(TIME + 1)
        spans[f] = (start + lo, start + hi)
    return spans


def _build_batch(
    a: ByteArray,
    data: bytes | memoryview,
    sp: IntArray,
    idx: IntArray,
    request_dash: BoolArray,
    raw_request: dict[int, tuple[int, int]],
    ts_us: IntArray,
    nbytes: IntArray,
    bytes_null: BoolArray,
    order: IntArray | None,
) -> pa.RecordBatch:
    """Assemble the output batch of the accepted lines ``idx`` (``sp``: their field spans), rows in
    ``order`` (None: as they are)."""
    m = len(idx)
    buf = pa.py_buffer(data)
    take = np.arange(m) if order is None else order
    ip, user, method, path, query, protocol, referrer, user_agent = _string_fields(
        a, buf, sp, request_dash[idx], take
    )
    request = _raw_requests(buf, sp, idx, raw_request, take)

    def ordered(x: IntArray) -> IntArray:
        return x if order is None else x[order]

    status = ordered(cast_spans(data, sp[STATUS, 0], sp[STATUS, 1], None, np.int16))
    bytes_valid = ordered(~bytes_null)
    columns = [
        ip,
        user,
        from_buffers(SCHEMA.field("ts").type, m, [None, pa.py_buffer(ordered(ts_us))]),
        method,
        path,
        query,
        protocol,
        request,
        from_buffers(pa.int16(), m, [None, pa.py_buffer(status)]),
        from_buffers(
            pa.int64(),
            m,
            [
                None if bytes_valid.all() else pa.py_buffer(np.packbits(bytes_valid, bitorder="little")),
                pa.py_buffer(ordered(nbytes)),
            ],
        ),
        referrer,
        user_agent,
        is_bot(user_agent),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def _string_fields(
    a: ByteArray, buf: pa.Buffer, sp: IntArray, dash_lines: BoolArray, take: IntArray
) -> list[pa.Array]:
    """The string columns ip, user, method, path, query, protocol, referrer and user agent, rows in
    ``take`` (``dash_lines``: the lines whose request is "-" or kept as logged)."""
    # path / query: the target split at its first '?'; the query is null when there is no '?'
    t_lo, t_hi = sp[TARGET, 0], sp[TARGET, 1]
    first_q = find(a, t_lo, t_hi, "?")
    has_q = (first_q >= 0) & ~dash_lines
    path_hi = np.where(has_q, first_q, t_hi)
    query_lo = np.where(has_q, first_q + 1, t_hi)
    request_valid = ~dash_lines if dash_lines.any() else None
    # in the order of the fields within a line (see _string_columns)
    return string_columns(
        buf,
        np.stack(
            [
                sp[IP, 0],
                sp[USER, 0],
                sp[METHOD, 0],
                t_lo,
                query_lo,
                sp[PROTOCOL, 0],
                sp[REFERRER, 0],
                sp[AGENT, 0],
            ]
        ),
        np.stack(
            [
                sp[IP, 1],
                sp[USER, 1],
                sp[METHOD, 1],
                path_hi,
                t_hi,
                sp[PROTOCOL, 1],
                sp[REFERRER, 1],
                sp[AGENT, 1],
            ]
        ),
        take,
        [
            None,
            ~is_dash(a, sp[USER, 0], sp[USER, 1]),
            request_valid,
            request_valid,
            has_q,
            request_valid,
            ~is_dash(a, sp[REFERRER, 0], sp[REFERRER, 1]),
            None,
        ],
    )


def _raw_requests(
    buf: pa.Buffer, sp: IntArray, idx: IntArray, raw_request: dict[int, tuple[int, int]], take: IntArray
) -> pa.Array:
    """The request as logged, for the few lines whose request did not split (null elsewhere: the
    others' spans are empty ones at the end of their line, so the spans stay in order through it)."""
    raw_lines = np.isin(idx, list(raw_request)) if raw_request else None  # (rejected lines are not in idx)
    if raw_lines is None or not raw_lines.any():
        return pa.nulls(len(idx), pa.string())
    lo, hi = sp[AGENT, 1].copy(), sp[AGENT, 1].copy()
    for j in np.flatnonzero(raw_lines):
        lo[j], hi[j] = raw_request[int(idx[j])]
    (request,) = string_columns(buf, lo[None, :], hi[None, :], take, [raw_lines])
    return request
