"""W3C extended log files, whose columns a ``#Fields:`` directive names: IIS's W3C logs (``w3c``) and AWS
CloudFront's standard logs (``cloudfront``).

A W3C file starts with directives (``#Software:``, ``#Version:``, ``#Date:``, ``#Fields:``) and may
write them again further down: IIS starts a new block after a restart or a change of its logging
settings, possibly with other fields. Directive lines are neither rows nor rejects: they are counted as
skipped (:attr:`pipeline.formats.base.Rows.skipped`). The fields in effect are part of the format's key
(``("w3c", "date time c-ip ...")``): the plan hands each chunk the key of the header in effect at its
start (:meth:`W3cFormat.carry`), and a header inside a chunk changes the fields of the lines after it
within the scan. Lines before any header are read with the dialect's default fields.

The output columns are fixed per dialect (they go into Parquet): every field its documentation lists,
whether a header names it or not (a field no header names is null). A field the dialect does not know
(an IIS custom field other than ``X-Forwarded-For``, a field CloudFront adds later) is left out of the
output; the line is still read.
A line with more or fewer values than its header names is rejected (``no match``).

Lines are split for a whole chunk at once: each line's count of separators against its header's, then
each field's spans typed as the other formats type theirs, with the engine's compiled loops where this
process has them (:mod:`pipeline.formats.w3c_values`); values are decoded where the server encodes them
(:class:`Dialect`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import from_buffers, int64_array
from pipeline.formats.base import Family, Format, FormatKey, Reason, RejectRows, Rows, empty_batch
from pipeline.formats.spec import TS_TYPE, FormatSpecError
from pipeline.formats.vector import (
    MAX_EPOCH_US,
    IntArray,
    epoch_times,
    is_bot,
    reject_lines,
    span_strings,
    windows,
)
from pipeline.formats.w3c_values import (
    SeparatedLines,
    date_time,
    decimals,
    decode,
    integers,
    nulls,
    strings,
)

FIELDS = b"#Fields:"

# What a field's values are: its column's Arrow type and how the value is read
_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "as_logged": pa.string(),  # "-" kept, as every format keeps the address and the user agent
    "int": pa.int64(),
    "status": pa.int16(),
    "ms": pa.float64(),  # milliseconds, as seconds
    "seconds": pa.float64(),
}


@dataclass(frozen=True)
class Column:
    """A W3C field's output column, how its value is read, and how the server encodes it (``plus``: a
    space written as ``+``; ``percent``: URL-encoded; ``percent2``: URL-encoded, sometimes twice)."""

    name: str
    kind: str = "string"
    decode: str = ""


def _own(*fields: str, kind: str = "string") -> dict[str, Column]:
    """Fields that keep their W3C names as columns: lower case, ``-``, ``(`` and ``)`` as ``_``."""
    return {f: Column(column_name(f), kind) for f in fields}


def column_name(field: str) -> str:
    """The column of a W3C field that keeps its name: ``cs(Host)`` is ``cs_host``."""
    name = field.lower().translate(str.maketrans("-()", "___")).strip("_")
    return name.replace("__", "_")


@dataclass(frozen=True)
class Dialect:
    """A server's W3C log: its separator, its fields (every one it documents, in its order) and what
    it assumes before any ``#Fields:`` directive."""

    name: str
    title: str
    url: str
    sep: bytes
    columns: Mapping[str, Column]  # W3C field -> its column, in the documentation's order
    default: tuple[str, ...]  # the fields of lines before any header
    note: str


_DATE_TIME = {"date": Column("ts", "date"), "time": Column("ts", "time")}
_IP = Column("ip", "as_logged")
_METHOD, _STEM, _QUERY = Column("method"), Column("path"), Column("query")
_STATUS = Column("status", "status")
_SC_BYTES, _CS_BYTES = Column("bytes_sent", "int"), Column("request_length", "int")

IIS = Dialect(
    "w3c",
    "IIS W3C extended log",
    "https://learn.microsoft.com/en-us/windows/win32/http/w3c-logging",
    b" ",
    {  # in the order of IIS's field list
        **_DATE_TIME,
        **_own("s-sitename", "s-computername", "s-ip"),
        "cs-method": _METHOD,
        "cs-uri-stem": _STEM,
        "cs-uri-query": _QUERY,
        "s-port": Column("server_port", "int"),
        "cs-username": Column("user"),
        "c-ip": _IP,
        "cs-version": Column("protocol"),
        "cs(User-Agent)": Column("user_agent", "as_logged", "plus"),
        "cs(Cookie)": Column("http_cookie"),
        "cs(Referer)": Column("referrer"),
        "cs-host": Column("host"),
        "sc-status": _STATUS,
        "sc-substatus": Column("sc_substatus", "int"),
        "sc-win32-status": Column("sc_win32_status", "int"),
        "sc-bytes": _SC_BYTES,
        "cs-bytes": _CS_BYTES,
        "time-taken": Column("request_time", "ms"),
        # a custom field (IIS 8.5's enhanced logging), under the name most give it: the client's address
        # behind a load balancer or a CDN, where c-ip is the balancer's; IIS writes ", " as ",+"
        "X-Forwarded-For": Column("http_x_forwarded_for", decode="plus"),
    },
    (  # IIS's default selection of fields
        *("date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username"),
        *("c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status"),
        "time-taken",
    ),
    "space-separated; times in UTC; `time-taken` (milliseconds) is `request_time` in seconds; IIS "
    "writes a space in a value as `+`: the user agent and `X-Forwarded-For` are decoded (`+` is a "
    "space), the other values are kept as logged (a `+` in a URL, a query or a cookie is the value's "
    "own); the custom field `X-Forwarded-For` (the client behind a load balancer) is "
    "`http_x_forwarded_for`, as nginx's",
)

# in the order of CloudFront's field list, which is its lines' order (and its default fields)
_CLOUDFRONT: dict[str, Column] = {
    **_DATE_TIME,
    "x-edge-location": Column("x_edge_location"),
    "sc-bytes": _SC_BYTES,
    "c-ip": _IP,
    "cs-method": _METHOD,
    "cs(Host)": Column("cs_host"),
    "cs-uri-stem": _STEM,
    "sc-status": _STATUS,
    "cs(Referer)": Column("referrer", decode="percent"),
    "cs(User-Agent)": Column("user_agent", "as_logged", "percent2"),
    "cs-uri-query": _QUERY,
    "cs(Cookie)": Column("http_cookie", decode="percent"),
    "x-edge-result-type": Column("x_edge_result_type"),
    "x-edge-request-id": Column("request_id"),
    "x-host-header": Column("host"),
    "cs-protocol": Column("scheme"),
    "cs-bytes": _CS_BYTES,
    "time-taken": Column("request_time", "seconds"),
    "x-forwarded-for": Column("http_x_forwarded_for"),
    "ssl-protocol": Column("ssl_protocol"),
    "ssl-cipher": Column("ssl_cipher"),
    "x-edge-response-result-type": Column("x_edge_response_result_type"),
    "cs-protocol-version": Column("protocol"),
    "fle-status": Column("fle_status"),
    "fle-encrypted-fields": Column("fle_encrypted_fields", "int"),
    "c-port": Column("client_port", "int"),
    "time-to-first-byte": Column("time_to_first_byte", "seconds"),
    "x-edge-detailed-result-type": Column("x_edge_detailed_result_type"),
    "sc-content-type": Column("sc_content_type"),
    "sc-content-len": Column("sc_content_len", "int"),
    "sc-range-start": Column("sc_range_start", "int"),
    "sc-range-end": Column("sc_range_end", "int"),
    # standard logging (v2) adds these to the legacy fields above (the default ones), and takes a
    # selection of them all, in any order: a file's #Fields: header says which
    "origin-fbl": Column("origin_fbl", "seconds"),
    "origin-lbl": Column("origin_lbl", "seconds"),
    "asn": Column("asn", "int"),
    "c-country": Column("c_country"),
    "cache-behavior-path-pattern": Column("cache_behavior_path_pattern"),
    # the time as epoch seconds (with milliseconds) or milliseconds: `ts` where the header has no date
    # and time
    "timestamp": Column("ts", "epoch"),
    "timestamp(ms)": Column("ts", "epoch_ms"),
}
_LEGACY_FIELDS = tuple(_CLOUDFRONT)[: tuple(_CLOUDFRONT).index("sc-range-end") + 1]

CLOUDFRONT = Dialect(
    "cloudfront",
    "AWS CloudFront standard log",
    "https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logs-reference.html",
    b"\t",
    _CLOUDFRONT,
    _LEGACY_FIELDS,
    "tab-separated; times in UTC; `time-taken`, `time-to-first-byte` and v2's `origin-fbl` and "
    "`origin-lbl` are in seconds; the referrer "
    "and the cookie are URL-decoded, the user agent too (twice: CloudFront encodes some agents twice); "
    "the path and the query are kept as logged (URL-encoded, as on a request line); `cs(Host)` (the "
    "distribution's domain) is `cs_host`, `x-host-header` (the viewer's Host header) is `host`",
)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (IIS, CLOUDFRONT)}
_CLOUDFRONT_ONLY = frozenset(CLOUDFRONT.columns) - frozenset(IIS.columns)  # x-edge-location, asn, ...
ALIASES = {"iis": "w3c"}
_IIS_SOFTWARE = b"#Software: Microsoft Internet Information Services"


def header_fields(line: bytes) -> str:
    """The field list of a ``#Fields:`` line, as the key's text (names separated by one space)."""
    return " ".join(line[len(FIELDS) :].decode("latin-1").split())


@dataclass(frozen=True)
class W3cPlan:
    """A dialect and the fields in effect (a header's, or the dialect's default)."""

    dialect: Dialect
    fields: tuple[str, ...]

    def schema(self) -> pa.Schema:
        return schema(self.dialect)


def schema(dialect: Dialect) -> pa.Schema:
    """The dialect's output columns, whatever fields a header names."""
    out: dict[str, pa.DataType] = {}
    for column in dialect.columns.values():
        out[column.name] = TS_TYPE if column.name == "ts" else _TYPES[column.kind]
        if column.name == "user_agent":
            out["is_bot"] = pa.bool_()
    return pa.schema(list(out.items()))


class W3cFormat(Format):
    """A W3C log read with the fields of :attr:`plan` until a ``#Fields:`` line says otherwise."""

    headed = True

    def __init__(self, key: FormatKey, plan: W3cPlan):
        self.key = key
        self.plan = plan

    @cached_property
    def schema(self) -> pa.Schema:
        return self.plan.schema()

    def carry(self, data: bytes | memoryview) -> FormatKey | None:
        line = last_header(data)
        return None if line is None else (self.plan.dialect.name, header_fields(line))

    def stands_alone(self, data: bytes | memoryview) -> bool:
        """A ``#Fields:`` line comes before any line that is not a directive: every line reads with
        the chunk's own fields, whatever an earlier header said (a CloudFront or IIS file from its start)."""
        return _fields_first(data if isinstance(data, bytes) else bytes(data))

    def scan(self, data: bytes | memoryview, first_line: int, max_line_bytes: int, reject_bytes: int) -> Rows:
        return scan(self.plan, self.schema, data, first_line, max_line_bytes, reject_bytes)


def _fields_first(text: bytes) -> bool:
    """Whether ``text`` (complete lines) has a ``#Fields:`` line before its first line that is not a
    directive (a blank line counts as one: it is no directive)."""
    at = 0
    while at < len(text):
        if text.startswith(FIELDS, at):
            return True
        if text[at] != 35:  # "#"
            return False
        end = text.find(b"\n", at)
        if end < 0:
            return False
        at = end + 1
    return False


def last_header(data: bytes | memoryview) -> bytes | None:
    """The last ``#Fields:`` line of a chunk of complete lines (without its line end), or None."""
    text = data if isinstance(data, bytes) else bytes(data)
    at = text.rfind(FIELDS)
    while at > 0 and text[at - 1] != 10:  # not at a line's start: a value holding the text
        at = text.rfind(FIELDS, 0, at)
    if at < 0:
        return None
    end = text.find(b"\n", at)
    return text[at : len(text) if end < 0 else end].rstrip(b"\r")


class W3c(Family):
    """``w3c`` (``iis``) and ``cloudfront``; a header's key is ``(dialect, "field field ...")``, which a
    config may give too (``{w3c = "date time c-ip ..."}``: the fields of lines before any header)."""

    names = tuple(DIALECTS)
    tables = tuple(DIALECTS)
    aliases = ALIASES

    def key(self, setting: str | Mapping[str, Any]) -> FormatKey:
        if isinstance(setting, str):
            name = ALIASES.get(setting, setting)
            if name not in DIALECTS:
                raise FormatSpecError(repr(setting), f"not one of the W3C formats {', '.join(DIALECTS)}")
            return name
        if len(setting) != 1:
            raise FormatSpecError(str(dict(setting)), "give one W3C format and its fields, nothing else")
        ((name, fields),) = setting.items()
        if not isinstance(fields, str) or not fields.split():
            raise FormatSpecError(name, "give the fields as a #Fields: directive lists them")
        return (name, " ".join(fields.removeprefix("#Fields:").split()))

    def load(self, key: FormatKey) -> Format:
        name, fields = (key, None) if isinstance(key, str) else key
        dialect = DIALECTS[name]
        return W3cFormat(key, W3cPlan(dialect, dialect.default if fields is None else tuple(fields.split())))

    def guess(self, lines: Sequence[bytes]) -> tuple[FormatKey, int] | None:
        """By the directives: an IIS ``#Software:`` line, or a ``#Fields:`` header (CloudFront's: a
        field only CloudFront writes, or tabs in the header or between values: a v2 distribution
        chooses its fields); how many lines it reads or skips (a file of directives alone is still
        that format). Lines without directives are left to the built-in names."""
        directives = [line for line in lines if line.startswith(b"#")]
        if not directives:
            return None
        fields = [line for line in directives if line.startswith(FIELDS)]
        iis = any(line.startswith(_IIS_SOFTWARE) for line in directives)
        named = {name.decode("latin-1") for line in fields for name in line[len(FIELDS) :].split()}
        cloudfront = bool(named & _CLOUDFRONT_ONLY) or (
            bool(fields)
            and any(b"\t" in line for line in lines if not line.startswith(b"#") or line in fields)
        )
        name = "w3c" if iis else "cloudfront" if cloudfront else "w3c" if fields else None
        if name is None:
            return None
        data = b"".join(line.rstrip(b"\r\n") + b"\n" for line in lines)
        fmt = self.load(name)
        result = fmt.parse(data, 1)
        read = result.batch.num_rows + result.skipped
        return (name, read) if read else None


_NUMPY = {pa.int64(): np.int64, pa.int16(): np.int16, pa.float64(): np.float64, TS_TYPE: np.int64}
_EPOCHS = ("epoch_ms", "epoch")  # in the order ts takes them
_REASONS = (None, Reason.NO_MATCH, Reason.BAD_TIMESTAMP, Reason.OUT_OF_RANGE, Reason.MISSING_TIME)
_CODE = {r: i for i, r in enumerate(_REASONS)}


def scan(
    plan: W3cPlan,
    out: pa.Schema,
    data: bytes | memoryview,
    first_line: int,
    max_line_bytes: int,
    reject_bytes: int,
) -> Rows:
    """The rows, rejects and skipped directive lines of a chunk; each ``#Fields:`` line gives the
    fields of the lines after it."""
    a = np.frombuffer(data, dtype=np.uint8)
    split = SeparatedLines(a, plan.dialect.sep[0])
    starts, ends = split.starts, split.ends
    rejects = RejectRows()
    header = (ends > starts) & (a.take(starts, mode="clip") == 35)
    body = _body(a, data, split, header, max_line_bytes, rejects, first_line, reject_bytes)
    parts = []
    group, lists = _groups(a, starts, ends, header, plan.fields)
    for g, fields in enumerate(lists):
        lines = np.flatnonzero(body & (group == g))
        match, lo, hi = split.split(lines, len(fields))
        reject_lines(rejects, lines[~match], Reason.NO_MATCH, data, starts, ends, first_line, reject_bytes)
        good = lines[match]
        if len(good):
            part = _Segment(plan.dialect, out, fields, a, data, good, lo, hi)
            part.reject(rejects, first_line, starts, ends, reject_bytes)
            parts.append(part)
    return _rows(parts, out, rejects, int(header.sum()))


def _body(
    a: Any,
    data: bytes | memoryview,
    split: SeparatedLines,
    header: Any,
    max_line_bytes: int,
    rejects: RejectRows,
    first_line: int,
    reject_bytes: int,
) -> Any:
    """The lines that may be rows: not directives; the blank, too long, NUL-holding and not UTF-8
    ones are rejected with their reason."""
    starts, ends = split.starts, split.ends
    length = ends - starts
    blank = length == 0
    rejects.add_blank(first_line + np.flatnonzero(blank), Reason.EMPTY)
    body = ~header & ~blank
    too_long = np.flatnonzero(body & (length > max_line_bytes))
    bad: dict[int, Reason] = {int(i): Reason.TOO_LONG for i in too_long}
    body[list(bad)] = False
    nul = split.nul
    bad |= {int(i): Reason.NUL_BYTE for i in nul[body[nul]]}
    body[nul] = False
    wide = split.wide[body[split.wide]]
    if len(wide) and not _utf8(a, starts[wide], ends[wide]):  # one check for all; then line by line
        for i in wide:
            try:
                bytes(data[starts[i] : ends[i]]).decode()
            except UnicodeDecodeError:
                bad[int(i)] = Reason.INVALID_UTF8
                body[i] = False
    for i, reason in sorted(bad.items()):
        rejects.add(first_line + i, reason, bytes(data[starts[i] : ends[i]]), reject_bytes)
    return body


def _utf8(a: Any, lo: IntArray, hi: IntArray) -> bool:
    """Whether every span is UTF-8 (Arrow's check, in C++); the bytes between them are line ends."""
    try:
        span_strings(a, lo, hi, None).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _groups(
    a: Any, starts: IntArray, ends: IntArray, header: Any, fields: tuple[str, ...]
) -> tuple[IntArray, list[tuple[str, ...]]]:
    """Each line's fields, as an index into the list of distinct field lists returned: those of the last
    ``#Fields:`` line before it, else ``fields``. Lines of several blocks with the same fields (a server
    restarted with the same settings) are read together."""
    at = np.flatnonzero(header)
    prefix = windows(a, starts[at], len(FIELDS)) == np.frombuffer(FIELDS, dtype=np.uint8)
    named = at[prefix.all(axis=1) & (ends[at] - starts[at] >= len(FIELDS))]
    lists = [fields] + [tuple(header_fields(a[starts[i] : ends[i]].tobytes()).split()) for i in named]
    distinct = list(dict.fromkeys(lists))
    index = {names: k for k, names in enumerate(distinct)}
    of_block = np.array([index[names] for names in lists], dtype=np.int64)
    # a line's block: how many #Fields: lines come before it
    return of_block[np.searchsorted(named, np.arange(len(starts)), side="left")], distinct


class _Segment:
    """The lines of a chunk that one field list describes and that split into its fields, typed."""

    def __init__(
        self,
        dialect: Dialect,
        out: pa.Schema,
        fields: tuple[str, ...],
        a: Any,
        data: bytes | memoryview,
        lines: IntArray,
        lo: IntArray,
        hi: IntArray,
    ):
        self.dialect, self.out, self.a, self.data, self.lines = dialect, out, a, data, lines
        m = len(lines)
        self.codes = np.zeros(m, dtype=np.int8)
        self.numbers: dict[str, tuple[Any, Any, pa.DataType]] = {}
        self.strings: list[tuple[Column, int]] = []
        self.lo, self.hi = lo, hi
        seen: dict[str, int] = {}
        for j, name in enumerate(fields):
            column = dialect.columns.get(name)
            if column is not None and name not in seen:  # an unknown or repeated field is left out
                seen[name] = j
        self.us, self.days = self._time(seen)
        for name, j in seen.items():
            column = dialect.columns[name]
            if column.kind in ("string", "as_logged"):
                self.strings.append((column, j))
            elif column.name != "ts":
                self.numbers[column.name] = self._number(column.kind, lo[j], hi[j])

    def _fail(self, mask: Any, reason: Reason) -> None:
        self.codes[(self.codes == 0) & mask] = _CODE[reason]

    def _time(self, seen: Mapping[str, int]) -> tuple[Any, Any]:
        """``ts`` from the date and the time, else from an epoch field (CloudFront's ``timestamp(ms)``,
        ``timestamp``); a header with none of them fails its lines (``missing time``)."""
        m = len(self.lines)
        date, time = seen.get("date"), seen.get("time")
        if date is not None and time is not None:
            us, days, ok = date_time(self.a, self.lo[date], self.hi[date], self.lo[time], self.hi[time])
        else:
            kinds = {self.dialect.columns[name].kind: j for name, j in seen.items()}
            kind = next((k for k in _EPOCHS if k in kinds), None)
            if kind is None:
                self._fail(np.ones(m, dtype=bool), Reason.MISSING_TIME)
                return np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
            j = kinds[kind]
            us, days, ok = self._epoch(kind, self.lo[j], self.hi[j])
        self._fail(~ok, Reason.BAD_TIMESTAMP)
        return us, days

    def _epoch(self, kind: str, lo: IntArray, hi: IntArray) -> tuple[Any, Any, Any]:
        """Epoch milliseconds (``epoch_ms``) or seconds with a fraction (``epoch``) as microseconds, UTC
        days, and which are a time (a number whose date is a calendar date)."""
        null = np.zeros(len(lo), dtype=bool)
        if kind == "epoch_ms":
            ms, bad, big = integers(self.a, self.data, lo, hi, null)
            ok = ~bad & ~big & (ms < MAX_EPOCH_US // 1000)  # so that ms * 1000 fits int64
            return epoch_times(np.where(ok, ms, 0) * 1000, ok)
        seconds, bad = decimals(self.a, self.data, lo, hi, null)
        return epoch_times(seconds * 1e6, ~bad)

    def _number(self, kind: str, lo: IntArray, hi: IntArray) -> tuple[Any, Any, pa.DataType]:
        """A numeric field's values and nulls (``-`` or empty); a value that is not a number, or too
        big for its type, fails its line."""
        null = nulls(self.a, lo, hi)
        if kind == "seconds":
            values, bad = decimals(self.a, self.data, lo, hi, null)
            self._fail(bad, Reason.NO_MATCH)
            return values, null, pa.float64()
        values, bad, big = integers(self.a, self.data, lo, hi, null)
        self._fail(bad, Reason.NO_MATCH)
        if kind == "status":
            big |= values > np.iinfo(np.int16).max
        self._fail(big, Reason.OUT_OF_RANGE)
        if kind == "ms":
            return values / 1000.0, null, pa.float64()
        return values, null, _TYPES[kind]

    def reject(
        self, rejects: RejectRows, first_line: int, starts: IntArray, ends: IntArray, reject_bytes: int
    ) -> None:
        """Reject the lines a value failed, with the reason of the first field that failed."""
        for k in np.flatnonzero(self.codes):
            i = self.lines[k]
            raw = bytes(self.data[starts[i] : ends[i]])
            rejects.add(first_line + int(i), str(_REASONS[self.codes[k]]), raw, reject_bytes)
        self.keep = np.flatnonzero(self.codes == 0)

    def build(self, take: IntArray) -> pa.RecordBatch:
        """The batch of the kept rows numbered ``take`` (positions among the kept rows)."""
        rows = self.keep[take]
        n = len(rows)
        columns: dict[str, pa.Array] = {"ts": _fixed(TS_TYPE, self.us[rows], None)}
        for name, (values, null, type_) in self.numbers.items():
            columns[name] = _fixed(type_, values[rows].astype(_NUMPY[type_]), null[rows])
        if self.strings:
            fields = [j for _, j in self.strings]
            valid = [
                ~nulls(self.a, self.lo[j], self.hi[j]) if c.kind == "string" else None
                for c, j in self.strings
            ]
            built = strings(self.a, self.data, self.lo, self.hi, rows, fields, valid)
            for (column, _), values in zip(self.strings, built, strict=True):
                columns[column.name] = decode(values, column.decode)
            if "user_agent" in columns:
                columns["is_bot"] = is_bot(columns["user_agent"])
        return pa.RecordBatch.from_arrays(
            [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in self.out], schema=self.out
        )


def _rows(parts: list[_Segment], out: pa.Schema, rejects: RejectRows, skipped: int) -> Rows:
    """The parts' rows in line order, as one :class:`Rows`."""
    if not parts:
        none = np.zeros(0, dtype=np.int64)
        return Rows(none, none, rejects, lambda order: empty_batch(out), skipped=skipped)
    days = np.concatenate([p.days[p.keep] for p in parts])
    lines = np.concatenate([p.lines[p.keep] for p in parts])
    by_line = np.argsort(lines, kind="stable")  # each part's rows are in line order, not the parts'
    days, lines = days[by_line], lines[by_line]
    if len(parts) == 1:
        part = parts[0]

        def build_one(order: Any) -> pa.RecordBatch:
            return part.build(np.arange(len(part.keep)) if order is None else order)

        return Rows(days, lines, rejects, build_one, skipped=skipped)

    def build(order: Any) -> pa.RecordBatch:
        batches = [p.build(np.arange(len(p.keep))) for p in parts]
        whole = pa.Table.from_batches(batches, schema=out).combine_chunks()
        take = by_line if order is None else by_line[order]
        return whole.take(int64_array(take)).to_batches()[0] if len(take) else empty_batch(out)

    return Rows(days, lines, rejects, build, skipped=skipped)


def _fixed(type_: pa.DataType, values: Any, null: Any) -> pa.Array:
    """A fixed-width array of ``values`` (numpy), null where ``null``."""
    bitmap = None if null is None or not null.any() else pa.py_buffer(np.packbits(~null, bitorder="little"))
    return from_buffers(type_, len(values), [bitmap, np.ascontiguousarray(values)])


def w3c_markdown() -> str:
    """The docs/formats.md section of the W3C formats: per format, its documentation, its default
    fields and each field's column and type."""
    out = []
    for dialect in DIALECTS.values():
        types = schema(dialect)
        out += [
            f"#### `{dialect.name}`: {dialect.title}",
            "",
            f"Fields: <{dialect.url}>. {dialect.note}.",
            "",
        ]
        out += ["Fields of lines before any `#Fields:` directive:", "", "```text", " ".join(dialect.default)]
        out += ["```", "", "| W3C field | column | Arrow type | read as |", "| --- | --- | --- | --- |"]
        for field, column in dialect.columns.items():
            how = _HOW[column.kind] + {"plus": ", `+` decoded as a space", "percent": ", URL-decoded"}.get(
                column.decode, ", URL-decoded (twice where it was encoded twice)" if column.decode else ""
            )
            extra = ", `is_bot` (bool)" if column.name == "user_agent" else ""
            out.append(f"| `{field}` | `{column.name}`{extra} | {types.field(column.name).type} | {how} |")
        out.append("")
    return "\n".join(out)


_HOW = {
    "date": "`yyyy-mm-dd`, with `time` the UTC `ts`",
    "time": "`HH:MM:SS[.ffffff]`, with `date` the UTC `ts`",
    "string": "`-` (or empty) is null",
    "as_logged": "kept as logged",
    "int": "`-` (or empty) is null",
    "status": "`-` (or empty) is null",
    "ms": "milliseconds, as seconds; `-` is null",
    "seconds": "seconds (`0.002`); `-` is null",
    "epoch": "epoch seconds (`1563831524.342`): the UTC `ts` where a header has no `date` and `time`",
    "epoch_ms": "epoch milliseconds: the UTC `ts` where a header has no `date` and `time` (first)",
}
