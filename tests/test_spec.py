"""Format strings compiled into plans (pipeline/formats/spec.py): columns, reference regex, errors."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.formats.spec import (
    APACHE_DIRECTIVES,
    BUILTINS,
    KINDS,
    NGINX_VARIABLES,
    Field,
    FormatPlan,
    FormatSpecError,
    builtin,
    catalogue_markdown,
    compile_apache,
    compile_nginx,
    fixed_width,
    plan_for,
)

GEN = Path("/work/shared/bench/gen_access_logs.py")
if not GEN.exists():  # CI clones the project beside shared/
    GEN = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_access_logs.py"

S, TS = pa.string(), pa.timestamp("us", tz="UTC")
COMBINED_COLUMNS = [
    ("ip", S),
    ("user", S),
    ("ts", TS),
    ("method", S),
    ("path", S),
    ("query", S),
    ("protocol", S),
    ("request", S),
    ("status", pa.int16()),
    ("bytes", pa.int64()),
    ("referrer", S),
    ("user_agent", S),
    ("is_bot", pa.bool_()),
]
EXPECTED_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "combined": COMBINED_COLUMNS,
    "common": COMBINED_COLUMNS[:10],
    "vhost_combined": [
        ("server_name", S),
        ("server_port", pa.int64()),
        *COMBINED_COLUMNS[:9],
        ("bytes_sent", pa.int64()),
        *COMBINED_COLUMNS[10:],
    ],
    "main": [*COMBINED_COLUMNS, ("http_x_forwarded_for", S)],
    "upstream_time": [
        *COMBINED_COLUMNS,
        ("request_time", pa.float64()),
        ("upstream_connect_time", pa.float64()),
        ("upstream_header_time", pa.float64()),
        ("upstream_response_time", pa.float64()),
    ],
}
APACHE_COMBINED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"'
NGINX_COMBINED = BUILTINS["combined"][1]
AGENT = r"Mozilla/5.0 (X11; Linux x86_64) \"quoted\" caf\xc3\xa9"
UA_BYTES = b'Mozilla/5.0 (X11; Linux x86_64) \\"quoted\\" caf\xc3\xa9'


def generate(tmp_path: Path, fmt: str) -> list[bytes]:
    """Lines of the yardstick generator (bench/gen_access_logs.py), no deliberately bad ones."""
    if not GEN.exists():
        pytest.skip("the yardstick generator (shared/bench) is not beside this checkout")
    cmd = [sys.executable, str(GEN), str(tmp_path), "--files", "1", "--lines", "200", "--bad", "0"]
    subprocess.run([*cmd, "--format", fmt], check=True, timeout=60, capture_output=True)
    lines = (tmp_path / "access-000.log").read_bytes().splitlines()
    assert len(lines) == 200
    return lines


def generator_log_format(name: str) -> str:
    """A log_format directive as the generator's docstring states it, from 'log_format' to ';'."""
    if not GEN.exists():
        pytest.skip("the yardstick generator (shared/bench) is not beside this checkout")
    m = re.search(rf"log_format {name} .*?';", GEN.read_text(), re.DOTALL)
    assert m is not None, f"no log_format {name} in {GEN}"
    return m.group()


def first_occurrence(plan: FormatPlan, line: bytes) -> list[bytes] | None:
    """The split the engine's fast path makes: each field ends where the next literal first occurs (a
    time that holds that literal's first byte ends by its width)."""
    if not line.startswith(plan.literals[0]):
        return None
    pos, out = len(plan.literals[0]), []
    for f, literal in zip(plan.fields, plan.literals[1:], strict=True):
        width = fixed_width(f.kind, literal)
        if width is not None:
            end = pos + width if line.startswith(literal, pos + width) else -1
        else:
            end = line.find(literal, pos) if literal else len(line)
        if end < 0:
            return None
        out.append(line[pos:end])
        pos = end + len(literal)
    return out if pos == len(line) else None


def same_shape(a: FormatPlan, b: FormatPlan) -> None:
    assert (a.literals, a.fields, a.escape) == (b.literals, b.fields, b.escape)


# --- built-ins ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_COLUMNS))
def test_builtin_columns(name: str) -> None:
    plan = builtin(name)
    assert plan.name == name
    assert plan.columns() == EXPECTED_COLUMNS[name]
    assert plan.schema() == pa.schema(EXPECTED_COLUMNS[name])
    assert plan.dialect == BUILTINS[name][0]
    assert plan.source == BUILTINS[name][1]


def test_every_builtin_is_tested() -> None:
    assert set(BUILTINS) == set(EXPECTED_COLUMNS)


def test_apache_combined_is_nginx_combined_with_the_ident_skipped() -> None:
    apache, nginx = compile_apache(APACHE_COMBINED), builtin("combined")
    assert apache.columns() == nginx.columns() == COMBINED_COLUMNS
    assert [f.kind for f in apache.fields if f.kind != "skip"] == [f.kind for f in nginx.fields]
    assert [f.var for f in apache.fields if f.kind == "skip"] == ["%l"]
    # %t writes its own brackets: they are literals, so both read the same time text
    assert apache.literals == (b"", b" ", b" ", b" [", b'] "', b'" ', b" ", b' "', b'" "', b'"')


@pytest.mark.parametrize(
    ("name", "line", "groups"),
    [
        (
            "combined",
            b'203.0.113.9 - alice [01/Nov/2026:10:00:00 +0000] "GET /s?q=a%20b HTTP/1.1" 200 5120 '
            b'"https://example.com/" "' + UA_BYTES + b'"',
            [
                b"203.0.113.9",
                b"alice",
                b"01/Nov/2026:10:00:00 +0000",
                b"GET /s?q=a%20b HTTP/1.1",
                b"200",
                b"5120",
                b"https://example.com/",
                UA_BYTES,
            ],
        ),
        (
            "combined",  # nginx's request "-" for a 400
            b'10.0.0.1 - - [01/Nov/2026:10:00:00 -0700] "-" 400 0 "-" "-"',
            [b"10.0.0.1", b"-", b"01/Nov/2026:10:00:00 -0700", b"-", b"400", b"0", b"-", b"-"],
        ),
        (
            "common",
            b'192.0.2.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326',
            [
                b"192.0.2.1",
                b"-",
                b"frank",
                b"10/Oct/2000:13:55:36 -0700",
                b"GET /apache_pb.gif HTTP/1.0",
                b"200",
                b"2326",
            ],
        ),
        (
            "vhost_combined",
            b'www.example.com:443 192.0.2.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 304 0 "-" '
            b'"curl/8.5.0"',
            [
                b"www.example.com",
                b"443",
                b"192.0.2.1",
                b"-",
                b"-",
                b"10/Oct/2000:13:55:36 +0000",
                b"GET / HTTP/1.1",
                b"304",
                b"0",
                b"-",
                b"curl/8.5.0",
            ],
        ),
        (
            "main",
            b'10.1.2.3 - - [01/Nov/2026:10:00:00 +0000] "POST /api HTTP/2.0" 201 17 "-" "' + UA_BYTES + b'" '
            b'"198.51.100.7, 10.0.0.1"',
            [
                b"10.1.2.3",
                b"-",
                b"01/Nov/2026:10:00:00 +0000",
                b"POST /api HTTP/2.0",
                b"201",
                b"17",
                b"-",
                UA_BYTES,
                b"198.51.100.7, 10.0.0.1",
            ],
        ),
        (
            "upstream_time",
            b'10.1.2.3 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 502 0 "-" "curl/8.5.0" rt=0.123 '
            b'uct="0.001, 0.002" uht="0.050 : 0.060" urt="-"',
            [
                b"10.1.2.3",
                b"-",
                b"01/Nov/2026:10:00:00 +0000",
                b"GET / HTTP/1.1",
                b"502",
                b"0",
                b"-",
                b"curl/8.5.0",
                b"0.123",
                b"0.001, 0.002",
                b"0.050 : 0.060",
                b"-",
            ],
        ),
    ],
    ids=["combined", "combined-400", "common", "vhost_combined", "main", "upstream_time"],
)
def test_builtin_reference_regex_on_a_sample_line(name: str, line: bytes, groups: list[bytes]) -> None:
    plan = builtin(name)
    regex = plan.reference_regex()
    assert regex.groups == len(plan.fields)
    m = regex.fullmatch(line)
    assert m is not None
    assert list(m.groups()) == groups
    assert regex.fullmatch(line.replace(b" [", b" (", 1)) is None  # a literal that is not there


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"garbage line without structure",
        b'10.0.0.1 - - [01/Nov/2026:00:00:01 +0000] "GET /truncated',
        b'10.0.0.2 - - [01/Nov/2026:00:00:02 +0000] "GET / HTTP/1.1" abc 12 "-" "-"',
        b'10.0.0.2 - - [01/Nov/2026:00:00:02 +0000] "GET / HTTP/1.1" 2000 12 "-" "-"',
        b'10.0.0.2 - - [01/Nov/2026:00:00:02 +0000] "GET / HTTP/1.1" 200 12 "-" "a"b"',
    ],
)
def test_combined_reference_regex_rejects_malformed_lines(line: bytes) -> None:
    assert builtin("combined").reference_regex().fullmatch(line) is None


def test_upstream_time_is_the_generators_format_verbatim() -> None:
    pasted = generator_log_format("upstream_time")
    same_shape(compile_nginx(pasted), builtin("upstream_time"))


def test_upstream_generator_lines_all_match(tmp_path: Path) -> None:
    plan = builtin("upstream_time")
    regex = plan.reference_regex()
    times = re.compile(rb"-|\d+\.\d{3}(?:, \d+\.\d{3})*")
    for line in generate(tmp_path, "upstream"):
        m = regex.fullmatch(line)
        assert m is not None, line
        assert m.groups() == tuple(first_occurrence(plan, line) or ())
        rt, uct, uht, urt = m.groups()[-4:]
        assert re.fullmatch(rb"\d+\.\d{3}", rt), line
        assert all(times.fullmatch(v) for v in (uct, uht, urt)), line


@pytest.mark.parametrize(
    "plan", [builtin("combined"), compile_apache(APACHE_COMBINED)], ids=["nginx", "apache"]
)
def test_combined_generator_lines_all_match(tmp_path: Path, plan: FormatPlan) -> None:
    regex = plan.reference_regex()
    for line in generate(tmp_path, "combined"):
        m = regex.fullmatch(line)
        assert m is not None, line
        assert m.group(len(plan.fields)) == line.rsplit(b' "', 1)[1][:-1]  # the agent


def test_json_generator_lines_match_the_pasted_log_format(tmp_path: Path) -> None:
    plan = plan_for({"nginx": generator_log_format("json_combined")})
    assert plan.escape == "json"
    assert [c for c, _ in plan.columns()] == [
        *("ts", "ip", "user", "method", "path", "query", "protocol", "request", "status", "bytes"),
        *("request_time", "referrer", "user_agent", "is_bot"),
    ]
    assert all(f.quoted for f in plan.fields)
    regex = plan.reference_regex()
    for line in generate(tmp_path, "json"):
        m = regex.fullmatch(line)
        assert m is not None, line
        assert m.group(5) == b"".join(re.findall(rb'"status":"(\d+)"', line))


# --- the reference regex ---------------------------------------------------------------------------

AGREEMENT_PLANS = {
    **{name: builtin(name) for name in BUILTINS},
    "apache_combined": compile_apache(APACHE_COMBINED),
    "json": compile_nginx('escape=json {"t":"$time_iso8601","s":$status,"rt":$request_time,"u":"$uri"}'),
    "multi": compile_nginx("$time_local -- $host - -$request_length:=$upstream_addr - -"),
    "none": compile_nginx('escape=none [$time_local] "$http_user_agent" "$uri" $status'),
}


@pytest.mark.parametrize("name", sorted(AGREEMENT_PLANS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reference_regex_agrees_with_the_first_occurrence_split(name: str, data: st.DataObject) -> None:
    plan = AGREEMENT_PLANS[name]
    # values made of the literals themselves and their characters, so that splits are often ambiguous
    pieces = st.sampled_from([*' -[]":=,a0/', *(lit.decode() for lit in plan.literals if lit)])
    values = [data.draw(st.lists(pieces, max_size=6).map("".join)).encode() for _ in plan.fields]
    line = plan.literals[0] + b"".join(v + lit for v, lit in zip(values, plan.literals[1:], strict=True))
    m = plan.reference_regex().fullmatch(line)
    split = first_occurrence(plan, line)
    # an unquoted $upstream_* value is a list ("a, b", "a : b"): the regex reads the list whole, where
    # the first-occurrence split would stop at its first space (the engine sends such lines its way)
    lists = [k for k, f in enumerate(plan.fields) if f.multi and not f.quoted]
    if m is not None:
        if list(m.groups()) != split:
            assert lists and all(re.fullmatch(LIST, m.group(k + 1)) for k in lists)
    elif split is not None:
        # the regex may only refuse what the engine rejects anyway: a status that is not three digits,
        # a quote inside a quoted field (escaped by the server, so never in a real line), a list that
        # is not one
        assert any(
            (f.kind == "status" and not re.fullmatch(rb"\d{3}", v))
            or (f.quoted and plan.escape != "none" and b'"' in v)
            or (k in lists and not re.fullmatch(LIST, v))
            for k, (f, v) in enumerate(zip(plan.fields, split, strict=True))
        )


LIST = rb"[^ ,]*(?:(?:, | : )[^ ,]*)*"


def test_reference_regex_is_linear_on_garbage_lines() -> None:
    # with a (.*?) per field, a failing line of n spaces costs about n**9 steps here
    plan = compile_nginx(" ".join(["$time_local", *(f"$v{k}" for k in range(9))]) + " end")
    started = time.perf_counter()
    assert plan.reference_regex().fullmatch(b" " * 3000) is None
    assert time.perf_counter() - started < 5


def test_reference_regex_quoted_fields_take_escapes() -> None:
    plan = compile_apache(APACHE_COMBINED)
    line = b'1.2.3.4 - - [01/Nov/2026:10:00:00 +0000] "GET /a\\"b HTTP/1.1" 200 - "-" "back\\\\slash\\\\"'
    m = plan.reference_regex().fullmatch(line)
    assert m is not None
    assert (m.group(5), m.group(9)) == (b'GET /a\\"b HTTP/1.1', b"back\\\\slash\\\\")


def test_escape_none_quoted_fields_end_at_the_first_occurrence() -> None:
    plan = AGREEMENT_PLANS["none"]
    m = plan.reference_regex().fullmatch(b'[01/Nov/2026:10:00:00 +0000] "a"b\\" "/x" 200')
    assert m is not None
    assert m.group(2) == b'a"b\\'


# --- reading the format string ---------------------------------------------------------------------

NGINX_FORMS = [
    NGINX_COMBINED,
    f"'{NGINX_COMBINED}'",
    f"  '{NGINX_COMBINED}';  ",
    f"log_format combined '{NGINX_COMBINED}';",
    "'$remote_addr - $remote_user [$time_local] '\n    '\"$request\" $status $body_bytes_sent '\n"
    '    \'"$http_referer" "$http_user_agent"\'',
    "'$remote_addr - $remote_user [$time_local] ' '\"$request\" $status $body_bytes_sent '"
    ' # a comment between the pieces\n \'"$http_referer" "$http_user_agent"\';',
    '"$remote_addr - $remote_user [$time_local] \\"$request\\" $status $body_bytes_sent '
    '\\"$http_referer\\" \\"$http_user_agent\\""',
    '"$remote_addr - $remote_user [$time_local] \\"$request\\" "\n'
    '"$status $body_bytes_sent \\"$http_referer\\" \\"$http_user_agent\\""',
    '${remote_addr} - ${remote_user} [${time_local}] "${request}" ${status} ${body_bytes_sent} '
    '"${http_referer}" "${http_user_agent}"',
    '$Remote_Addr - $remote_user [$TIME_LOCAL] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"',
]


@pytest.mark.parametrize("fmt", NGINX_FORMS, ids=range(len(NGINX_FORMS)))
def test_nginx_quoting_and_concatenation_forms(fmt: str) -> None:
    plan = compile_nginx(fmt)
    reference = builtin("combined")
    assert (plan.literals, plan.escape) == (reference.literals, "default")
    assert [(f.kind, f.column, f.quoted) for f in plan.fields] == [
        (f.kind, f.column, f.quoted) for f in reference.fields
    ]
    assert plan.source == fmt
    assert plan.name == "nginx"


def test_nginx_braces_keep_the_variable_as_written() -> None:
    plan = compile_nginx("${time_local}|${req_id}x$status")
    assert [f.var for f in plan.fields] == ["${time_local}", "${req_id}", "$status"]
    assert plan.literals == (b"", b"|", b"x", b"")
    assert [f.column for f in plan.fields] == ["ts", "req_id", "status"]


@pytest.mark.parametrize(
    ("fmt", "literals", "quoted"),
    [
        # a bare string that starts with a quote is the format's own text, not nginx quoting
        ('"$request" $status [$time_local]', (b'"', b'" ', b" [", b"]"), [True, False, False]),
        ('"$request" "$time_local"', (b'"', b'" "', b'"'), [True, True]),
        # one quoted string, or pieces on their own lines, is nginx quoting
        ('"$request $time_local"', (b"", b" ", b""), [False, False]),
        ('"[$time_local] "\n"$status"', (b"[", b"] ", b""), [False, False]),
        # nginx's escapes apply in bare strings too
        ("$time_local\\t\\'$status\\'", (b"", b"\t'", b"'"), [False, False]),
    ],
)
def test_nginx_bare_or_quoted(fmt: str, literals: tuple[bytes, ...], quoted: list[bool]) -> None:
    plan = compile_nginx(fmt)
    assert plan.literals == literals
    assert [f.quoted for f in plan.fields] == quoted


@pytest.mark.parametrize(
    ("fmt", "escape"),
    [
        ('escape=json \'{"time":"$time_iso8601","ua":"$http_user_agent"}\'', "json"),
        ('escape=json {"time":"$time_iso8601","ua":"$http_user_agent"}', "json"),
        ('log_format j escape=json\n  \'{"time":"$time_iso8601",\'\n  \'"ua":"$http_user_agent"}\';', "json"),
        ('escape=default \'{"time":"$time_iso8601","ua":"$http_user_agent"}\'', "default"),
        ('escape=none \'{"time":"$time_iso8601","ua":"$http_user_agent"}\'', "none"),
        ('{"time":"$time_iso8601","ua":"$http_user_agent"}', "default"),
    ],
)
def test_nginx_escape_prefix(fmt: str, escape: str) -> None:
    plan = compile_nginx(fmt)
    assert plan.escape == escape
    assert plan.literals == (b'{"time":"', b'","ua":"', b'"}')
    assert [(f.kind, f.column, f.quoted) for f in plan.fields] == [
        ("time_iso8601", "ts", True),
        ("agent", "user_agent", True),
    ]


APACHE_FORMS = [
    APACHE_COMBINED,
    APACHE_COMBINED.replace('"', '\\"'),
    '"' + APACHE_COMBINED.replace('"', '\\"') + '"',
    'LogFormat "' + APACHE_COMBINED.replace('"', '\\"') + '" combined',
    "  '" + APACHE_COMBINED + "'  ",
]


@pytest.mark.parametrize("fmt", APACHE_FORMS, ids=range(len(APACHE_FORMS)))
def test_apache_quoting_forms(fmt: str) -> None:
    plan = compile_apache(fmt)
    same_shape(plan, compile_apache(APACHE_COMBINED))
    assert (plan.source, plan.name, plan.dialect) == (fmt, "apache", "apache")


@pytest.mark.parametrize(
    ("fmt", "literals"),
    [
        ("%t 100%% %>s", (b"[", b"] 100% ", b"")),
        ("%t\\t%>s\\\\", (b"[", b"]\t", b"\\")),
        ("%{[%d/%b/%Y:%T %z]}t %s", (b"[", b"] ", b"")),
        ("%{end:%d/%b/%Y:%H:%M:%S %z}t %s", (b"", b" ", b"")),
        ("%{%d/%b/%Y:%H:%M:%S %z (%%)}t %s", (b"", b" (%) ", b"")),
        ("%h%t", (b"", b"[", b"]")),
    ],
)
def test_apache_literal_text(fmt: str, literals: tuple[bytes, ...]) -> None:
    assert compile_apache(fmt).literals == literals


# --- the catalogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "column", "kind", "scale"),
    [
        ("$request_time", "request_time", "duration", 1.0),
        ("$upstream_connect_time", "upstream_connect_time", "duration", 1.0),
        ("$upstream_header_time", "upstream_header_time", "duration", 1.0),
        ("$upstream_response_time", "upstream_response_time", "duration", 1.0),
        ("$upstream_response_length", "upstream_response_length", "int", 1.0),
        ("$upstream_bytes_received", "upstream_bytes_received", "int", 1.0),
        ("$upstream_bytes_sent", "upstream_bytes_sent", "int", 1.0),
        ("$request_length", "request_length", "int", 1.0),
        ("$bytes_sent", "bytes_sent", "int", 1.0),
        ("$body_bytes_sent", "bytes", "int", 1.0),
        ("$content_length", "content_length", "int", 1.0),
        ("$connection", "connection", "int", 1.0),
        ("$connection_requests", "connection_requests", "int", 1.0),
        ("$pid", "pid", "int", 1.0),
        ("$server_port", "server_port", "int", 1.0),
        ("$remote_port", "remote_port", "int", 1.0),
        ("$gzip_ratio", "gzip_ratio", "float", 1.0),
        ("$status", "status", "status", 1.0),
        ("$upstream_status", "upstream_status", "string", 1.0),
        ("$upstream_addr", "upstream_addr", "string", 1.0),
        ("$remote_addr", "ip", "ip", 1.0),
        ("$remote_user", "user", "user", 1.0),
        ("$http_referer", "referrer", "string", 1.0),
        ("$http_user_agent", "user_agent", "agent", 1.0),
        ("$request", None, "request", 1.0),
        # custom and undocumented variables: strings named after the variable
        ("$req_id", "req_id", "string", 1.0),
        ("$proxy_upstream_name", "proxy_upstream_name", "string", 1.0),
        ("$http_x_forwarded_for", "http_x_forwarded_for", "string", 1.0),
        ("$host", "host", "string", 1.0),
        ("$Host", "host", "string", 1.0),
        ("$sent_http_content_type", "sent_http_content_type", "string", 1.0),
    ],
)
def test_nginx_variable(var: str, column: str | None, kind: str, scale: float) -> None:
    (field,) = compile_nginx(f"$time_local {var}").fields[1:]
    assert (field.var, field.column, field.kind, field.scale) == (var, column, kind, scale)


@pytest.mark.parametrize(("var", "scale"), [("$time_local", 1.0), ("$time_iso8601", 1.0), ("$msec", 1.0)])
def test_nginx_time_variables(var: str, scale: float) -> None:
    (field,) = compile_nginx(f"[{var}]").fields
    assert (field.column, field.kind, field.scale) == ("ts", NGINX_VARIABLES[var[1:]].kind, scale)


@pytest.mark.parametrize(
    ("var", "column", "kind", "scale"),
    [
        ("%D", "request_time", "duration", 1e-6),
        ("%T", "request_time", "duration", 1.0),
        ("%{s}T", "request_time", "duration", 1.0),
        ("%{ms}T", "request_time", "duration", 1e-3),
        ("%{us}T", "request_time", "duration", 1e-6),
        ("%v", "server_name", "string", 1.0),
        ("%V", "server_name", "string", 1.0),
        ("%p", "server_port", "int", 1.0),
        ("%{remote}p", "remote_port", "int", 1.0),
        ("%O", "bytes_sent", "int", 1.0),
        ("%I", "request_length", "int", 1.0),
        ("%{Referer}i", "referrer", "string", 1.0),
        ("%{User-Agent}i", "user_agent", "agent", 1.0),
        ("%{user-agent}i", "user_agent", "agent", 1.0),
        ("%{X-Foo}i", "http_x_foo", "string", 1.0),
        ("%{X-Forwarded-For}i", "http_x_forwarded_for", "string", 1.0),
        ("%h", "ip", "ip", 1.0),
        ("%a", "ip", "ip", 1.0),
        ("%{c}a", "ip", "ip", 1.0),
        ("%{c}h", "ip", "ip", 1.0),
        ("%>s", "status", "status", 1.0),
        ("%s", "status", "status", 1.0),
        ("%<s", "status", "status", 1.0),
        ("%b", "bytes", "int", 1.0),
        ("%B", "bytes", "int", 1.0),
        ("%r", None, "request", 1.0),
        ("%>r", None, "request", 1.0),
        ("%u", "user", "user", 1.0),
        ("%l", None, "skip", 1.0),
        ("%m", "request_method", "string", 1.0),
        ("%U", "uri", "string", 1.0),
        ("%q", "query_string", "string", 1.0),
        ("%H", "server_protocol", "string", 1.0),
        ("%A", "server_addr", "string", 1.0),
        ("%P", "pid", "int", 1.0),
        ("%k", "connection_requests", "int", 1.0),
        ("%X", "connection_status", "string", 1.0),
        ("%L", "request_id", "string", 1.0),
        ("%{UNIQUE_ID}e", "unique_id", "string", 1.0),
        ("%{SSL_PROTOCOL}x", "ssl_protocol", "string", 1.0),
        ("%{ratio}n", "note_ratio", "string", 1.0),
        ("%{Content-Type}o", "sent_http_content_type", "string", 1.0),
        ("%{session}C", "cookie_session", "string", 1.0),
        ("%400,501{User-agent}i", "user_agent", "agent", 1.0),
        ("%!200,304{Referer}i", "referrer", "string", 1.0),
        ("%{ignored}b", "bytes", "int", 1.0),
    ],
)
def test_apache_directive(var: str, column: str | None, kind: str, scale: float) -> None:
    (field,) = compile_apache(f"%t {var}").fields[1:]
    assert (field.var, field.column, field.kind, field.scale) == (var, column, kind, scale)


@pytest.mark.parametrize(
    ("var", "kind", "scale"),
    [
        ("%t", "time_local", 1.0),
        ("%{%d/%b/%Y:%H:%M:%S %z}t", "time_local", 1.0),
        ("%{%d/%b/%Y:%T %z}t", "time_local", 1.0),
        ("%{sec}t", "epoch", 1.0),
        ("%{msec}t", "epoch", 1e-3),
        ("%{usec}t", "epoch", 1e-6),
        ("%{begin:msec}t", "epoch", 1e-3),
        ("%{end:usec}t", "epoch", 1e-6),
    ],
)
def test_apache_time_directives(var: str, kind: str, scale: float) -> None:
    (field,) = compile_apache(f"{var} %h").fields[:1]
    assert (field.var, field.column, field.kind, field.scale) == (var, "ts", kind, scale)


@pytest.mark.parametrize("name", sorted(NGINX_VARIABLES))
def test_nginx_catalogue_is_what_compiles(name: str) -> None:
    entry = NGINX_VARIABLES[name]
    fmt = f"[${name}]" if entry.kind in ("time_local", "time_iso8601", "epoch") else f"$msec ${name}"
    field = compile_nginx(fmt).fields[-1]
    assert (field.kind, field.column, field.scale) == (entry.kind, entry.column, entry.scale)
    assert entry.kind in KINDS


@pytest.mark.parametrize("var", sorted(APACHE_DIRECTIVES))
def test_apache_catalogue_is_what_compiles(var: str) -> None:
    entry = APACHE_DIRECTIVES[var]
    fmt = f"[{var}]" if entry.kind in ("time_local", "time_iso8601", "epoch") else f"%{{msec}}t {var}"
    field = compile_apache(fmt).fields[-1]
    assert (field.kind, field.column, field.scale) == (entry.kind, entry.column, entry.scale)


def test_catalogue_markdown() -> None:
    table = catalogue_markdown()
    rows = table.strip().split("\n")
    assert rows[0].startswith("| Variable | Column | Kind | Arrow type |")
    # five cells each (a "|" inside a cell is escaped), only the notes may be empty
    cell = r"(?:[^|\\]|\\.)"
    assert all(re.fullmatch(rf"\|(?: {cell}+ \|){{4}} {cell}* \|", row) for row in rows), table
    assert len(rows) > 2 + len(NGINX_VARIABLES) + len(APACHE_DIRECTIVES)
    assert "| `$request_time` | `request_time` | duration | float64 (seconds) |" in table
    assert "| `%D` | `request_time` | duration | float64 (seconds) | microseconds, as seconds |" in table
    assert "| `%{User-Agent}i` | `user_agent`, `is_bot` (bool) | agent | string |" in table
    assert "| `$msec` | `ts` | epoch | timestamp[us, UTC] |" in table


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "var", "position"),
    [
        ("%h %Z %t", "%Z", 3),
        ("%t %>Q", "%>Q", 3),
        ("%t %{X-Foo}j", "%{X-Foo}j", 3),
        ('"%t %y"', "%y", 4),
        ('LogFormat "%t \\"%y\\""', "%y", 16),
        ("%t %{foo}p", "%{foo}p", 3),
        ("%t %{mins}T", "%{mins}T", 3),
    ],
)
def test_unknown_apache_directive(fmt: str, var: str, position: int) -> None:
    with pytest.raises(
        FormatSpecError, match=rf"apache format {re.escape(var)} at position {position}:"
    ) as e:
        compile_apache(fmt)
    assert (e.value.var, e.value.position, e.value.format_name) == (var, position, "apache")
    assert fmt[position] == "%"


@pytest.mark.parametrize(
    ("fmt", "first", "second", "position"),
    [
        ("$a$b [$time_local]", "$a", "$b", 2),
        ("[$time_local] ${a}${host}", "${a}", "${host}", 18),
        ("'[$time_local] $a' '$b'", "$a", "$b", 20),
    ],
)
def test_nginx_fields_without_text_between(fmt: str, first: str, second: str, position: int) -> None:
    with pytest.raises(FormatSpecError, match=re.escape(f"{second} at position {position}")) as e:
        compile_nginx(fmt)
    assert f"follows {first} (position " in str(e.value)
    assert e.value.position == position


def test_apache_fields_without_text_between() -> None:
    with pytest.raises(FormatSpecError, match=r"%u at position 5: follows %l \(position 3\)"):
        compile_apache("%h %l%u %t")


@pytest.mark.parametrize(
    ("fmt", "column", "var", "position"),
    [
        ("$remote_addr [$time_local] $remote_addr", "ip", "$remote_addr", 27),
        ("$time_local $msec", "ts", "$msec", 12),
        ("$time_local $request $method", "method", "$method", 21),
        ("$time_local $http_user_agent $is_bot", "is_bot", "$is_bot", 29),
        ("$time_local $host $HOST", "host", "$HOST", 18),
    ],
)
def test_nginx_duplicate_column(fmt: str, column: str, var: str, position: int) -> None:
    with pytest.raises(
        FormatSpecError, match=re.escape(f"{var} at position {position}: makes the column")
    ) as e:
        compile_nginx(fmt)
    assert repr(column) in str(e.value)


@pytest.mark.parametrize(("fmt", "var"), [("%h %a %t", "%a"), ("%t %D %T", "%T"), ("%v %V %t", "%V")])
def test_apache_duplicate_column(fmt: str, var: str) -> None:
    with pytest.raises(FormatSpecError, match=re.escape(var) + " at position"):
        compile_apache(fmt)


def test_skip_fields_may_repeat() -> None:
    assert [c for c, _ in compile_apache("%l %l %t").columns()] == ["ts"]


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("$time_local $", r"\$ at position 12: a \$ that does not start"),
        ("$time_local ${host", r"\$\{host at position 12: the closing \} is missing"),
        ("'$time_local $host", r"' at position 0: the string has no closing '"),
        ("escape=xml '$time_local'", r"escape=xml at position 0: escape must be one of"),
        ("'$time_local'; '$host'", r"; at position 13: text after the ';'"),
        ("$time_local\\n$host", r"\\n at position 11: a line break"),
        ("$host $remote_addr", r"no time variable"),
        ("just text", r"no variables"),
        ("$time_local $date", r"\$date at position 12: makes a column 'date'"),
    ],
)
def test_nginx_errors(fmt: str, message: str) -> None:
    with pytest.raises(FormatSpecError, match=message):
        compile_nginx(fmt)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%t %{%Y-%m-%dT%H:%M:%S%z}t", r"%\{%Y-%m-%dT%H:%M:%S%z\}t at position 3: .*without the colon"),
        ("%{%FT%T%z}t %h", r"%\{%FT%T%z\}t at position 0: this time pattern is not supported"),
        ("%{%d/%b/%Y}t %h", r"at position 0: this time pattern is not supported"),
        ("%{msec_frac}t %h", r"%\{msec_frac\}t at position 0"),
        ("%t %{X-Foo", r"%\{X-Foo at position 3: the closing \} is missing"),
        ("%t %", r"% at position 3: the directive has no letter"),
        ("%t %i", r"%i at position 3: needs a \{name\}"),
        ("%h %u", r"no time variable"),
    ],
)
def test_apache_errors(fmt: str, message: str) -> None:
    with pytest.raises(FormatSpecError, match=message):
        compile_apache(fmt)


def test_format_spec_error_is_a_value_error_that_pickles() -> None:
    with pytest.raises(ValueError, match="unknown or unsupported") as e:
        compile_apache("%t %Z")
    copy = pickle.loads(pickle.dumps(e.value))
    assert isinstance(copy, FormatSpecError)
    assert (str(copy), copy.var, copy.position) == (str(e.value), "%Z", 3)


# --- plan_for, builtin, the plan itself ------------------------------------------------------------


def test_unknown_builtin_lists_the_builtins() -> None:
    with pytest.raises(
        FormatSpecError, match="built-in formats: combined, common, main, upstream_time, vhost"
    ):
        builtin("combinded")


@pytest.mark.parametrize(
    ("spec", "dialect", "name"),
    [
        ("combined", "nginx", "combined"),
        ("common", "apache", "common"),
        ({"nginx": "$time_local $req_id"}, "nginx", "nginx"),
        ({"apache": "%t %{X-Request-Id}i"}, "apache", "apache"),
    ],
)
def test_plan_for(spec: str | dict[str, str], dialect: str, name: str) -> None:
    plan = plan_for(spec)
    assert (plan.dialect, plan.name) == (dialect, name)
    assert plan_for(dict(spec) if isinstance(spec, dict) else spec) is plan  # cached


@pytest.mark.parametrize(
    "spec", [{}, {"nginx": "$time_local", "apache": "%t"}, {"haproxy": "%t"}, {"format": "$time_local"}]
)
def test_plan_for_needs_exactly_one_dialect(spec: dict[str, str]) -> None:
    with pytest.raises(FormatSpecError, match="exactly one of 'nginx' or 'apache'"):
        plan_for(spec)


def test_plan_for_reports_compile_errors() -> None:
    with pytest.raises(FormatSpecError, match=r"nginx format \$b at position 14"):
        plan_for({"nginx": "$time_local $a$b"})


def test_key_is_stable_and_identifies_the_plan() -> None:
    plan = builtin("combined")
    digest = hashlib.sha1(f"nginx\0{NGINX_COMBINED}".encode(), usedforsecurity=False).hexdigest()
    assert plan.key == f"combined-{digest[:16]}"
    keys = {
        plan.key,
        compile_nginx(NGINX_COMBINED).key,
        compile_nginx(f"'{NGINX_COMBINED}'").key,
        builtin("main").key,
        compile_apache("%t $time_local").key,
        compile_nginx("%t $time_local").key,
    }
    assert len(keys) == 6


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_plans_pickle_and_hash(name: str) -> None:
    plan = builtin(name)
    copy = pickle.loads(pickle.dumps(plan))
    assert copy == plan
    assert hash(copy) == hash(plan)
    assert copy.key == plan.key
    assert copy.reference_regex().pattern == plan.reference_regex().pattern


def test_a_plan_sent_to_another_process_hashes_as_that_process_hashes_it() -> None:
    """A plan keeps its hash once found (the engine's caches look it up at every chunk); a copy sent to
    a process whose strings hash otherwise (a spawned worker) finds it again there, so that an equal
    plan of its own is the same key of its caches."""
    plan = builtin("combined")
    hash(plan)
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    code = (
        "import pickle, sys\n"
        "from pipeline.formats.spec import builtin\n"
        "copy = pickle.loads(sys.stdin.buffer.read())\n"
        "print(hash(copy) == hash(builtin('combined')), {builtin('combined'): 1}.get(copy))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(plan),
        capture_output=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONHASHSEED": seed},
    )
    assert found.stdout.split() == [b"True", b"1"]


def test_plan_and_field_check_their_invariants() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Field("$x", "number", "x", False)
    with pytest.raises(ValueError, match="column"):
        Field("$request", "request", "request", False)
    with pytest.raises(ValueError, match="port column"):
        Field("{ip:ip_port}", "ip_port", "ip", False)
    with pytest.raises(ValueError, match="port column"):
        Field("{ip}", "string", "ip", False, port="port")
    field = Field("$x", "string", "x", False)
    with pytest.raises(ValueError, match="2 literals"):
        FormatPlan("x", "$x", "nginx", "default", (b"",), (field,))
    with pytest.raises(ValueError, match="dialect"):
        FormatPlan("x", "$x", "iis", "default", (b"", b""), (field,))


def test_quoted_means_between_double_quotes() -> None:
    plan = compile_nginx('"$time_local" "$host $uri" x"$status')
    assert [f.quoted for f in plan.fields] == [True, False, False, False]


def test_the_formats_page_table_is_the_catalogue() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    assert catalogue_markdown() in page
