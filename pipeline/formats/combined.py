"""Apache/Nginx *combined* log format, parsed with vectorised numpy over the raw chunk bytes.

    ip ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "method target protocol" status bytes "referrer" "agent"

Why not one regex per line: pyarrow's ``extract_regex`` costs ~4 us a line and Python's ``re`` far more.
Almost every real line is plain printable ASCII with exactly six quotes, so the *fast path* finds the
field boundaries for all lines at once from the positions of spaces and quotes (``np.flatnonzero``) and
checks the fixed layout around them. Lines that do not fit that shape exactly (non-ASCII, control bytes,
backslash escapes, an unusual number of quotes or spaces) go to the *slow path*, a Python ``re`` over the
bytes of that line, which is the ground truth and also accepts the valid variants: ``\\"`` inside quoted
fields and the request ``"-"`` that nginx writes for a 400. Both paths produce byte spans into the chunk;
every column is then cut from the chunk buffer with one ``take`` (no per-line Python objects), and the
timestamp is parsed arithmetically from its fixed-width digits instead of ``strptime``.
"""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pipeline.arrays import int64_array
from pipeline.formats.base import FormatResult, Reason, RejectRows

# pyarrow.compute is imported inside the functions that use it: the main process imports this module
# only for its schema, and importing compute (building ~300 function wrappers) would cost it ~30 ms
# on the way to its first chunk. The workers get it from the fork server, which warms it up.

SCHEMA = pa.schema(
    [
        ("ip", pa.string()),
        ("user", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("method", pa.string()),
        ("path", pa.string()),
        ("query", pa.string()),
        ("protocol", pa.string()),
        ("status", pa.int16()),
        ("bytes", pa.int64()),
        ("referrer", pa.string()),
        ("user_agent", pa.string()),
        ("is_bot", pa.bool_()),
    ]
)

# How to store the columns (measured on 125k generated lines: 30% less writer CPU, 25% smaller files
# than Arrow's defaults). Dictionary-encode only the low-cardinality columns (trying a dictionary on ip,
# path or ts is wasted work before the writer falls back to plain), keep min/max statistics only where
# they help readers skip row groups, and delta-encode the integers (timestamps mostly increase; response
# sizes pack into fewer bits: 40% less time and 25% smaller than plain for that column).
PARQUET_OPTIONS: dict[str, Any] = {
    "use_dictionary": ["user", "method", "protocol", "status", "referrer", "user_agent", "is_bot"],
    "write_statistics": ["ts", "status", "bytes"],
    "column_encoding": {"ts": "DELTA_BINARY_PACKED", "bytes": "DELTA_BINARY_PACKED"},
}

BOT_PATTERN = "bot|crawler|spider|curl|python-requests"

# Span columns: one (start, end) byte range per field and line.
IP, IDENT, USER, TIME, METHOD, TARGET, PROTOCOL, STATUS, BYTES, REFERRER, AGENT = range(11)
NFIELDS = 11

# The ground truth. Byte pattern, so spans are byte offsets and \S, \d are ASCII-only.
_QUOTED = rb'"((?:[^"\\]|\\.)*)"'
SLOW_RE = re.compile(
    rb"(\S+) (\S+) (\S+) \[([^\]]+)\] "
    rb'"(?:(\S+) (\S+) (\S+)|-)" '
    rb"(\d{3}) (\d+|-) " + _QUOTED + rb" " + _QUOTED
)
# regex group number of each span column
_GROUPS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)

TS_WIDTH = 26  # len("01/Nov/2026:00:00:01 +0000")
TS_SPACE = 20  # where its space is
_MONTHS = [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"]
_MONTH_KEYS = np.array([(m[0] << 16) | (m[1] << 8) | m[2] for m in _MONTHS], dtype=np.int64)
_MONTH_ORDER = np.argsort(_MONTH_KEYS)
_MONTH_SORTED = _MONTH_KEYS[_MONTH_ORDER]
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_TS_DIGITS = np.array([0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19, 22, 23, 24, 25])
_TS_SEP_POS = np.array([2, 6, 11, 14, 17, 20])
_TS_SEP_VAL = np.frombuffer(b"//::: ", dtype=np.uint8)
_EPOCH = date(1970, 1, 1)
_MIN_DAY = (date.min - _EPOCH).days
_MAX_DAY = (date.max - _EPOCH).days
MAX_DIGITS = 18  # any 18-digit number fits in int64; longer ones are checked one by one

# numpy's dtype-level typing fights mixed int/bool arithmetic; these names document intent
IntArray = npt.NDArray[Any]
BoolArray = npt.NDArray[Any]
ByteArray = npt.NDArray[Any]


def parse(
    data: bytes | memoryview, first_line: int, max_line_bytes: int = 1 << 20, reject_bytes: int = 4096
) -> FormatResult:
    """Parse a chunk of complete ``\\n``-terminated lines; ``first_line`` is the number of its first line.

    ``data`` may be a memoryview (a shared-memory block): it is read in place, never copied whole.
    Every line ends up either as a row of the returned batch or in its rejects, with its reason.
    Lines longer than ``max_line_bytes`` are rejected; rejects keep at most ``reject_bytes`` of a line.
    """
    if not data:
        return FormatResult(_empty_batch(), [], RejectRows())
    a = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(a == 10)
    if len(newlines) == 0 or newlines[-1] != len(a) - 1:
        raise ValueError("chunk must consist of complete lines ending in \\n")
    starts = np.empty_like(newlines)
    starts[0] = 0
    starts[1:] = newlines[:-1] + 1
    # CRLF line ends: the \r is not part of the line
    crlf = (newlines > starts) & (a[newlines - 1] == 13)
    ends = newlines - crlf
    n = len(starts)

    request_dash = np.zeros(n, dtype=bool)
    rejects = RejectRows()

    length = ends - starts
    too_long = length > max_line_bytes
    fast = _fast_candidates(a, starts, newlines, crlf) & ~too_long
    idx, spans = _fast_spans(a, starts, ends, fast)  # the lines it took, their (field, start/end, line) spans
    slow_lines, slow_spans = [], []
    for i in np.flatnonzero(~fast & (length > 0) & ~too_long):
        line_spans = _slow_line(
            data, int(starts[i]), int(ends[i]), int(i), request_dash, rejects, first_line, reject_bytes
        )
        if line_spans is not None:
            slow_lines.append(int(i))
            slow_spans.append(line_spans)
    if slow_lines:  # rare: merge the odd lines the regex took into line order
        idx = np.concatenate([idx, np.array(slow_lines, dtype=idx.dtype)])
        spans = np.concatenate([spans, np.stack(slow_spans, axis=2)], axis=2)
        by_line = np.argsort(idx, kind="stable")
        idx, spans = idx[by_line], spans[:, :, by_line]
    for i in np.flatnonzero(length == 0):
        rejects.add(first_line + int(i), Reason.EMPTY, b"", reject_bytes)
    for i in np.flatnonzero(too_long):
        rejects.add(first_line + int(i), Reason.TOO_LONG, bytes(data[starts[i] : ends[i]]), reject_bytes)

    # value checks on every matched line, whichever path found its fields
    ts_us, days, ts_ok = _parse_timestamps(a, spans[TIME, 0], spans[TIME, 1])
    nbytes, bytes_null, num_ok = _parse_bytes_field(data, a, spans[BYTES, 0], spans[BYTES, 1])
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
        # as (field x start/end, line) rows: compressing the last axis of the 3-D array is 1.7x slower
        idx, spans = idx[keep], spans.reshape(2 * NFIELDS, -1).compress(keep, axis=1).reshape(NFIELDS, 2, -1)
        ts_us, days, nbytes, bytes_null = ts_us[keep], days[keep], nbytes[keep], bytes_null[keep]
    _sort_rejects(rejects)

    # rows grouped by UTC date (stable, so lines keep their order within a date)
    order = np.argsort(days, kind="stable") if len(days) and np.any(np.diff(days) < 0) else None
    batch = _build_batch(a, data, spans, idx, request_dash, ts_us, nbytes, bytes_null, order)
    sorted_days = days if order is None else days[order]
    return FormatResult(batch, _partitions(sorted_days), rejects)


def _windows(a: ByteArray, lo: IntArray, width: int) -> ByteArray:
    """The ``width`` bytes starting at each ``lo``, as a (len(lo), width) array.

    One fancy index over a sliding-window view (rows, not a 2-D index matrix); starts too close to the
    end are clipped, so callers must validate what they read (they do: every byte is checked).
    """
    if len(a) < width:
        a = np.concatenate([a, np.zeros(width - len(a), dtype=a.dtype)])
    view = np.lib.stride_tricks.sliding_window_view(a, width)
    rows: ByteArray = view[np.clip(lo, 0, len(a) - width)]
    return rows


def _fast_candidates(a: ByteArray, starts: IntArray, newlines: IntArray, crlf: BoolArray) -> BoolArray:
    """Lines made only of printable ASCII without backslashes: the only ones the fast path may take.
    ``newlines``: the position of every line's \\n; ``crlf``: lines whose \\n follows a \\r."""
    special = (a - np.uint8(32)) > 94  # < 32 wraps around: one compare for both ends
    special |= a == 92
    special[newlines] = False
    special[newlines[crlf] - 1] = False  # the \r of a CRLF line end
    bad_lines = np.searchsorted(starts, np.flatnonzero(special), side="right") - 1
    ok = newlines - crlf > starts
    ok[bad_lines] = False
    return ok


def _fast_spans(a: ByteArray, starts: IntArray, ends: IntArray, cand: BoolArray) -> tuple[IntArray, IntArray]:
    """Find field spans of candidate lines from space and quote positions; clear ``cand`` where the
    line does not have the exact fixed layout (those lines go to the slow path).

    Returns the lines taken and their spans, (field, start/end, line) in the order of the lines."""
    ci = np.flatnonzero(cand)
    if len(ci) == 0:
        return ci, np.zeros((NFIELDS, 2, 0), dtype=np.int64)
    s, e = starts[ci], ends[ci]
    pad = np.full(8, len(a) + 64, dtype=np.int64)  # sentinels past the end: lookups never overrun
    sp = np.concatenate([np.flatnonzero(a == 32), pad])
    qt = np.concatenate([np.flatnonzero(a == 34), pad])
    ok = np.ones(len(ci), dtype=bool)

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
    # (a ']' inside the fixed-width time is left to the timestamp check, see _time_reject_reason)
    # The spaces after the user's follow in a fixed order: the one inside the time, the one before
    # the request, then the request's two, which must split it into three non-empty words, and the
    # one after it (this replaces a second search through all spaces of the chunk).
    ok &= (nth(sp, i_sp + 3) == s3 + 2 + TS_SPACE) & (nth(sp, i_sp + 4) == q1 - 1)
    m_end, p_start = nth(sp, i_sp + 5), nth(sp, i_sp + 6)
    ok &= (m_end > q1 + 1) & (p_start > m_end + 1) & (q2 > p_start + 1) & (nth(sp, i_sp + 7) == q2 + 1)
    # ' ddd bytes "' between request and referrer (status and bytes are checked to be digits below,
    # so there are no other spaces in between)
    ok &= (at(q2 + 1) == 32) & (at(q2 + 5) == 32) & (at(q3 - 1) == 32) & (q3 - 1 > q2 + 6)
    ok &= (at(q4 + 1) == 32) & (q5 == q4 + 2)
    # status: three digits; bytes: digits (at most MAX_DIGITS + 1: longer goes the slow way) or "-".
    # Checked by Arrow over the lines still in the running, whose spans are in order through the chunk.
    b_s, b_e = q2 + 6, q3 - 1
    dash = _is_dash(a, b_s, b_e)
    k = np.flatnonzero(ok)
    status_ok = _all_digits(a, (q2 + 2)[k], (q2 + 5)[k])
    bytes_ok = _all_digits(a, b_s[k], b_e[k]) & (b_e - b_s <= MAX_DIGITS + 1)[k]
    ok[k] = status_ok & (bytes_ok | dash[k])

    taken = np.flatnonzero(ok)  # found once; np.compress would find them again for each span row
    good = ci[taken]
    cand[ci[~ok]] = False
    cols = (
        (s, s1),
        (s1 + 1, s2),
        (s2 + 1, s3),
        (s3 + 2, s3 + 2 + TS_WIDTH),
        (q1 + 1, m_end),
        (m_end + 1, p_start),
        (p_start + 1, q2),
        (q2 + 2, q2 + 5),
        (b_s, b_e),
        (q3 + 1, q4),
        (q5 + 1, q6),
    )
    spans = np.empty((NFIELDS, 2, len(good)), dtype=np.int64)
    for f, (lo, hi) in enumerate(cols):  # straight into place: no stacked copy to compress again
        lo.take(taken, out=spans[f, 0])
        hi.take(taken, out=spans[f, 1])
    return good, spans


def _slow_line(
    data: bytes | memoryview,
    start: int,
    end: int,
    i: int,
    request_dash: BoolArray,
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
        request_dash[i] = True
    spans = np.empty((NFIELDS, 2), dtype=np.int64)
    for f, g in enumerate(_GROUPS):
        lo, hi = m.span(g)
        if lo < 0:  # the request "-": method/target/protocol are null; an empty span in field order
            lo = hi = m.end(TIME + 1)
        spans[f] = (start + lo, start + hi)
    return spans


def _parse_timestamps(a: ByteArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
    """Parse ``dd/Mon/yyyy:HH:MM:SS +zzzz`` at ``a[lo:hi]`` for every line at once.

    Returns microseconds since the epoch (UTC, offset applied), the UTC day number and a validity mask.
    Impossible dates (31 Apr, 29 Feb outside leap years), hours > 23, offsets beyond +-23:59 are invalid.
    """
    ok = (hi - lo) == TS_WIDTH
    t = _windows(a, lo, TS_WIDTH)  # (lines, 26) uint8
    digits = t[:, _TS_DIGITS] - 48  # uint8: anything but '0'..'9' wraps to > 9
    ok &= (digits <= 9).all(axis=1) & (t[:, _TS_SEP_POS] == _TS_SEP_VAL).all(axis=1)
    ok &= (t[:, 21] == 43) | (t[:, 21] == 45)
    # Plain integer arithmetic on rows of digits. (Not a BLAS matrix product: OpenBLAS starts
    # threads that spin on idle cores, and the cores belong to the other workers.)
    d = digits.T.astype(np.int64)  # (16, lines), each row contiguous
    day, year = d[0] * 10 + d[1], d[2] * 1000 + d[3] * 100 + d[4] * 10 + d[5]
    hour, minute, sec = d[6] * 10 + d[7], d[8] * 10 + d[9], d[10] * 10 + d[11]
    off_h, off_m = d[12] * 10 + d[13], d[14] * 10 + d[15]
    low = t[:, 3:6].astype(np.int64) | 0x20  # month names compare case-blind
    key = (low[:, 0] << 16) | (low[:, 1] << 8) | low[:, 2]
    k = np.minimum(np.searchsorted(_MONTH_SORTED, key), 11)
    ok &= _MONTH_SORTED[k] == key
    month = _MONTH_ORDER[k] + 1
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = _DAYS_IN_MONTH[month - 1] + ((month == 2) & leap)
    ok &= (year >= 1) & (day >= 1) & (day <= dim) & (hour <= 23) & (minute <= 59) & (sec <= 59)
    ok &= (off_h <= 23) & (off_m <= 59)
    # days from civil date (H. Hinnant's algorithm), vectorised
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    local_days = era * 146097 + doe - 719468
    offset = (off_h * 3600 + off_m * 60) * np.where(t[:, 21] == 45, -1, 1)
    secs = local_days * 86400 + hour * 3600 + minute * 60 + sec - offset
    days = np.floor_divide(secs, 86400)
    ok &= (days >= _MIN_DAY) & (days <= _MAX_DAY)  # the UTC date must be a real calendar date too
    secs = np.where(ok, secs, 0)
    return secs * 1_000_000, np.where(ok, days, 0), ok


def _parse_bytes_field(
    data: bytes | memoryview, a: ByteArray, lo: IntArray, hi: IntArray
) -> tuple[IntArray, BoolArray, BoolArray]:
    """The response size: value, null mask ("-") and a mask of values that fit int64.

    Digits are known to be digits here (both paths checked that); only the value is computed.
    """
    length = hi - lo
    null = _is_dash(a, lo, hi)
    value = np.zeros(len(lo), dtype=np.int64)
    ok = np.ones(len(lo), dtype=bool)
    short = ~null & (length <= MAX_DIGITS)
    if short.any():
        value[short] = _cast_spans(data, lo, hi, short, np.int64)[short]
    for j in np.flatnonzero(~null & (length > MAX_DIGITS)):
        v = int(bytes(data[lo[j] : hi[j]]))
        if v <= np.iinfo(np.int64).max:
            value[j] = v
        else:
            ok[j] = False
    return value, null, ok


def _string_columns(
    buf: pa.Buffer, lo: IntArray, hi: IntArray, take: IntArray, valid: list[BoolArray | None]
) -> list[pa.Array]:
    """Cut string columns out of the chunk buffer with one ``take``, no Python object per value.

    ``lo``/``hi`` are (fields, lines) byte spans. Fields follow each other within a line and lines
    follow each other, so the spans of every field of every line, in that order, are in order through
    the chunk (see _span_strings). One ``take`` gathers the spans field by field (each field's rows in
    the order ``take``) into one contiguous array, which the columns then share. (One take instead
    of one per column: half the time, measured.)
    ``valid``: each field's validity in the original row order, or None (no nulls).
    """
    k, n = lo.shape
    if n == 0:
        return [pa.nulls(0, pa.string()) for _ in range(k)]
    inter = _span_strings(buf, lo.T.ravel(), hi.T.ravel(), None)  # line by line, field by field
    gathered = inter.take(int64_array((2 * (take[None, :] * k + np.arange(k)[:, None])).ravel()))
    _, all_offsets, data = gathered.buffers()
    columns = []
    for f in range(k):
        v = valid[f]
        bitmap = None if v is None or v.all() else pa.py_buffer(np.packbits(v[take], bitorder="little"))
        # offsets that do not start at 0 are valid Arrow: each column is a window on the shared data
        window = all_offsets.slice(f * n * 4, (n + 1) * 4)
        columns.append(pa.StringArray.from_buffers(n, window, data, bitmap))
    return columns


def _build_batch(
    a: ByteArray,
    data: bytes | memoryview,
    sp: IntArray,
    idx: IntArray,
    request_dash: BoolArray,
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
    dash_lines = request_dash[idx]

    def span(f: int) -> tuple[IntArray, IntArray]:
        return sp[f, 0], sp[f, 1]

    # path / query: the target split at its first '?'; the query is null when there is no '?'
    t_lo, t_hi = span(TARGET)
    first_q = _find(a, t_lo, t_hi, "?")
    has_q = (first_q >= 0) & ~dash_lines
    path_hi = np.where(has_q, first_q, t_hi)
    query_lo = np.where(has_q, first_q + 1, t_hi)
    request_valid = ~dash_lines if dash_lines.any() else None

    def ordered(x: IntArray) -> IntArray:
        return x if order is None else x[order]

    # in the order of the fields within a line (see _string_columns)
    ip, user, method, path, query, protocol, referrer, user_agent = _string_columns(
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
            ~_is_dash(a, *span(USER)),
            request_valid,
            request_valid,
            has_q,
            request_valid,
            ~_is_dash(a, *span(REFERRER)),
            None,
        ],
    )
    status = ordered(_cast_spans(data, sp[STATUS, 0], sp[STATUS, 1], None, np.int16))
    bytes_valid = ordered(~bytes_null)
    columns = [
        ip,
        user,
        pa.Array.from_buffers(SCHEMA.field("ts").type, m, [None, pa.py_buffer(ordered(ts_us))]),
        method,
        path,
        query,
        protocol,
        pa.Array.from_buffers(pa.int16(), m, [None, pa.py_buffer(status)]),
        pa.Array.from_buffers(
            pa.int64(),
            m,
            [
                None if bytes_valid.all() else pa.py_buffer(np.packbits(bytes_valid, bitorder="little")),
                pa.py_buffer(ordered(nbytes)),
            ],
        ),
        referrer,
        user_agent,
        _is_bot(user_agent),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def _is_bot(user_agent: pa.Array) -> pa.Array:
    """The bot pattern matched once per distinct agent: a chunk has a few dozen distinct agents among
    thousands of lines, so hashing then matching is ~5x cheaper than matching every line."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    encoded = pc.dictionary_encode(user_agent)
    matches = pc.match_substring_regex(encoded.dictionary, BOT_PATTERN, ignore_case=True)
    return matches.take(encoded.indices)


def _empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in SCHEMA], schema=SCHEMA)


def _span_strings(
    data: bytes | memoryview | ByteArray | pa.Buffer, lo: IntArray, hi: IntArray, valid: BoolArray | None
) -> pa.Array:
    """The spans ``data[lo:hi]`` as the even elements of one string array over the chunk, no copy.

    Spans must be in order through the chunk (``lo0 <= hi0 <= lo1 ...``), like the spans of one field
    over successive lines: then ``lo0, hi0, lo1, hi1, ...`` is a valid offsets buffer. The odd elements
    (the bytes between spans) are null, and so are the spans not ``valid``, so kernels skip them."""
    n = len(lo)
    offsets = np.empty(2 * n, dtype=np.int32)
    offsets[0::2] = lo
    offsets[1::2] = hi
    bits = np.zeros(2 * n - 1, dtype=bool)
    bits[0::2] = True if valid is None else valid
    bitmap = pa.py_buffer(np.packbits(bits, bitorder="little"))
    return pa.StringArray.from_buffers(2 * n - 1, pa.py_buffer(offsets), pa.py_buffer(data), bitmap)


def _find(a: ByteArray, lo: IntArray, hi: IntArray, char: str) -> IntArray:
    """The position of the first ``char`` in each span (in order through the chunk), -1 if none."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    if len(lo) == 0:
        return np.zeros(0, dtype=np.int64)
    found = pc.find_substring(_span_strings(a, lo, hi, None), char)
    rel = np.frombuffer(found.buffers()[1], dtype=np.int32, count=2 * len(lo) - 1)[0::2]
    return np.where(rel >= 0, lo + rel, -1)


def _is_dash(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """Whether each span is exactly "-" (the log's empty value). Positions past the end are clipped,
    so spans from unchecked candidates are safe to test."""
    dash: BoolArray = ((hi - lo) == 1) & (a.take(lo, mode="clip") == 45)
    return dash


def _all_digits(a: ByteArray, lo: IntArray, hi: IntArray) -> BoolArray:
    """Whether each span (in order through the chunk, see _span_strings) is one or more ASCII digits."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    if len(lo) == 0:
        return np.zeros(0, dtype=bool)
    digits = pc.ascii_is_decimal(_span_strings(a, lo, hi, None))
    # the values bitmap, unpacked by hand: to_numpy() on an array with nulls would import pandas
    bits = np.unpackbits(
        np.frombuffer(digits.buffers()[1], dtype=np.uint8), count=2 * len(lo) - 1, bitorder="little"
    )
    ok: BoolArray = bits[0::2].astype(bool)
    return ok


def _cast_spans(
    data: bytes | memoryview,
    lo: IntArray,
    hi: IntArray,
    valid: BoolArray | None,
    dtype: type[np.integer[Any]],
) -> IntArray:
    """The numbers written at ``data[lo:hi]`` (digits only, already checked; ``valid``: which to parse,
    None for all), parsed by Arrow's string cast in C++: 4x faster than numpy digit arithmetic.
    Spans must be in order through the chunk (see _span_strings). Where not valid, the result is
    undefined."""
    import pyarrow.compute as pc  # lazily: see the imports at the top

    n = len(lo)
    if n == 0:
        return np.zeros(0, dtype=dtype)
    parsed = pc.cast(_span_strings(data, lo, hi, valid), pa.from_numpy_dtype(dtype))
    values: IntArray = np.frombuffer(parsed.buffers()[1], dtype=dtype, count=2 * n - 1)
    return np.ascontiguousarray(values[0::2])


def _partitions(days: IntArray) -> list[tuple[str, int, int]]:
    """(date, offset, length) of each run of equal days in ``days`` (already sorted)."""
    if len(days) == 0:
        return []
    cut = np.flatnonzero(np.diff(days)) + 1
    bounds = np.concatenate([[0], cut, [len(days)]])
    return [
        ((_EPOCH + timedelta(days=int(days[b]))).isoformat(), int(b), int(e - b))
        for b, e in itertools.pairwise(bounds)
    ]


def _sort_rejects(rejects: RejectRows) -> None:
    """Put rejects in line order (they are found by several passes)."""
    if len(rejects) < 2:
        return
    order = sorted(range(len(rejects)), key=rejects.lines.__getitem__)
    rejects.lines = [rejects.lines[i] for i in order]
    rejects.reasons = [rejects.reasons[i] for i in order]
    rejects.raw = [rejects.raw[i] for i in order]
    rejects.raw_len = [rejects.raw_len[i] for i in order]
