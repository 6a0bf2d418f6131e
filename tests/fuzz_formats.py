"""Generative checks of the parsers, run as a child process by tests/test_fuzz_formats.py so that a crash
in native code (a segfault, an abort) fails a test instead of killing pytest.

Each property draws a format (a random nginx ``log_format`` or Apache ``LogFormat`` from the whole
variable catalogue, an nginx ``escape=json`` template, or a ``jsonl`` mapping), good lines of it and junk
(truncations, lines of other formats, single words, random bytes, empty lines, CRLF ends), a built-in server
format (any of its variants' lines), a built-in JSON format (Caddy, Traefik) or a W3C log (headers of any
fields between its lines), parses them as one chunk (a W3C log: two, the header carried) and compares the
rows and rejects with a per-line reference: :func:`tests.conftest.plan_reference` (the plan's regex, then
each value typed in plain Python) for format strings; the values the generator wrote for ``jsonl``;
:func:`tests.conftest.w3c_reference` for W3C logs. The engine runs its compiled loops here (imported
below, with Numba's bounds checks on: ``tests/conftest.py``), and the ``split`` property holds the
compiled split equal to the numpy one on every kind of format and line.

    python -m tests.fuzz_formats --examples 200 [--seed 7] [--only nginx]
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar
from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from pipeline.formats import compiled, engine, get_format, w3c_values
from pipeline.formats.json_servers import JSON_SERVERS
from pipeline.formats.jsonl import JsonPlan
from pipeline.formats.servers import SERVERS, VariantsFormat
from pipeline.formats.servers import plans as server_plans
from pipeline.formats.spec import (
    APACHE_DIRECTIVES,
    NGINX_VARIABLES,
    FormatPlan,
    FormatSpecError,
    builtin,
    compile_apache,
    compile_nginx,
    compile_template,
)
from pipeline.formats.vector import fast_candidates, line_bounds
from pipeline.formats.w3c import DIALECTS as W3C_DIALECTS

# tests.conftest turns on Numba's bounds checks and the tests' own cache, then loads the compiled loops (the
# engine runs them, as in the workers): nothing imported before it imports Numba, which reads the settings
# when it compiles but chooses the cache when it loads the loops (so a checked build would land in the
# cache that runs use)
from tests.conftest import (
    BOT_RE,
    W3C_BREAKERS,
    W3C_HOSTILE,
    batch_rows,
    parse_plan,
    plan_reference,
    reference_parse,
    reject_list,
    w3c_reference,
)

log = logging.getLogger("fuzz_formats")

T = TypeVar("T")


class Draw(Protocol):
    """hypothesis's draw, from st.composite or st.data() (its DrawFn type fits only the former)."""

    def __call__(self, strategy: st.SearchStrategy[T]) -> T: ...


FIRST_LINE = 101  # chunks do not start at line 1 in a real run

# nginx variables beyond the catalogue's typed ones: header, cookie, argument families and a custom one
NGINX_EXTRA = ["http_x_forwarded_for", "sent_http_content_type", "cookie_session", "arg_q", "req_id", "host"]
APACHE_EXTRA = ["%{X-Forwarded-For}i", "%{Content-Type}o", "%{session}C", "%{UNIQUE_ID}e", "%>s", "%<s"]
NGINX_TIMES = ["time_local", "time_iso8601", "msec"]
APACHE_TIMES = [
    "%t",
    "%{%d/%b/%Y:%H:%M:%S %z}t",
    "%{[%d/%b/%Y:%H:%M:%S %z]}t",
    "%{sec}t",
    "%{msec}t",
    "%{usec}t",
]
APACHE_TIMES += ["%{begin:msec}t", "%{end:sec}t"]
# literal text between fields: spaces, punctuation, and text that also occurs inside values
SEPARATORS = [" ", " ", " | ", ", ", " - ", ";", " : ", "\t", " -- "]

OTHER_LINES = [
    b'1.2.3.4 - - [14/Mar/2026:23:21:12 +0100] "GET / HTTP/1.1" 200 512 "-" "curl/8.0"',
    b'{"time":"2026-03-14T23:21:12+01:00","status":200}',
    b"2026-03-14 23:21:12 [error] 1234#0: *1 open() failed",
    b"x",
    b"GET",
    b"-",
    b"200",
    b"",
    b" ",
    b'"',
    b"[]",
]


# --- values --------------------------------------------------------------------------------------------


def _time_value(draw: Draw, kind: str, scale: float, var: str) -> str:
    when = draw(st.datetimes(min_value=datetime(1999, 1, 1), max_value=datetime(2038, 1, 1)))
    minutes = draw(st.sampled_from([0, 60, -300, 330, 59, -719]))
    local = when.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=minutes)))
    if kind == "time_local":
        return local.strftime("%d/%b/%Y:%H:%M:%S %z")
    if kind == "time_iso8601":
        return local.isoformat()
    if kind == "time_rfc3339":
        text = local.strftime("%Y-%m-%dT%H:%M:%S") + draw(
            st.sampled_from(["", ".1", ".123", ".123456", ".123456789"])
        )
        return text + draw(st.sampled_from(["Z", local.isoformat()[-6:]]))
    if kind == "time_clf_ms":
        return local.strftime("%d/%b/%Y:%H:%M:%S.") + f"{draw(st.integers(0, 999)):03d}"
    seconds = int(local.timestamp())
    if scale == 1.0 and "msec" in var:  # nginx's $msec: seconds with milliseconds
        return f"{seconds}.{draw(st.integers(0, 999)):03d}"
    return str(seconds * round(1 / scale) + draw(st.integers(0, round(1 / scale) - 1)))


def value(draw: Draw, plan: FormatPlan, k: int) -> str:
    """A value of field ``k`` as its server writes it (escaped for its quoting), mostly well-formed."""
    f = plan.fields[k]
    quoted = f.quoted
    if f.kind in ("time_local", "time_iso8601", "epoch", "time_rfc3339", "time_clf_ms"):
        if f.column != "ts" and draw(st.integers(0, 3)) == 0:
            return "-"
        return _time_value(draw, f.kind, f.scale, f.var)
    if plan.escape == "json":
        escaped = ['say \\"hi\\"', "caf\\u00e9", "a\\\\b", ""]
    elif plan.dialect == "apache":
        escaped = ['say \\"hi\\"', "\\x16\\x03"]
    else:
        escaped = ["say \\x22hi\\x22", "\\x16\\x03\\x01"]
    choices: list[str]
    nulls = [n.decode() for n in f.nulls]
    if f.kind == "ip_port":
        choices = [
            "1.2.3.4:80",
            "[2001:db8::1]:443",
            "2001:db8::1:443",
            "-",
            "1.2.3.4",
            "x:99999",
            ":80",
            "a b:1",
        ]
    elif f.kind == "ip":
        choices = ["1.2.3.4", "2001:db8::1", "10.0.0.7", "-"]
    elif f.kind == "user":
        choices = ["-", "alice", *(["bob smith", *escaped] if quoted else [])]
    elif f.kind == "agent":
        choices = ["curl/8.0", "Googlebot/2.1", "-"]
        if quoted:
            choices += ["Mozilla/5.0 (X11; Linux x86_64) Gecko", "caf\u00e9 bot", *escaped]
    elif f.kind == "string":
        choices = [
            "-",
            "abc",
            "/a/b?c=1",
            "caf\u00e9",
            "x:1",
            *(["x y", "", "[a]", *escaped] if quoted else []),
        ]
    elif f.kind == "request":
        choices = ["GET /a?b=1 HTTP/1.1", "POST /x HTTP/2.0", "GET /caf\u00e9 HTTP/1.1", "-"]
        # what nginx logs, with status 400, for a request line it could not parse
        choices += ["GET /", "", "SSH-2.0-OpenSSH_8.9", "GET /a b HTTP/1.1", "- - - ", *escaped]
    elif f.kind == "status":
        choices = ["200", "404", "400", "503", *nulls, "0", "-1"]
    elif f.kind == "int":
        choices = ["0", "123", "-", "9223372036854775807", "+12", "+"]  # "+": a value so far (plus)
        if f.multi:
            choices += ["12, 34", "5 : 6", "- : 7", "-, -"]
    else:  # float, duration
        choices = ["0.5", "12", "0.001", "-", "1.25", "1e3", "2E-2", ".5", "5.", "+1", "-0", "inf", "-1"]
        choices.append("+-1")  # "+" then a null: a null where a "+" is skipped (plus)
        if f.multi:
            choices += ["0.1, 0.2", "0.1 : -", "1, 2, 3", "-, -"]
    return draw(st.sampled_from(choices))


def good_line(draw: Draw, plan: FormatPlan) -> bytes:
    parts = [plan.literals[0].decode()]
    for k in range(len(plan.fields)):
        parts += [value(draw, plan, k), plan.literals[k + 1].decode()]
    return "".join(parts).encode()


def junk(draw: Draw, good: bytes) -> bytes:
    kind = draw(st.sampled_from(["cut", "other", "bytes", "insert", "drop"]))
    if kind == "cut":
        return good[: draw(st.integers(0, max(len(good) - 1, 0)))]
    if kind == "other":
        return draw(st.sampled_from(OTHER_LINES))
    if kind == "bytes":
        return draw(st.binary(max_size=60)).replace(b"\n", b" ")
    pos = draw(st.integers(0, len(good)))
    if kind == "insert":
        return good[:pos] + draw(st.binary(min_size=1, max_size=4)).replace(b"\n", b"") + good[pos:]
    return good[:pos] + good[pos + 1 :]


def lines_of(draw: Draw, make_good: Callable[[], bytes]) -> list[bytes]:
    """Good lines with junk among them; sometimes many, so that a chunk has more lines than the quick
    split's few that the regex takes one by one."""
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        good = make_good()
        lines.append(good if draw(st.integers(0, 2)) else junk(draw, good))
    return lines * draw(st.sampled_from([1, 1, 1, 8]))


# --- formats -------------------------------------------------------------------------------------------


def _decorate(draw: Draw, var: str, last: bool) -> str:
    style = draw(st.sampled_from(["plain", "quoted", "bracket", "key"]))
    if style == "quoted":
        return f'"{var}"'
    if style == "bracket":
        return f"[{var}]"
    if style == "key":
        return f"{draw(st.sampled_from(['rt', 'u', 'x']))}={var}"
    return var


def _assemble(draw: Draw, fields: list[str]) -> str:
    out = draw(st.sampled_from(["", "", "> ", "["]))
    for i, var in enumerate(fields):
        if i:
            out += draw(st.sampled_from(SEPARATORS))
        out += _decorate(draw, var, i == len(fields) - 1)
    return out + draw(st.sampled_from(["", "", " end", '"', " -"]))


def _unique_columns(draw: Draw, pool: dict[str, str | None], count: int) -> list[str]:
    """Up to ``count`` entries of ``pool`` (name -> column) that make different columns."""
    names = draw(st.lists(st.sampled_from(sorted(pool)), max_size=count, unique=True))
    seen: set[str | None] = set()
    out = []
    for name in names:
        column = pool[name]
        if column is not None and column in seen:
            continue
        seen.add(column)
        out.append(name)
    return out


@st.composite
def nginx_formats(draw: Draw) -> str:
    pool: dict[str, str | None] = {n: v.column for n, v in NGINX_VARIABLES.items() if v.column != "ts"}
    pool |= {n: n for n in NGINX_EXTRA}
    names = [*_unique_columns(draw, pool, 6), draw(st.sampled_from(NGINX_TIMES))]
    names = draw(st.permutations(names))
    return _assemble(draw, [draw(st.sampled_from([f"${n}", f"${{{n}}}"])) for n in names])


@st.composite
def apache_formats(draw: Draw) -> str:
    pool: dict[str, str | None] = {
        d: v.column for d, v in APACHE_DIRECTIVES.items() if v.column != "ts" and v.kind != "skip"
    }
    pool |= {d: d for d in APACHE_EXTRA[:4]}
    names = [*_unique_columns(draw, pool, 6), draw(st.sampled_from(APACHE_TIMES))]
    if draw(st.booleans()):
        names.append("%l")
    names = draw(st.permutations(names))
    return _assemble(draw, names)


@st.composite
def json_templates(draw: Draw) -> str:
    pool: dict[str, str | None] = {n: v.column for n, v in NGINX_VARIABLES.items() if v.column != "ts"}
    names = [*_unique_columns(draw, pool, 6), draw(st.sampled_from(NGINX_TIMES))]
    names = draw(st.permutations(names))
    items = []
    for n in names:
        numeric = NGINX_VARIABLES[n].kind in ("status", "int", "float", "duration", "epoch")
        bare = numeric and draw(st.booleans())  # a number written without quotes
        items.append(f'"{n}":' + (f"${n}" if bare else f'"${n}"'))
    return "escape=json '{" + ",".join(items) + "}'"


def check_plan(plan: FormatPlan, key: str | tuple[str, str] | None, lines: list[bytes]) -> None:
    """Parse ``lines`` as one chunk with the format ``key`` (None: the engine itself, even for the
    combined format) and compare with the reference."""
    data = b"".join(line + b"\n" for line in lines)
    result = parse_plan(plan, data, FIRST_LINE) if key is None else get_format(key).parse(data, FIRST_LINE)
    rows, rejected = plan_reference(plan, lines)
    got_rejects = [line - FIRST_LINE for line, _ in reject_list(result.rejects)]
    assert got_rejects == rejected, (got_rejects, rejected, lines)
    assert batch_rows(result.batch) == rows, lines
    assert sum(length for _, _, length in result.partitions) == result.batch.num_rows


def _format_property(formats: st.SearchStrategy[str], dialect: str) -> Callable[..., None]:
    compile_ = compile_nginx if dialect == "nginx" else compile_apache

    @given(fmt=formats, data=st.data())
    def prop(fmt: str, data: st.DataObject) -> None:
        try:
            plan = compile_(fmt)
        except FormatSpecError:
            return  # a format the compiler refuses (a config error): nothing to parse
        lines = lines_of(data.draw, lambda: good_line(data.draw, plan))
        check_plan(plan, (dialect, fmt), lines)

    return prop


@given(data=st.data())
def combined_property(data: st.DataObject) -> None:
    """The combined format: through the engine against its plan's reference, and through its
    built-in name against the combined format's own reference (tests.conftest.reference_parse,
    written apart from the plan)."""
    plan = builtin("combined")
    lines = lines_of(data.draw, lambda: good_line(data.draw, plan))
    check_plan(plan, None, lines)
    result = get_format("combined").parse(b"".join(line + b"\n" for line in lines), FIRST_LINE)
    rows, rejected = reference_parse(lines)
    by_date = sorted(enumerate(rows), key=lambda r: (r[1]["ts"].date(), r[0]))
    assert result.batch.to_pylist() == [row for _, row in by_date], lines
    assert len(result.rejects) == rejected


def any_plan(data: st.DataObject) -> FormatPlan | None:
    """A plan of any kind: a drawn nginx or Apache format, an ``escape=json`` template, a server's
    variant or the combined format (None: a drawn format the compiler refuses)."""
    kind = data.draw(st.sampled_from(["nginx", "apache", "json", "server", "combined"]))
    try:
        if kind == "server":
            return data.draw(st.sampled_from(server_plans(data.draw(st.sampled_from(sorted(SERVERS))))))
        if kind == "combined":
            return builtin("combined")
        strategy = {"nginx": nginx_formats(), "apache": apache_formats(), "json": json_templates()}[kind]
        return (compile_apache if kind == "apache" else compile_nginx)(data.draw(strategy))
    except FormatSpecError:
        return None


def with_line_ends(data: st.DataObject, lines: list[bytes]) -> bytes:
    """``lines`` as a chunk, each with a ``\\n`` or a CRLF."""
    ends = [data.draw(st.sampled_from([b"\n", b"\n", b"\r\n"])) for _ in lines]
    return b"".join(line + end for line, end in zip(lines, ends, strict=True))


@given(data=st.data())
def split_property(data: st.DataObject) -> None:
    """The compiled split (:func:`pipeline.formats.compiled.split`) finds what the numpy engine finds:
    every line's bounds and status, the lines split and their spans; on any format and line, CRLF ends
    and over-long lines among them; also with ``whole`` (the regex's own split). ``split_every`` gives
    them when every line is split, else None."""
    plan = any_plan(data)
    if plan is None:
        return
    lines = lines_of(data.draw, lambda: good_line(data.draw, plan))
    chunk = with_line_ends(data, lines)
    a = np.frombuffer(chunk, dtype=np.uint8)
    longest = data.draw(st.sampled_from([1 << 16, 40]))
    starts, stops, newlines, crlf = line_bounds(a)
    cand = fast_candidates(a, starts, newlines, crlf) & ((stops - starts) <= longest)
    tried = cand.copy()
    idx, spans = engine._fast_spans(plan, a, engine._Positions(a), starts, stops, cand)
    status = np.where(cand, compiled.OK, np.where(tried, compiled.TRIED, compiled.OTHER))
    got = compiled.split(plan, a, longest)
    for name, want, have in zip(
        ("starts", "ends", "status", "lines", "spans"), (starts, stops, status, idx, spans), got, strict=True
    ):
        assert np.array_equal(want, have), (name, plan.literals, lines)
    whole = tried.copy()
    want_lines, want_spans = engine._fast_spans(
        plan, a, engine._Positions(a), starts, stops, whole, whole=True
    )
    _, _, got_status, got_lines, got_spans = compiled.split(plan, a, longest, whole=True)
    assert np.array_equal(want_lines, got_lines), ("whole", plan.literals, lines)
    assert np.array_equal(want_spans, got_spans), ("whole", plan.literals, lines)
    assert np.array_equal(got_status == compiled.OK, whole), ("whole", plan.literals, lines)
    every = compiled.split_every(plan, a, longest)
    assert (every is not None) == (len(idx) == len(starts)), (plan.literals, lines)
    if every is not None:
        assert all(np.array_equal(x, y) for x, y in zip(every, (starts, stops, spans), strict=True))


@given(data=st.data())
def variants_property(data: st.DataObject) -> None:
    """The compiled split of a server format's variants (``VariantsFormat._compiled_split``) gives each
    line the group that the numpy split (``_split``) gives it, the same line bounds and, where one
    variant took every line, the same spans; and the format's rows and rejects are those of the numpy
    engine. Lines of any variant (runs of one among them, so that the previous line's variant is
    tried first and a line of an earlier one comes after), nasty values, junk, CRLF ends and
    over-long lines."""
    name = data.draw(st.sampled_from(sorted(n for n in SERVERS if len(SERVERS[n].variants) > 1)))
    fmt = get_format(name)
    assert isinstance(fmt, VariantsFormat)
    variants = server_plans(name)

    lines = []
    for _ in range(data.draw(st.integers(1, 8))):  # runs of one variant's lines
        plan = data.draw(st.sampled_from(variants))
        for _ in range(data.draw(st.integers(1, 6))):
            good = (nasty_line if data.draw(st.integers(0, 3)) == 0 else good_line)(data.draw, plan)
            if data.draw(st.integers(0, 3)):  # mostly plain lines, which the compiled split reads
                good = good.replace("\u00e9".encode(), b"e").replace(b"\\", b"/")
            lines.append(junk(data.draw, good) if data.draw(st.integers(0, 5)) == 0 else good)
    chunk = with_line_ends(data, lines)
    a = np.frombuffer(chunk, dtype=np.uint8)
    longest = data.draw(st.sampled_from([1 << 16, 120]))
    bounds, group, quick = fmt._compiled_split(a, longest)
    want_bounds = line_bounds(a)
    want_group, want_quick = fmt._split(a, *want_bounds, longest)
    assert all(np.array_equal(x, y) for x, y in zip(bounds, want_bounds, strict=True)), lines
    assert np.array_equal(group, want_group), (name, group, want_group, lines)
    if want_quick is not None:
        assert quick is not None and quick[0] == want_quick[0], (name, lines)
        assert np.array_equal(quick[1].spans, want_quick[1].spans), (name, lines)
    results = []
    for loaded in (True, False):
        with mock.patch.object(compiled, "loaded", lambda loaded=loaded: loaded):
            result = fmt.parse(chunk, FIRST_LINE, max_line_bytes=longest)
            results.append((batch_rows(result.batch), reject_list(result.rejects)))
    assert results[0] == results[1], (name, lines)


# values that test every rule of a kind's typing: impossible dates, offsets at and past their limits,
# numbers at and past int64's, decimals past a double's exact digits, lists, empty values
NASTY: dict[str, list[str]] = {
    "time_local": [
        "29/Feb/2024:10:00:00 +0000",
        "29/Feb/2025:10:00:00 +0000",
        "29/Feb/2000:10:00:00 +0000",
        "29/Feb/1900:10:00:00 +0000",
        "31/Apr/2026:10:00:00 +0000",
        "00/Jan/2026:10:00:00 +0000",
        "01/Nov/2026:24:00:00 +0000",
        "01/Nov/2026:23:60:00 +0000",
        "01/Nov/2026:23:59:60 +0000",
        "01/Nov/2026:00:00:00 +1400",
        "01/Nov/2026:00:00:00 -1200",
        "01/Nov/2026:00:00:00 +2359",
        "01/Nov/2026:00:00:00 +2400",
        "01/Nov/2026:00:00:00 -0060",
        "01/Nov/2026:00:00:00 *0000",
        "01/NOV/2026:00:00:00 +0000",
        "01/nOv/2026:00:00:00 +0000",
        "01/Xyz/2026:00:00:00 +0000",
        "01/N@v/2026:00:00:00 +0000",
        "31/Dec/9999:23:59:59 -0100",
        "31/Dec/9999:23:59:59 +0100",
        "01/Jan/0001:00:00:00 +0100",
        "01/Jan/0001:00:00:00 -0100",
        "01/Jan/0000:00:00:00 +0000",
        "1/Nov/2026:00:00:00 +0000",
        "01/Nov/2026:00:00:00  +0000",
        "-",
        "",
    ],
    "status": ["2000", "20", "", "-", "abc", "0x1", " 20", "099", "999"],
    "int": [
        "9223372036854775807",
        "9223372036854775808",
        "99999999999999999999",
        "000000000000000000000000012",
        "",
        "12 ",
        "1.5",
        "4611686018427387904, 4611686018427387904",
        "4611686018427387903, 4611686018427387904",
        "1,2",
        "1, ",
        ", 1",
        "- : -",
        "1 :2",
    ],
    "float": [
        "",
        "1.",
        ".5",
        "1.2.3",
        "0.1, 0.2, 0.3",
        "1 : -",
        "-, -",
        "9007199254740993",
        "9007199254740991.5",
        "0.1234567890123456789012345",
        "123456789012345678901234567890",
        "1e400",
        "1e3, 2",
        " 5",
        "5 ",
        "0.30000000000000004",
        "00.5",
        "- ",
    ],
    "request": [
        "GET  / HTTP/1.1",
        " GET / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET /?a?b HTTP/1.1",
        "GET ? HTTP/1.1",
        "GET /a? HTTP/1.1",
        "GET /a b",
        "",
        "-",
        "a b c",
    ],
}
NASTY["time_rfc3339"] = [
    "2024-02-29T10:00:00Z",
    "2025-02-29T10:00:00Z",
    "2026-11-01T23:59:60Z",
    "2016-12-31T23:59:60.5Z",
    "2026-11-01T24:00:00Z",
    "2026-11-01T10:00:00.Z",
    "2026-11-01T10:00:00.1234567890Z",
    "2026-11-01T10:00:00.123456789+05:30",
    "2026-11-01T10:00:00.999999999-00:01",
    "2026-11-01T10:00:00+24:00",
    "2026-11-01T10:00:00+23:60",
    "2026-11-01T10:00:00-23:59",
    "2026-11-01T10:00:00+0530",
    "2026-11-01T10:00:00+05:3x",
    "2026-11-01T10:00:00*05:30",
    "2026-11-01t10:00:00Z",
    "2026-11-01T10:00:00z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59-01:00",
    "0000-01-01T00:00:00Z",
    "2026-11-01T10:00:00",
    "2026-11-01T10:00:00.5x5Z",
    "2026-11-01T10:00:0aZ",
    "2026-1-01T10:00:00Z",
    "2026-11-01T10:00:00.12345678912Z",
    "-",
    "",
]
NASTY["time_iso8601"] = [
    "2024-02-29T10:00:00+00:00",
    "2025-02-29T10:00:00+00:00",
    "2026-11-01T23:59:60+00:00",
    "2026-11-01T24:00:00+00:00",
    "2026-11-01T10:00:00+24:00",
    "2026-11-01T10:00:00+23:60",
    "2026-11-01T10:00:00-23:59",
    "2026-11-01T10:00:00Z",
    "2026-11-01T10:00:00.5Z",
    "2026-11-01T10:00:00.5+01:00",
    "2026-11-01T10:00:00+0100",
    "2026-11-01T10:00:00*01:00",
    "2026-11-01 10:00:00+01:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0000-01-01T00:00:00+00:00",
    "-",
    "",
]
NASTY["time_clf_ms"] = [
    "29/Feb/2024:10:00:00.000",
    "29/Feb/2025:10:00:00.000",
    "01/Nov/2026:23:59:60.000",
    "01/Nov/2026:24:00:00.000",
    "01/NOV/2026:00:00:00.999",
    "01/Nov/2026:00:00:00,000",
    "01/Nov/2026:00:00:00.00",
    "01/Nov/2026:00:00:00.0000",
    "01/Xyz/2026:00:00:00.000",
    "01/N@v/2026:00:00:00.000",
    "31/Dec/9999:23:59:59.999",
    "01/Jan/0000:00:00:00.000",
    "01/Nov/2026:00:00:00.1a3",
    "-",
    "",
]
NASTY["ip_port"] = [
    "[::1]:80",
    "::1",
    "[::1]",
    "[]:80",
    "[a]:1",
    "1.2.3.4:",
    ":80",
    "1.2.3.4:65536",
    "1.2.3.4:99999",
    "1.2.3.4:123456",
    "1.2.3.4:8a",
    "1.2.3.4:00080",
    "[2001:db8::1]:443",
    "2001:db8::1:443",
    "a:b:c",
    "x:1:",
    "-",
    "--",
    "",
]
NASTY["duration"] = NASTY["epoch"] = NASTY["float"]
NASTY["user"] = NASTY["string"] = NASTY["agent"] = ["", "-", '"', "--", " - "]


def nasty_line(draw: Draw, plan: FormatPlan) -> bytes:
    """A line of ``plan`` whose values are, now and then, what its typing must refuse or read exactly."""
    parts = [plan.literals[0].decode()]
    for k, f in enumerate(plan.fields):
        nasty = NASTY.get(f.kind, [])
        text = (
            draw(st.sampled_from(nasty)) if nasty and draw(st.integers(0, 2)) == 0 else value(draw, plan, k)
        )
        parts += [text, plan.literals[k + 1].decode()]
    return "".join(parts).encode()


@given(data=st.data())
def typing_property(data: st.DataObject) -> None:
    """The compiled typing (:mod:`pipeline.formats.compiled_types`) gives what the numpy typing gives:
    the same batch and the same rejects for any format and line, values that break every rule of their
    kind among them, with CRLF ends, in line order and in another order."""
    plan = any_plan(data)
    if plan is None:
        return
    lines = lines_of(data.draw, lambda: nasty_line(data.draw, plan))
    chunk = with_line_ends(data, lines)
    results = []
    for loaded in (True, False):
        with mock.patch.object(compiled, "loaded", lambda loaded=loaded: loaded):
            rows = engine.scan(plan, chunk, FIRST_LINE, 1 << 16, 64)
            backwards = np.arange(len(rows.lines))[::-1]
            results.append((rows.build(None), rows.build(backwards), reject_list(rows.rejects), rows.days))
    (batch, back, rejects, days), (want, want_back, want_rejects, want_days) = results
    assert rejects == want_rejects, (rejects, want_rejects, plan.literals, lines)
    assert np.array_equal(days, want_days), lines
    assert batch.schema == want.schema
    assert batch_rows(batch) == batch_rows(want), (plan.literals, lines)
    assert batch_rows(back) == batch_rows(want_back), (plan.literals, lines)


# the kinds that the servers' formats hold, each as a one-field template; and the bytes a value's byte
# is replaced with to break one rule at a time
_KIND_TEMPLATES = {
    "time_rfc3339": "[{ts:time_rfc3339}] {t:time_rfc3339}",
    "time_clf_ms": "[{ts:time_clf_ms}] {t:time_rfc3339}",
    "ip_port": "[{ts:time_clf_ms}] {ip,port:ip_port}",
}
_BREAKERS = b"0959-+:.TZtz[]/ aN\xff\x00"


@given(data=st.data())
def kinds_property(data: st.DataObject) -> None:
    """The compiled typing of the servers' own kinds (RFC 3339 times, HAProxy's accept date,
    ``address:port``) and of nginx's ``$time_iso8601`` gives the numpy typing's rows and rejects: drawn
    values, the rules' edge cases (:data:`NASTY`), each with one byte replaced, cut short or grown, at any
    place of the chunk (its first and last bytes)."""
    kind = data.draw(st.sampled_from([*_KIND_TEMPLATES, "time_iso8601"]))
    if kind == "time_iso8601":  # nginx's: a log_format's variable, not a template type
        plan = compile_nginx("[$time_iso8601] $status", "kinds")
    else:
        plan = compile_template(_KIND_TEMPLATES[kind], "kinds")
    lines = []
    for _ in range(data.draw(st.integers(1, 20))):
        k = data.draw(st.integers(0, len(plan.fields) - 1))
        values = [value(data.draw, plan, j) for j in range(len(plan.fields))]
        if data.draw(st.booleans()):
            values[k] = data.draw(st.sampled_from(NASTY[plan.fields[k].kind]))
        text = values[k].encode()
        how = data.draw(st.sampled_from(["as is", "replace", "cut", "grow"]))
        at = data.draw(st.integers(0, len(text)))
        if how == "replace" and text:
            at = min(at, len(text) - 1)
            text = text[:at] + bytes([data.draw(st.sampled_from(_BREAKERS))]) + text[at + 1 :]
        elif how == "cut":
            text = text[:at]
        elif how == "grow":
            text = text[:at] + data.draw(st.sampled_from([b"0", b"9", b":1", b".5", b"Z", b"]"])) + text[at:]
        encoded = [v.encode() for v in values]
        encoded[k] = text
        parts = [plan.literals[0]]
        for j, v in enumerate(encoded):
            parts += [v, plan.literals[j + 1]]
        lines.append(b"".join(parts).replace(b"\n", b" "))
    chunk = with_line_ends(data, lines)
    results = []
    for loaded in (True, False):
        with mock.patch.object(compiled, "loaded", lambda loaded=loaded: loaded):
            rows = engine.scan(plan, chunk, FIRST_LINE, 1 << 16, 64)
            results.append((batch_rows(rows.build(None)), reject_list(rows.rejects), rows.days.tolist()))
    assert results[0] == results[1], (kind, lines)


# --- the built-in server formats ---------------------------------------------------------------------


def servers_reference(
    plans: tuple[FormatPlan, ...], lines: list[bytes]
) -> tuple[list[dict[str, Any]], list[int]]:
    """A server format's rows: each line read by the first of its variants whose reference reads it
    (:func:`tests.conftest.plan_reference`), with the columns it lacks null; grouped by date."""
    rows: list[tuple[int, dict[str, Any]]] = []
    rejected = []
    columns = list(dict.fromkeys(name for plan in plans for name in plan.schema().names))
    for i, line in enumerate(lines):
        for plan in plans:
            found, _ = plan_reference(plan, [line])
            if found:
                rows.append((found[0]["ts"] // 86_400_000_000, dict.fromkeys(columns) | found[0]))
                break
        else:
            rejected.append(i)
    rows.sort(key=lambda r: r[0])
    return [{c: row[c] for c in columns} for _, row in rows], rejected


@given(data=st.data())
def servers_property(data: st.DataObject) -> None:
    """A built-in server format: good lines of any of its variants, and junk."""
    name = data.draw(st.sampled_from(sorted(SERVERS)))
    variants = server_plans(name)
    lines = lines_of(data.draw, lambda: good_line(data.draw, data.draw(st.sampled_from(variants))))
    result = get_format(name).parse(b"".join(line + b"\n" for line in lines), FIRST_LINE)
    rows, rejected = servers_reference(variants, lines)
    got_rejects = [line - FIRST_LINE for line, _ in reject_list(result.rejects)]
    assert got_rejects == rejected, (got_rejects, rejected, lines)
    assert batch_rows(result.batch) == rows, lines


# --- W3C logs -------------------------------------------------------------------------------------------

_W3C_VALUES = [
    "-",
    "",
    "0",
    "200",
    "9223372036854775808",
    "0.001",
    "2026-11-01",
    "10:00:00.5",
    "a+b",
    "%E2%82%AC",
]
_W3C_VALUES += ["%FF", "%2520", "2001:db8::1", "10:00:00", "2024-02-29", "24:00:00", "1.", "caf\u00e9"]


# values a field of each kind reads (most of the time), beside any of _W3C_VALUES or any text
_W3C_GOOD = {
    "date": ["2026-11-01", "2024-02-29"],
    "time": ["10:00:00", "23:59:59.25"],
    "int": ["0", "443", "-"],
    "status": ["200", "-"],
    "ms": ["15", "-"],
    "seconds": ["0.001", "12", "-"],
    "epoch": ["1746058823.123", "1563831524", "-"],
    "epoch_ms": ["1746058823123", "0", "-"],
}
_W3C_STRINGS = ["a+b", "%E2%82%AC+%20", "%2520x", "%FF", "-", "", "caf\u00e9", "Googlebot"]


def _w3c_value(draw: Draw, kind: str) -> str:
    if draw(st.integers(0, 5)):
        return draw(st.sampled_from(_W3C_GOOD.get(kind, _W3C_STRINGS)))
    if draw(st.booleans()):
        return draw(st.sampled_from(_W3C_VALUES))
    return draw(st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=10))


def _first(pair: tuple[Any, Any]) -> int:
    return int(pair[0])


@given(data=st.data())
def w3c_property(data: st.DataObject) -> None:
    """A W3C format: headers with any of its fields (and unknown ones) between lines of any values,
    junk among them, read in two chunks (the first one's header carried to the second)."""
    name = data.draw(st.sampled_from(sorted(W3C_DIALECTS)))
    dialect = W3C_DIALECTS[name]
    sep = dialect.sep.decode()
    known = [*dialect.columns, "X-Custom", "date", "time"]
    lines: list[bytes] = []
    fields = list(dialect.default)
    for _ in range(data.draw(st.integers(1, 10))):
        if not data.draw(st.integers(0, 4)):
            fields = data.draw(st.lists(st.sampled_from(known), max_size=12))
            lines.append(("#Fields: " + " ".join(fields)).encode())
            continue
        values = [
            _w3c_value(data.draw, dialect.columns[f].kind if f in dialect.columns else "") for f in fields
        ]
        good = sep.join(values).encode()
        lines.append(good if data.draw(st.integers(0, 2)) else junk(data.draw, good))
    lines = [line.replace(b"\n", b" ") for line in lines]
    cut = data.draw(st.integers(0, len(lines)))
    fmt = get_format(name)
    results = []
    for begin, end in ((0, cut), (cut, len(lines))):
        chunk = b"".join(line + b"\n" for line in lines[begin:end])
        if chunk:
            results.append(fmt.parse(chunk, FIRST_LINE + begin))
            fmt = get_format(fmt.carry(chunk) or fmt.key)
    rows, rejected, skipped = w3c_reference(dialect, lines)
    # each chunk's rows in line order (a chunk's rows come grouped by date)
    got = [
        row for r in results for _, row in sorted(zip(r.rows, r.batch.to_pylist(), strict=True), key=_first)
    ]
    assert got == rows, lines
    assert sum(r.batch.num_rows for r in results) == len(rows)
    got_rejects = sorted(line - FIRST_LINE + 1 for r in results for line, _ in reject_list(r.rejects))
    assert got_rejects == [n for n, _ in rejected], (got_rejects, rejected, lines)
    assert sum(r.skipped for r in results) == skipped


def _w3c_hostile(draw: Draw, kind: str) -> bytes:
    """A value of ``kind`` (any of a good one, an edge, the other kinds'), possibly with a byte replaced,
    cut short or grown."""
    pool = W3C_HOSTILE.get(kind, W3C_HOSTILE["string"])
    text = draw(st.sampled_from([*pool, b"-", b"", *(v.encode() for v in _W3C_VALUES)]))
    how = draw(st.sampled_from(["as is", "as is", "replace", "cut", "grow"]))
    at = draw(st.integers(0, len(text)))
    if how == "replace" and text:
        at = min(at, len(text) - 1)
        return text[:at] + bytes([draw(st.sampled_from(W3C_BREAKERS))]) + text[at + 1 :]
    if how == "cut":
        return text[:at]
    if how == "grow":
        return text[:at] + draw(st.sampled_from([b"0", b"9", b".5", b"%2", b"+", b"-"])) + text[at:]
    return text


def _w3c_hostile_lines(data: st.DataObject, name: str) -> list[bytes]:
    """A W3C log's lines with hostile values, missing and extra fields, headers of any fields between
    them, other directives, blank lines and junk."""
    dialect = W3C_DIALECTS[name]
    known = [*dialect.columns, "X-Custom", "date", "time"]
    fields = list(dialect.default)
    lines: list[bytes] = []
    for _ in range(data.draw(st.integers(1, 30))):
        pick = data.draw(st.integers(0, 19))
        if pick == 0:
            fields = data.draw(st.lists(st.sampled_from(known), max_size=12))
            lines.append(("#Fields: " + " ".join(fields)).encode())
            continue
        if pick == 1:
            lines.append(data.draw(st.sampled_from([b"", b"#Version: 1.0", b"#Fields:", b"#"])))
            continue
        kinds = [dialect.columns[f].kind if f in dialect.columns else "" for f in fields]
        values = [data.draw(st.sampled_from(_W3C_GOOD.get(k, _W3C_STRINGS))).encode() for k in kinds]
        for _ in range(data.draw(st.integers(0, 2)) if values else 0):  # a value or two at an edge
            k = data.draw(st.integers(0, len(values) - 1))
            values[k] = _w3c_hostile(data.draw, kinds[k])
        if pick == 2 and values:  # a field missing, or one too many
            values = values[:-1] if data.draw(st.booleans()) else [*values, b"extra"]
        line = dialect.sep.join(values)
        lines.append(junk(data.draw, line) if pick == 3 else line)
    return [line.replace(b"\n", b" ") for line in lines]


def _rejects_of(result: Any) -> list[tuple[int, str, bytes, int]]:
    r = result.rejects
    blank = [(int(n), reason, b"", 0) for reason, ns in r.blank for n in ns]
    return sorted([*zip(r.lines, r.reasons, r.raw, r.raw_len, strict=True), *blank])


@given(data=st.data())
def w3c_compiled_property(data: st.DataObject) -> None:
    """A W3C format's compiled split and typing (:mod:`pipeline.formats.w3c_values`) give the numpy
    one's rows, rejects (line, reason, raw bytes), row lines and skipped lines on hostile lines (values
    at and past each kind's rules, missing and extra fields, headers changing mid-chunk, NUL bytes, bytes
    that are not UTF-8, long values, CRLF ends, lines over the limit); and its URL and ``+`` decoding
    gives the numpy decoding's strings, nulls and offsets included."""
    name = data.draw(st.sampled_from(sorted(W3C_DIALECTS)))
    chunk = with_line_ends(data, _w3c_hostile_lines(data, name))
    longest = data.draw(st.sampled_from([1 << 16, 1 << 16, 1 << 16, 60]))
    fmt = get_format(data.draw(st.sampled_from([name, (name, "date time cs-method sc-status")])))
    results = []
    for loaded in (True, False):
        with mock.patch.object(compiled, "loaded", lambda loaded=loaded: loaded):
            result = fmt.parse(chunk, FIRST_LINE, max_line_bytes=longest, reject_bytes=40)
            results.append(
                (batch_rows(result.batch), _rejects_of(result), result.rows.tolist(), result.skipped)
            )
    assert results[0] == results[1], (name, chunk)
    texts = data.draw(st.lists(st.one_of(st.none(), st.sampled_from(W3C_HOSTILE["string"])), max_size=8))
    values = pa.array(
        [None, *texts], pa.string() if all(t is None or _utf8(t) for t in texts) else pa.binary()
    )
    if values.type == pa.string():
        # an offset into its buffers
        values = pa.array([None, *texts], pa.string()).slice(data.draw(st.integers(0, len(texts))))
        got = []
        for loaded in (True, False):
            with mock.patch.object(compiled, "loaded", lambda loaded=loaded: loaded):
                got.append(w3c_values.decode_percent(values))
        assert got[0].equals(got[1]), (texts, got)
        # "+" decoding (numpy either way): each value's pluses as spaces, its nulls in their places
        plain = [None if v is None else v.replace("+", " ") for v in values.to_pylist()]
        assert w3c_values.decode_plus(values).to_pylist() == plain, (texts, plain)


def _utf8(text: bytes) -> bool:
    try:
        text.decode()
    except UnicodeDecodeError:
        return False
    return True


# --- jsonl ----------------------------------------------------------------------------------------------

# column -> (the values a writer logs, as JSON values; the typed value each gives)
_JSONL_VALUES: dict[str, list[tuple[Any, Any]]] = {
    "ip": [("1.2.3.4", "1.2.3.4"), ("-", "-"), ("", "")],
    "user": [("alice", "alice"), ("-", None), ("", None), (None, None)],
    "status": [(200, 200), ("404", 404), ("400", 400)],
    "bytes": [(512, 512), ("12", 12), ("-", None), (None, None)],
    "request_time": [(0.5, 0.5), ("0.25", 0.25), (12, 12.0), ("-", None)],
    "user_agent": [("curl/8.0", "curl/8.0"), ("Mozilla/5.0 (X11) Gecko", "Mozilla/5.0 (X11) Gecko")],
    "host": [("example.org", "example.org"), ("caf\u00e9", "caf\u00e9"), (None, None), (7, "7")],
}
_REQUESTS: list[tuple[Any, tuple[Any, ...]]] = [
    ("GET /a?b=1 HTTP/1.1", ("GET", "/a", "b=1", "HTTP/1.1", None)),
    ("-", (None, None, None, None, None)),
    ("GET /", (None, None, None, None, "GET /")),
    ("SSH-2.0-OpenSSH_8.9", (None, None, None, None, "SSH-2.0-OpenSSH_8.9")),
]


@st.composite
def jsonl_cases(draw: Draw) -> tuple[dict[str, str], list[bytes], list[dict[str, Any] | None]]:
    columns = draw(st.lists(st.sampled_from(sorted(_JSONL_VALUES)), unique=True, max_size=5))
    with_request = draw(st.booleans())
    # some columns' keys nested in an object, as Caddy and Go services write them: "o.k_ip"
    nested = set(draw(st.lists(st.sampled_from(columns), unique=True))) if columns else set()
    mapping = {"ts": "time", **{c: f"o.k_{c}" if c in nested else f"k_{c}" for c in columns}}
    if with_request:
        mapping["request"] = "req"
    lines: list[bytes] = []
    expected: list[dict[str, Any] | None] = []
    for _ in range(draw(st.integers(1, 10))):
        when = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 1, 1)))
        when = when.replace(microsecond=0, tzinfo=UTC)
        record: dict[str, Any] = {"time": when.isoformat() if draw(st.booleans()) else int(when.timestamp())}
        row: dict[str, Any] = {"ts": int(when.timestamp()) * 1_000_000}
        for c in columns:
            logged, typed = draw(st.sampled_from(_JSONL_VALUES[c]))
            if logged is not None or draw(st.booleans()):
                if c in nested:
                    record.setdefault("o", {})[f"k_{c}"] = logged
                else:
                    record[mapping[c]] = logged
            row[c] = typed
            if c == "user_agent":
                row["is_bot"] = BOT_RE.search(typed) is not None
        if with_request:
            logged, parts = draw(st.sampled_from(_REQUESTS))
            record["req"] = logged
            row |= dict(zip(("method", "path", "query", "protocol", "request"), parts, strict=True))
        items = list(record.items())
        line = json.dumps(dict(draw(st.permutations(items))), ensure_ascii=draw(st.booleans())).encode()
        if draw(st.integers(0, 3)):
            lines.append(line)
            expected.append(row)
        else:
            # junk that is never a JSON object: a cut line, a line of another format, random bytes
            cut = line[: draw(st.integers(0, len(line) - 1))]
            other = draw(st.sampled_from([x for x in OTHER_LINES if not x.startswith(b"{")]))
            raw = b"\x80" + draw(st.binary(max_size=40)).replace(b"\n", b" ")
            lines.append(draw(st.sampled_from([cut, other, raw, line.replace(b'"', b"\x80", 1)])))
            expected.append(None)
    return mapping, lines, expected


@given(case=jsonl_cases())
def jsonl_property(case: tuple[dict[str, str], list[bytes], list[dict[str, Any] | None]]) -> None:
    mapping, lines, expected = case
    key = ("jsonl", json.dumps(mapping))
    plan = JsonPlan.compile(mapping)
    data = b"".join(line + b"\n" for line in lines)
    result = get_format(key).parse(data, FIRST_LINE)
    got_rejects = [line - FIRST_LINE for line, _ in reject_list(result.rejects)]
    assert got_rejects == [i for i, row in enumerate(expected) if row is None], (got_rejects, lines)
    assert [f.name for f in result.batch.schema] == plan.schema().names
    # the good lines are rows with exactly the generated values, grouped by date, in line order within one
    good = sorted((row["ts"] // 86_400_000_000, i, row) for i, row in enumerate(expected) if row is not None)
    assert batch_rows(result.batch) == [row for _, _, row in good], lines


# --- jsonl: the template read against Arrow's -------------------------------------------------------------

# JSON values a writer logs under a key, by the kind of value the writer gives that key (a writer keeps
# to one kind mostly; a line now and then has a value of another)
_WRITER_VALUES: dict[str, list[Any]] = {
    "time": [
        "14/Mar/2026:23:21:12 +0100",
        "2026-03-14T23:21:12+01:00",
        "2026-03-14T22:21:12Z",
        "2026-03-14T22:21:12.250Z",
        "2026-03-14 22:21:12",
        "2026/03/14 22:21:12.5",
        "2026-03-14",
        "1773526872",
        "-",
        "",
        "2026-03-14T22:21:12.123456789+00:00",
        "2026-03-14T22:21:12+0530",
    ],
    "epoch": [1773526872, 1773526872.25, 1773526872250, 1773526872250123, 0, -5, 1.5e9],
    "text": [
        "1.2.3.4",
        "",
        "-",
        "GET /a?b=1 HTTP/1.1",
        "curl/8.0",
        "caf\u00e9",
        "x\u263a",
        "2026-03-14",
        "2026-13-45T00:00:00",
        "1.2.3.4:80",
        "a b",
        "0.25",
        "200",
        "null",
        "true",
    ],
    "int": [0, 200, 404, -1, 512, 12345678901234567, 123456789012345678901, 1773526872],
    "float": [0.5, 0.25, 1.0, -0.0, 1e20, 1.5e-7, 0.1, 12.0, 3.14159],
    "quoted_number": ["200", "0.25", "512", "-", "", "1e3", "0"],
    "word": [True, False, None],
    "iso": ["2026-03-14T23:21:12+01:00", "2026-03-14", "2026-03-14T22:21:12Z", "2026-02-30T00:00:00"],
}
_ODD_VALUES: list[Any] = [
    'a"b',
    "a\\b",
    "tab\there",
    "\u00e9",
    "\U0001f600",
    {"a": 1},
    [1, "x"],
    [],
    {},
    None,
    True,
    7,
    2.5,
    "",
    "2026-03-14T23:21:12+01:00",
]
# raw tokens no json.dumps writes: bare numbers and words in other spellings, whitespace, invalid JSON
_RAW_TOKENS = [
    b"-0",
    b"1E5",
    b"2e-3",
    b"01",
    b"1.",
    b" 7",
    b"7 ",
    b"NaN",
    b"Infinity",
    b"tru",
    b"nul",
    b'"\\u00e9"',
    b'"\\/"',
    b'"\\ud800"',
    b"[1,2]",
    b'{"k":[null,1]}',
    b"1" * 25,
]
_TEMPLATE_COLUMNS = [
    "ip",
    "user",
    "status",
    "bytes",
    "request_time",
    "user_agent",
    "host",
    "referrer",
    "request",
    "when",
    "upstream_status",
]


@st.composite
def jsonl_writer_cases(draw: Draw) -> tuple[dict[str, str], bytes, int]:
    """A key map and a chunk of one writer's lines: keys in one order and values of one kind each,
    and lines that differ (:func:`_odd_line`)."""
    nkeys = draw(st.integers(1, 7))
    keys = ["time", *(f"k{n}" for n in range(nkeys - 1))]
    kinds = {"time": draw(st.sampled_from(["time", "time", "epoch", "iso"]))}
    kinds |= {k: draw(st.sampled_from(sorted(_WRITER_VALUES))) for k in keys[1:]}
    pools = {
        k: draw(st.lists(st.sampled_from(_WRITER_VALUES[kinds[k]]), min_size=1, max_size=4)) for k in keys
    }
    columns = draw(st.lists(st.sampled_from(_TEMPLATE_COLUMNS), unique=True, max_size=len(keys) + 1))
    targets = [*keys[1:] * 4, "absent", "o.k0", "k0[0]"]  # a nested path: Arrow's read
    mapping = {"ts": "time", **{c: draw(st.sampled_from(targets)) for c in columns}}
    order = draw(st.permutations(keys))
    sep = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    odd = draw(st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.3]))
    lines = []
    for _ in range(draw(st.integers(1, 25))):
        record = {k: draw(st.sampled_from(pools[k])) for k in order}
        if draw(st.floats(0, 1)) < odd:
            lines.append(_odd_line(draw, record, sep))
        else:
            lines.append(_json_line(record, {}, sep, True) + b"\n")
    max_line = draw(st.sampled_from([1 << 16, 1 << 16, 120]))
    return mapping, b"".join(lines), max_line


_ANY_VALUE = [v for values in _WRITER_VALUES.values() for v in values]


def _odd_line(draw: Draw, record: dict[str, Any], sep: tuple[str, str]) -> bytes:
    """A line of the writer's that differs: another key order, a key missing or added, a value of
    another kind (escapes, unicode, nested), a raw token, other separators or spaces, junk, CRLF."""
    how = draw(st.sampled_from(["order", "drop", "add", "value", "raw", "sep", "junk", "crlf", "space"]))
    key = draw(st.sampled_from(list(record)))
    raw: dict[str, bytes] = {}
    if how == "order":
        record = dict(draw(st.permutations(list(record.items()))))
    elif how == "drop":
        del record[key]
    elif how == "add":
        record["extra"] = draw(st.sampled_from(_ODD_VALUES))
    elif how == "value":
        record[key] = draw(st.sampled_from(_ODD_VALUES + _ANY_VALUE))
    elif how == "raw":
        raw[key] = draw(st.sampled_from(_RAW_TOKENS))
    elif how == "sep":
        sep = (", ", ": ") if sep == (",", ":") else (",", ":")
    line = _json_line(record, raw, sep, draw(st.booleans()))
    if how == "junk":
        line = draw(st.sampled_from([junk(draw, line), line.replace(b'"', b"\x80", 1), b"{" + line]))
    elif how == "space":
        pos = draw(st.integers(1, len(line) - 1))
        line = line[:pos] + b" " + line[pos:]
    return line + (b"\r\n" if how == "crlf" else b"\n")


def _json_line(
    record: dict[str, Any], raw: dict[str, bytes], sep: tuple[str, str], ascii_only: bool
) -> bytes:
    parts = [
        json.dumps(k).encode()
        + sep[1].encode()
        + (raw[k] if k in raw else json.dumps(v, ensure_ascii=ascii_only).encode())
        for k, v in record.items()
    ]
    return b"{" + sep[0].encode().join(parts) + b"}"


def _assert_same_reads(quick: Any, arrow: Any, data: bytes) -> None:
    """A quick read's result is the Arrow read's: rows, values, types, rejects with their reasons and
    text, partitions, absent keys."""
    from pipeline.stages.parse import rejects_batch

    assert quick.batch.schema == arrow.batch.schema, (quick.batch.schema, arrow.batch.schema)
    assert quick.batch.to_pylist() == arrow.batch.to_pylist(), data
    assert quick.batch.equals(arrow.batch), data
    assert rejects_batch(quick.rejects).to_pylist() == rejects_batch(arrow.rejects).to_pylist(), data
    assert list(quick.rows) == list(arrow.rows), data
    assert quick.partitions == arrow.partitions, data
    assert quick.absent == arrow.absent, data


TEMPLATE_TAKEN = [0]  # chunks the template read, of the examples run (the property must exercise it)


@given(case=jsonl_writer_cases(), numpy_split=st.booleans(), nested=st.booleans())
def jsonl_template_property(case: tuple[dict[str, str], bytes, int], numpy_split: bool, nested: bool) -> None:
    """A chunk read with the template where it takes the chunk gives what Arrow's read gives: rows,
    values, types, rejects with their reasons and text, absent keys; with the compiled split and the
    numpy one; with the compiled read of any key order first (``nested``: :mod:`pipeline.formats.
    jsonl_nested`, which takes a chunk before the template where the loops are loaded) or not."""
    from pipeline.formats import jsonl, jsonl_nested, jsonl_template
    from pipeline.formats.base import finish

    mapping, data, max_line = case
    plan = JsonPlan.compile(mapping)
    quick_read, nested_read, loaded = jsonl_template.read, jsonl_nested.read, compiled.loaded
    took = []

    def spy(*args: Any) -> Any:
        took.append(quick_read(*args))
        return took[-1]

    try:
        if numpy_split:
            compiled.loaded = lambda: False
        if not nested:
            jsonl_nested.read = lambda *args: None
        jsonl_template.read = spy  # type: ignore[assignment]
        quick = finish(jsonl.scan(plan, data, FIRST_LINE, max_line, 4096))
        jsonl_template.read = jsonl_nested.read = lambda *args: None  # type: ignore[assignment]
        arrow = finish(jsonl.scan(plan, data, FIRST_LINE, max_line, 4096))
    finally:
        jsonl_template.read, jsonl_nested.read, compiled.loaded = quick_read, nested_read, loaded
    TEMPLATE_TAKEN[0] += any(t is not None for t in took)
    _assert_same_reads(quick, arrow, data)


# --- jsonl: the compiled read of nested key paths against Arrow's -----------------------------------------

_HEADERS = ["User-Agent", "Referer", "Accept", "X-Id"]
# a writer's values, and values that need a JSON escape, and a key whose value changes kind (ISO times
# and a number: Arrow's reader stops at the number, and types the times before it as timestamps)
_NESTED_VALUES = _WRITER_VALUES | {
    "escaped": ['a"b', "a\\b", "caf\u00e9", "\u263a", "x/y", "\u00e9t\u00e9"],
    "mixed": ["2026-03-14T22:21:12Z", 7, "2026-03-14T23:21:12+01:00"],
}
_NESTED_TARGETS = [
    "o.a",
    "o.b",
    'o.h["User-Agent"][0]',
    "o.h.Referer[0]",
    "o.h.Accept[1]",
    "o.a.deeper",  # a step into a value that is not an object: null
    "lst[0]",
    "lst[2]",
    "k0",
    'o["b"]',
    "o.missing",
]


@st.composite
def jsonl_nested_cases(draw: Draw) -> tuple[dict[str, str], bytes, int]:
    """A key map of nested paths and a chunk of one writer's nested lines: an object ``o`` with scalar
    keys and a map of header lists (a subset in any order, as Caddy writes them), a list, a top-level
    key; and lines that differ (:func:`_nested_odd`)."""
    kinds = {k: draw(st.sampled_from(sorted(_NESTED_VALUES))) for k in ("a", "b", "k0", "lst", "hdr")}
    pools = {
        k: draw(st.lists(st.sampled_from(_NESTED_VALUES[v]), min_size=1, max_size=4))
        for k, v in kinds.items()
    }
    time_kind = draw(st.sampled_from(["time", "epoch", "iso"]))
    time_pool = draw(st.lists(st.sampled_from(_WRITER_VALUES[time_kind]), min_size=1, max_size=3))
    columns = draw(st.lists(st.sampled_from(_TEMPLATE_COLUMNS), unique=True, min_size=1, max_size=6))
    mapping = {"ts": "time", **{c: draw(st.sampled_from(_NESTED_TARGETS)) for c in columns}}
    odd = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))
    lines = []
    for _ in range(draw(st.integers(1, 25))):
        headers = {h: [draw(st.sampled_from(pools["hdr"])) for _ in range(draw(st.integers(0, 2)))]
                   for h in draw(st.lists(st.sampled_from(_HEADERS), unique=True))}  # fmt: skip
        inner = {"a": draw(st.sampled_from(pools["a"])), "h": headers, "b": draw(st.sampled_from(pools["b"]))}
        record: dict[str, Any] = {
            "time": draw(st.sampled_from(time_pool)),
            "o": dict(draw(st.permutations(list(inner.items())))),
            "lst": [draw(st.sampled_from(pools["lst"])) for _ in range(draw(st.integers(0, 3)))],
            "k0": draw(st.sampled_from(pools["k0"])),
        }
        for key in draw(st.lists(st.sampled_from(["lst", "k0"]), unique=True, max_size=1)):
            del record[key]  # a key absent from some lines
        if draw(st.floats(0, 1)) < odd:
            lines.append(_nested_odd(draw, record))
        else:
            lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())).encode() + b"\n")
    max_line = draw(st.sampled_from([1 << 16, 1 << 16, 200]))
    return mapping, b"".join(lines), max_line


def _nested_odd(draw: Draw, record: dict[str, Any]) -> bytes:
    """A line that differs: a key twice (nested too), a value of another kind (a list of null first,
    an object where a string was), an escape, a number with an exponent or past int64, a dotted key at
    the top, spaces, malformed JSON, junk."""
    how = draw(
        st.sampled_from(["twice", "inner_twice", "kind", "raw", "dotted", "space", "junk", "order", "null"])
    )
    inner = record["o"]
    if how == "kind":
        where = draw(st.sampled_from(["o.a", "o.b", "o", "k0", "lst", "o.h"]))
        value = draw(st.sampled_from([*_ODD_VALUES, [None, 1], {"x": [None]}, "a\\u0041"]))
        if "." in where:
            inner[where[2:]] = value
        else:
            record[where] = value
    elif how == "dotted":
        record[draw(st.sampled_from(["o.a", "o.b"]))] = draw(st.sampled_from(_ANY_VALUE))
    elif how == "null":
        inner[draw(st.sampled_from(["a", "b", "h"]))] = None
    elif how == "order":
        record = dict(draw(st.permutations(list(record.items()))))
    line = json.dumps(record, ensure_ascii=draw(st.booleans())).encode()
    if how == "twice":
        line = line[:-1] + b', "k0": 1}'
    elif how == "inner_twice":
        line = line.replace(b'"o": {', b'"o": {"a": 1, ', 1)
    elif how == "raw":
        token = draw(st.sampled_from(_RAW_TOKENS))
        line = line.replace(b'"o": {', b'"o": {"a": ' + token + b", ", 1)
    elif how == "space":
        line = line.replace(b": ", b" :  ", draw(st.integers(1, 3)))
    elif how == "junk":
        line = draw(st.sampled_from([junk(draw, line), line[: len(line) // 2], line + b"}"]))
    return line + b"\n"


NESTED_TAKEN = [0]  # chunks the compiled read took, of the examples run (the property must exercise it)


@given(case=jsonl_nested_cases())
def jsonl_nested_property(case: tuple[dict[str, str], bytes, int]) -> None:
    """A chunk of nested lines read by the compiled read where it takes the chunk gives what Arrow's
    read gives: rows, values, types, rejects with their reasons and text, absent keys."""
    from pipeline.formats import jsonl, jsonl_nested
    from pipeline.formats.base import finish

    mapping, data, max_line = case
    plan = JsonPlan.compile(mapping)
    nested_read = jsonl_nested.read
    took = []

    def spy(*args: Any) -> Any:
        took.append(nested_read(*args))
        return took[-1]

    try:
        jsonl_nested.read = spy  # type: ignore[assignment]
        quick = finish(jsonl.scan(plan, data, FIRST_LINE, max_line, 4096))
        jsonl_nested.read = lambda *args: None
        arrow = finish(jsonl.scan(plan, data, FIRST_LINE, max_line, 4096))
    finally:
        jsonl_nested.read = nested_read
    NESTED_TAKEN[0] += any(t is not None for t in took)
    _assert_same_reads(quick, arrow, data)


# --- the built-in JSON access logs ----------------------------------------------------------------------


@given(data=st.data())
def json_servers_property(data: st.DataObject) -> None:
    """Caddy's and Traefik's JSON lines (every field's variants, tests.test_json_servers.make), with
    junk, lines of another logger and keys of another type among them, against the plain-Python
    reference."""
    import random

    from tests.test_json_servers import make, parsed, reference_or_reject

    name = data.draw(st.sampled_from(sorted(JSON_SERVERS)))
    rng = random.Random(data.draw(st.integers(0, 1 << 30)))
    lines = []
    for _ in range(data.draw(st.integers(1, 12))):
        good = make(name, rng)
        lines.append(good if data.draw(st.integers(0, 2)) else _json_junk(data.draw, good))
    rows, rejected = parsed(name, lines)
    want, want_rejected = reference_or_reject(name, lines)
    assert rejected == want_rejected, (rejected, want_rejected, lines)
    assert len(rows) == len(want), lines
    for got, expected in zip(rows, want, strict=True):
        for column, value in got.items():
            if isinstance(value, float) and expected[column] is not None:
                assert abs(value - expected[column]) <= 1e-12 * abs(expected[column]), (column, lines)
            else:
                assert value == expected[column], (column, got, expected, lines)


def _json_junk(draw: Draw, good: bytes) -> bytes:
    """A line that is not a good one: cut, bytes inserted, another line, or a value of another type."""
    kind = draw(st.sampled_from(["junk", "type", "drop"]))
    if kind == "junk":
        return junk(draw, good)
    record = json.loads(good)
    key = draw(st.sampled_from(sorted(record)))
    if kind == "drop":
        del record[key]
    else:
        record[key] = draw(st.sampled_from([None, 7, 1.5, "x", "", [], ["y"], {}, {"a": [1]}, True]))
    return json.dumps(record).encode()


# --- the child's entry point ----------------------------------------------------------------------------

PROPERTIES: dict[str, Callable[..., None]] = {
    "nginx": _format_property(nginx_formats(), "nginx"),
    "apache": _format_property(apache_formats(), "apache"),
    "combined": combined_property,
    "json": _format_property(json_templates(), "nginx"),
    "jsonl": jsonl_property,
    "jsonl_template": jsonl_template_property,
    "jsonl_nested": jsonl_nested_property,
    "servers": servers_property,
    "w3c": w3c_property,
    "json_servers": json_servers_property,
    "split": split_property,
    "typing": typing_property,
    "variants": variants_property,
    "kinds": kinds_property,
    "w3c_compiled": w3c_compiled_property,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per property")
    parser.add_argument("--seed", type=int, default=None, help="a fixed seed (default: derandomized)")
    parser.add_argument("--only", choices=sorted(PROPERTIES), action="append", help="these properties")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    faulthandler.enable()  # a native crash prints where it happened before the process dies
    failed = []
    for name in args.only or sorted(PROPERTIES):
        prop = settings(
            max_examples=args.examples,
            deadline=None,
            database=None,
            derandomize=args.seed is None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )(PROPERTIES[name])
        if args.seed is not None:
            prop = seed(args.seed)(prop)
        try:
            prop()
        except Exception:
            log.exception("property %s failed", name)
            failed.append(name)
        else:
            log.info("property %s: %d examples passed", name, args.examples)
        taken = {"jsonl_template": TEMPLATE_TAKEN, "jsonl_nested": NESTED_TAKEN}.get(name)
        if taken is not None:
            log.info("property %s: the quick read took %d chunks", name, taken[0])
            if not taken[0]:
                log.error("property %s: the quick read took no chunk", name)
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
