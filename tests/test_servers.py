"""The built-in server formats (pipeline/formats/servers.py): lines from each server's documentation and
generated lines of every field's variants, compared value by value with a reference written here (a
tokenizer and each documented field list, typed in plain Python), detection, and a mixed folder read
with ``format = "auto"`` by the real CLI."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.formats import choose, compiled, detect, get_format
from pipeline.formats.engine import PlanFormat
from pipeline.formats.servers import SERVERS, plans
from pipeline.formats.w3c import DIALECTS as W3C_DIALECTS
from tests.conftest import BOT_RE, committed_manifest, read_output, reject_list, run_cli, w3c_reference

# --- the reference ----------------------------------------------------------------------------------

# one field: a quoted string (backslash escapes), a [bracketed] or {braced} one, or a word; then a space
# or the line's end
_TOKEN = re.compile(rb'(?:"((?:[^"\\]|\\.)*)"|\[([^\]]*)\]|\{([^}]*)\}|([^ "{][^ ]*))(?: (?=.)|\Z)')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def tokens(line: bytes) -> list[str] | None:
    """Every field of ``line`` (:func:`leading_tokens` of them all), None where they are not fields."""
    found = leading_tokens(line, len(line) + 1)
    return None if found is None else found[0]


def micros(when: datetime) -> int:
    return (when - _EPOCH) // (datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH)


def null(text: str, *more: str) -> str | None:
    return None if text == "-" or text in more else text


def request(text: str, nulls: tuple[str, ...] = ("- - - ", "- - -")) -> dict[str, Any]:
    if text == "-" or text in nulls:
        return dict.fromkeys(("method", "path", "query", "protocol", "request"))
    words = text.split(" ")
    if len(words) != 3 or not all(words):
        return {"method": None, "path": None, "query": None, "protocol": None, "request": text}
    path, sep, query = words[1].partition("?")
    return {
        "method": words[0],
        "path": path,
        "query": query if sep else None,
        "protocol": words[2],
        "request": None,
    }


def ip_port(text: str, ip: str, port: str) -> dict[str, Any]:
    if text == "-":
        return {ip: None, port: None}
    host, sep, number = text.rpartition(":")
    if not sep or not host or not number.isdigit() or len(number) > 5:
        raise ValueError(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return {ip: host, port: int(number)}


def status(text: str, *more: str) -> int | None:
    if text in ("-", "-1") or text in more:
        return None
    if not re.fullmatch(r"\d{3}", text):
        raise ValueError(text)
    return int(text)


def integer(text: str) -> int | None:
    if text == "-":
        return None
    if not re.fullmatch(r"\d+", text):
        raise ValueError(text)
    return int(text)


def seconds(text: str, scale: float = 1.0) -> float | None:
    if text in ("-", "-1"):
        return None
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        raise ValueError(text)
    return float(text) / round(1 / scale)  # 9 ms: 0.009 s (9 * 1e-3 is 0.009000000000000001)


def iso(text: str) -> int:
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", text):
        raise ValueError(text)
    frac = re.search(r"\.(\d+)", text)
    when = datetime.fromisoformat(re.sub(r"\.\d+", "", text))
    return micros(when) + (int(frac.group(1)[:6].ljust(6, "0")) if frac else 0)


def clf(text: str) -> int:
    if not re.fullmatch(r"\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", text):
        raise ValueError(text)
    return micros(datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z"))


def agent(text: str) -> dict[str, Any]:
    return {"user_agent": text, "is_bot": BOT_RE.search(text) is not None}


# The documented fields of each format in order, each as (reference type, column); "-": no column.
def balancer_fields(peer: str) -> list[tuple[str, str]]:
    """A Classic Load Balancer's documented fields, which an ALB's line continues after its type."""
    return [
        ("iso", "ts"),
        ("s", "elb"),
        ("hp", "ip client_port"),
        ("hp", f"{peer}_ip {peer}_port"),
        ("sec", "request_processing_time"),
        ("sec", f"{peer}_processing_time"),
        ("sec", "response_processing_time"),
        ("st", "status"),
        ("st", f"{peer}_status_code"),
        ("i", "request_length"),
        ("i", "bytes_sent"),
        ("req", ""),
        ("ua", ""),
        ("s", "ssl_cipher"),
        ("s", "ssl_protocol"),
    ]


ALB_FIELDS = [
    ("s", "type"),
    *balancer_fields("target"),
    ("s", "target_group_arn"),
    ("s", "trace_id"),
    ("s", "domain_name"),
    ("s", "chosen_cert_arn"),
    ("pri", "matched_rule_priority"),
    ("iso?", "request_creation_time"),
    ("s", "actions_executed"),
    ("s", "redirect_url"),
    ("s", "error_reason"),
    ("s", "target_port_list"),
    ("s", "target_status_code_list"),
    ("s", "classification"),
    ("s", "classification_reason"),
    ("s", "conn_trace_id"),
    ("s", "transformed_host"),
    ("s", "transformed_uri"),
    ("s", "request_transform_status"),
]
ELB_FIELDS = balancer_fields("backend")
S3_FIELDS = [
    ("s", "bucket_owner"),
    ("s", "bucket"),
    ("clf", "ts"),
    ("s", "ip"),
    ("s", "requester"),
    ("s", "request_id"),
    ("s", "operation"),
    ("s", "key"),
    ("req", ""),
    ("st", "status"),
    ("s", "error_code"),
    ("i", "bytes"),
    ("i", "object_size"),
    ("ms", "request_time"),
    ("ms", "turn_around_time"),
    ("s", "referrer"),
    ("ua", ""),
    ("s", "version_id"),
    ("s", "host_id"),
    ("s", "signature_version"),
    ("s", "cipher_suite"),
    ("s", "authentication_type"),
    ("s", "host_header"),
    ("s", "tls_version"),
    ("s", "access_point_arn"),
    ("s", "acl_required"),
    ("s", "source_region"),
]
ENVOY_FIELDS = [
    ("iso", "ts"),
    ("req", ""),
    ("st0", "status"),
    ("s", "response_flags"),
    ("i", "bytes_received"),
    ("i", "bytes"),
    ("ms", "request_time"),
    ("ms", "upstream_service_time"),
    ("s", "http_x_forwarded_for"),
    ("ua", ""),
    ("s", "request_id"),
    ("s", "authority"),
    ("s", "upstream_host"),
]
# Istio's default: Envoy's with three fields after the response flags and six at the end
ISTIO_FIELDS = [
    *ENVOY_FIELDS[:4],
    ("s", "response_code_details"),
    ("s", "connection_termination_details"),
    ("s", "upstream_transport_failure_reason"),
    *ENVOY_FIELDS[4:],
    ("s", "upstream_cluster"),
    ("s", "upstream_local_address"),
    ("s", "downstream_local_address"),
    ("hp", "ip client_port"),
    ("s", "requested_server_name"),
    ("s", "route_name"),
]
TRAEFIK_FIELDS = [
    ("s", "ip"),
    ("lit-", ""),
    ("s", "user"),
    ("clf", "ts"),
    ("req", ""),
    ("st", "status"),
    ("i", "bytes"),
    ("s", "referrer"),
    ("ua", ""),
    ("i", "request_count"),
    ("s", "router_name"),
    ("s", "server_url"),
    ("msunit", "request_time"),
]


def typed(kind: str, column: str, text: str) -> dict[str, Any]:
    if kind == "s":
        return {column: null(text)}
    if kind == "iso":
        return {column: iso(text)}
    if kind == "iso?":
        return {column: None if text == "-" else iso(text)}
    if kind == "clf":
        return {column: clf(text)}
    if kind == "hp":
        ip, port = column.split()
        return ip_port(text, ip, port)
    if kind == "sec":
        return {column: seconds(text)}
    if kind == "ms":
        return {column: seconds(text, 1e-3)}
    if kind == "msunit":
        if not text.endswith("ms"):
            raise ValueError(text)
        return {column: seconds(text[:-2], 1e-3)}
    if kind in ("st", "st0"):
        return {column: status(text, *(("0",) if kind == "st0" else ()))}
    if kind == "i":
        return {column: integer(text)}
    if kind == "pri":
        return {column: None if text == "-1" else integer(text)}
    if kind == "req":
        return request(text)
    if kind == "ua":
        return agent(text)
    if text != "-":  # lit-
        raise ValueError(text)
    return {}


def by_fields(fields: list[tuple[str, str]], values: list[str]) -> dict[str, Any]:
    if len(values) != len(fields):
        raise ValueError(len(values))
    row: dict[str, Any] = {}
    for (kind, column), text in zip(fields, values, strict=True):
        row |= typed(kind, column, text)
    return row


def leading_tokens(line: bytes, n: int) -> tuple[list[str], bytes] | None:
    """The first ``n`` fields of ``line`` (fewer where it ends before) and the text after the space that
    follows them (empty at the line's end); None where they are not fields."""
    out: list[str] = []
    pos = 0
    while len(out) < n and pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            return None
        out.append(next(g for g in m.groups() if g is not None).decode())
        pos = m.end()
    return out, line[pos:]


def grown(
    fields: list[tuple[str, str]], ends: tuple[int, ...], later: bool = False
) -> Callable[[bytes], dict[str, Any]]:
    """A format whose later versions append fields: any of the documented lengths, or (``later``) more:
    any text after the documented fields and a space (skipped, as the documentation asks)."""

    def ref(line: bytes) -> dict[str, Any]:
        found = leading_tokens(line, len(fields))
        if found is None or (found[1] and not later) or (len(found[0]) not in ends and not found[1]):
            raise ValueError(line)
        if found[1].endswith(b" "):  # a line cut after a space
            raise ValueError(line)
        values = found[0]
        row = dict.fromkeys(column for kind, c in fields for column in _columns(kind, c))
        return row | by_fields(fields[: min(len(values), len(fields))], values[: len(fields)])

    return ref


def envoy(line: bytes) -> dict[str, Any]:
    """Envoy's default format or Istio's, by the count of fields."""
    values = tokens(line)
    fields = ISTIO_FIELDS if values is not None and len(values) == len(ISTIO_FIELDS) else ENVOY_FIELDS
    if values is None or not line.startswith(b"["):  # the time in brackets (a token without them)
        raise ValueError(line)
    row = dict.fromkeys(column for kind, c in ISTIO_FIELDS for column in _columns(kind, c))
    return row | by_fields(fields, values)


def _columns(kind: str, column: str) -> list[str]:
    if kind == "hp":
        return column.split()
    if kind == "req":
        return ["method", "path", "query", "protocol", "request"]
    if kind == "ua":
        return ["user_agent", "is_bot"]
    return [column] if column else []


# HAProxy's prefixes before the message (its log formats, and syslog daemons' files)
_SYSLOG = re.compile(
    rb"(?:<\d+>)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)(?: \S+)? [^ \[]+\[\d+\]: "
    rb"|<\d+>1 \S+ \S+ \S+ \S+ - - "  # rfc5424
    rb"|<\d+>(?:\d{4}-\d\d-\d\dT\S+ )?"  # short, priority, timed
    rb"|\d{4}-\d\d-\d\dT\S+ "  # iso
)
HAPROXY_COLUMNS = [
    "ip",
    "client_port",
    "ts",
    "frontend_name",
    "backend_name",
    "server_name",
    "time_request",
    "time_queue",
    "time_connect",
    "time_response",
    "request_time",
    "status",
    "bytes_sent",
    "captured_request_cookie",
    "captured_response_cookie",
    "termination_state",
    "actconn",
    "feconn",
    "beconn",
    "srv_conn",
    "retries",
    "srv_queue",
    "backend_queue",
    "captured_request_headers",
    "captured_response_headers",
    "method",
    "path",
    "query",
    "protocol",
    "request",
]
_TLS_COLUMNS = ["fc_err", "ssl_fc_err", "ssl_c_err", "ssl_c_ca_err", "ssl_fc_is_resumed"]
_TLS_COLUMNS += ["ssl_fc_sni", "ssl_protocol", "ssl_cipher"]
_TLS_TEXT = {"ssl_fc_err", "ssl_fc_sni", "ssl_protocol", "ssl_cipher"}
# option httpslog's fields after the request
_TLS = re.compile(rb'" (\S+)/(\S+)/(\S+)/(\S+)/(\S+) ([^ /]*)/([^ /]*)/([^ /]+)$')


def _haproxy_head(values: list[str]) -> dict[str, Any]:
    """The fields httplog and tcplog both begin with: the address, the date, the frontend, backend and
    server."""
    if not re.fullmatch(r"\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3}", values[1]):
        raise ValueError(values[1])
    when = datetime.strptime(values[1], "%d/%b/%Y:%H:%M:%S.%f").replace(tzinfo=UTC)
    backend, slash, server = values[3].partition("/")
    if not slash:
        raise ValueError(values[3])
    row = dict.fromkeys(HAPROXY_COLUMNS) | ip_port(values[0], "ip", "client_port")
    row |= {"ts": micros(when), "frontend_name": null(values[2]), "backend_name": null(backend)}
    return row | {"server_name": null(server)} | dict.fromkeys(_TLS_COLUMNS)


def _haproxy_counts(counts: list[str], queues: list[str]) -> dict[str, Any]:
    """The connection counts (the last, the retries, a string) and the queues both formats end with."""
    conns = ("actconn", "feconn", "beconn", "srv_conn")
    row = {n: integer(c) for n, c in zip(conns, counts[:4], strict=True)} | {"retries": null(counts[4])}
    return row | {"srv_queue": integer(queues[0]), "backend_queue": integer(queues[1])}


def haproxy_tcp(values: list[str]) -> dict[str, Any]:
    """A tcplog line's fields after its prefix: Tw/Tc/Tt, the bytes, the termination state, the
    connection counts and the queues; no request (null)."""
    timers, counts, queues = values[4].split("/"), values[7].split("/"), values[8].split("/")
    if len(timers) != 3 or len(counts) != 5 or len(queues) != 2:
        raise ValueError(values)
    row = _haproxy_head(values)
    timers[2] = timers[2].removeprefix("+")  # option logasap
    names = ("time_queue", "time_connect", "request_time")
    row |= {n: seconds(t, 1e-3) for n, t in zip(names, timers, strict=True)}
    row |= {"bytes_sent": integer(values[5].removeprefix("+")), "termination_state": null(values[6])}
    return row | _haproxy_counts(counts, queues)


def haproxy(line: bytes) -> dict[str, Any]:
    tls = _TLS.search(line)
    if tls:
        line = line[: tls.start() + 1]
    m = _SYSLOG.match(line)
    values = tokens(line[m.end() :] if m else line)
    if values is not None and len(values) == 9 and not tls and not line.endswith(b'"'):
        return haproxy_tcp(values)
    if values is None or not 13 <= len(values) <= 15 or not line.endswith(b'"'):  # the request is quoted
        raise ValueError(line)
    timers, counts, queues = values[4].split("/"), values[10].split("/"), values[11].split("/")
    if len(timers) != 5 or len(counts) != 5 or len(queues) != 2:
        raise ValueError(line)
    captures = values[12:-1] + [None] * (2 - len(values[12:-1]))
    row = _haproxy_head(values) | {"status": status(values[5])}
    row["bytes_sent"] = integer(values[6].removeprefix("+"))  # option logasap: the bytes so far
    timers[4] = timers[4].removeprefix("+")  # and the total time so far
    names = ("time_request", "time_queue", "time_connect", "time_response", "request_time")
    row |= {n: seconds(t, 1e-3) for n, t in zip(names, timers, strict=True)}
    row |= {"captured_request_cookie": null(values[7]), "captured_response_cookie": null(values[8])}
    row |= {"termination_state": null(values[9])} | _haproxy_counts(counts, queues)
    row |= {"captured_request_headers": captures[0], "captured_response_headers": captures[1]}
    row |= {k: null(v) for k, v in row.items() if k.startswith("captured_") and isinstance(v, str)}
    if tls:
        texts = [g.decode() for g in tls.groups()]
        row |= {c: integer(t) for c, t in zip(_TLS_COLUMNS, texts, strict=True) if c not in _TLS_TEXT}
        row |= {c: null(t) for c, t in zip(_TLS_COLUMNS, texts, strict=True) if c in _TLS_TEXT}
    return row | request(values[-1])


INGRESS_COLUMNS = [
    "ip",
    "user",
    "ts",
    "method",
    "path",
    "query",
    "protocol",
    "request",
    "status",
    "bytes",
    "referrer",
    "user_agent",
    "is_bot",
    "request_length",
    "request_time",
    "proxy_upstream_name",
    "proxy_alternative_upstream_name",
    "upstream_addr",
    "upstream_response_length",
    "upstream_response_time",
    "upstream_status",
    "req_id",
]
_INGRESS = re.compile(
    rb'(\S+) - (?:\[\S+\] - )?(\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\S+) (\S+) "((?:[^"\\]|\\.)*)" '
    rb'"((?:[^"\\]|\\.)*)" (\S+) (\S+) \[(\S*)\] (?:\[(\S*)\] )?([^ ,]+(?:, [^ ,]+)*) ([^ ,]+(?:, [^ ,]+)*) '
    rb"([^ ,]+(?:, [^ ,]+)*) ([^ ,]+(?:, [^ ,]+)*)(?: (\S+))?"
)


def _total(text: str, cast: Callable[[str], Any]) -> Any:
    items = [i for i in re.split(r"\s*[,:]\s*", text) if i != "-"]
    if not items:
        return None
    return sum(cast(i) for i in items)


# a Kubernetes node's container runtime (CRI) before each line: the time, the stream, F (a full line)
_CRI = re.compile(rb"\d{4}-\d\d-\d\dT\S+ \S+ F ")


def ingress(line: bytes) -> dict[str, Any]:
    cri = _CRI.match(line)
    m = _INGRESS.fullmatch(line[cri.end() :] if cri else line)
    if m is None:
        raise ValueError(line)
    g = [None if x is None else x.decode() for x in m.groups()]
    if g[11] is not None and g[16] is None:  # the alternative upstream came with the request id
        raise ValueError(line)
    row = dict.fromkeys(INGRESS_COLUMNS)
    row |= {"ip": g[0], "user": null(g[1] or ""), "ts": clf(g[2] or "")} | request(g[3] or "", ())
    row |= {"status": status(g[4] or ""), "bytes": integer(g[5] or ""), "referrer": null(g[6] or "")}
    row |= agent(g[7] or "") | {"request_length": integer(g[8] or ""), "request_time": seconds(g[9] or "")}
    row |= {
        "proxy_upstream_name": null(g[10] or ""),
        "proxy_alternative_upstream_name": g[11] and null(g[11]),
    }
    row |= {
        "upstream_addr": null(g[12] or ""),
        "upstream_status": null(g[15] or ""),
        "req_id": g[16] and null(g[16]),
    }
    row |= {
        "upstream_response_length": _total(g[13] or "", int),
        "upstream_response_time": _total(g[14] or "", float),
    }
    if g[11] is None and g[16] is not None:
        row["proxy_alternative_upstream_name"] = None
    return row


REFERENCES: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "alb": grown(ALB_FIELDS, (33, 30, 29, 27, 25, 24, 20, 18), later=True),
    "elb": grown(ELB_FIELDS, (15,)),
    "s3": grown(S3_FIELDS, (27, 26, 25, 24, 23, 18), later=True),
    "haproxy": haproxy,
    "envoy": envoy,
    "traefik": grown(TRAEFIK_FIELDS, (13,)),
    "upstreaminfo": ingress,
}


def reference(name: str, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of ``lines`` by the reference, grouped by UTC day in line order, and the rejected lines."""
    rows, rejected = [], []
    for i, line in enumerate(lines):
        try:
            line.decode()
            row = REFERENCES[name](line)
        except (ValueError, UnicodeDecodeError):
            rejected.append(i)
            continue
        rows.append((row["ts"] // 86_400_000_000, row))
    rows.sort(key=lambda r: r[0])
    return [row for _, row in rows], rejected


def check(name: str, lines: list[bytes]) -> list[dict[str, Any]]:
    result = get_format(name).parse(b"".join(line + b"\n" for line in lines), 1)
    rows, rejected = reference(name, lines)
    assert [line - 1 for line, _ in reject_list(result.rejects)] == rejected
    got = [
        {k: micros(v) if isinstance(v, datetime) else v for k, v in row.items()}
        for row in result.batch.to_pylist()
    ]
    for g, want in zip(got, rows, strict=True):
        assert g == want, (g, want)
    return got


# --- the documentation's own lines ------------------------------------------------------------------

# Lines from each server's documentation (its examples, and lines of its field descriptions' variants:
# a TCP listener's "- - - ", an aborted HAProxy session, an Envoy response code 0), one file per format.
SERVER_LOGS = Path(__file__).parent / "server_logs"
DOC_LINES: dict[str, list[bytes]] = {
    name: (SERVER_LOGS / f"{name}.log").read_bytes().splitlines() for name in SERVERS
}


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_the_documentations_lines_read_as_the_reference_reads_them(name: str) -> None:
    rows = check(name, DOC_LINES[name])
    assert len(rows) == len(DOC_LINES[name])
    assert [detect(DOC_LINES[name])[0]] == [(name, len(DOC_LINES[name]))]


def test_a_few_documented_values() -> None:
    alb = check("alb", DOC_LINES["alb"][:1])[0]
    assert (alb["ip"], alb["client_port"], alb["target_port"], alb["status"]) == (
        "192.168.131.39",
        2817,
        80,
        200,
    )
    assert alb["ts"] == micros(datetime(2018, 7, 2, 22, 23, 0, 186641, tzinfo=UTC))
    elb = check("elb", DOC_LINES["elb"][2:3])[0]
    assert (elb["method"], elb["request"], elb["status"], elb["user_agent"]) == (None, None, None, "-")
    hap = check("haproxy", DOC_LINES["haproxy"][2:3])[0]
    assert (hap["time_request"], hap["request_time"], hap["status"], hap["server_name"]) == (
        None,
        8.49,
        None,
        "<NOSRV>",
    )
    envoy = check("envoy", DOC_LINES["envoy"][1:2])[0]
    assert (envoy["status"], envoy["response_flags"], envoy["upstream_service_time"]) == (None, "DC", None)
    istio = check("envoy", DOC_LINES["envoy"][2:3])[0]
    assert (istio["ip"], istio["client_port"], istio["route_name"], istio["response_code_details"]) == (
        "10.44.1.23",
        46520,
        "default",
        "via_upstream",
    )
    assert istio["upstream_cluster"] == "outbound|8000||httpbin.foo.svc.cluster.local"
    assert check("alb", DOC_LINES["alb"][-1:])[0]["matched_rule_priority"] is None  # -1: an error
    s3 = check("s3", DOC_LINES["s3"][-2:])  # the fields to aclRequired, and the source region after
    assert [row["source_region"] for row in s3] == [None, "us-east-1"] and s3[1]["acl_required"] == "Yes"
    cri = check("upstreaminfo", DOC_LINES["upstreaminfo"][-1:])[0]  # the container runtime's prefix
    assert (cri["ip"], cri["req_id"], cri["bytes"]) == ("1.2.3.4", "abcdef0124", 12)
    # every prefix of HAProxy's log formats is skipped, whatever it holds
    assert {row["ip"] for row in check("haproxy", DOC_LINES["haproxy"])} == {"10.0.1.2"}
    tcp = check("haproxy", DOC_LINES["haproxy"][-2:-1])[0]  # tcplog: a TCP frontend's line, no request
    assert (tcp["request_time"], tcp["bytes_sent"], tcp["termination_state"], tcp["retries"]) == (
        5.007,
        212,
        "--",
        "3",
    )
    assert tcp["status"] is None and tcp["method"] is None and tcp["backend_name"] == "bck"
    logasap = check("haproxy", DOC_LINES["haproxy"][-3:-2])[0]  # the time and bytes so far, after a "+"
    assert (logasap["request_time"], logasap["bytes_sent"], logasap["time_response"]) == (0.03, 243, 0.014)
    https = check("haproxy", DOC_LINES["haproxy"][-1:])[0]  # option httpslog
    assert (https["ssl_fc_sni"], https["ssl_protocol"], https["ssl_cipher"], https["fc_err"]) == (
        "1wt.eu",
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
        0,
    )


@pytest.mark.parametrize("loaded", [True, False], ids=["compiled", "numpy"])
def test_an_address_holds_no_space(monkeypatch: pytest.MonkeyPatch, loaded: bool) -> None:
    """A line with a prefix that no variant knows is rejected, not read with the prefix in its address
    (an address:port holds no space)."""
    monkeypatch.setattr(compiled, "loaded", lambda: loaded)
    line = DOC_LINES["haproxy"][3].replace(b"10.0.1.2:", b"lb-1 app: 10.0.1.2:")
    result = get_format("haproxy").parse(line + b"\n", 1)
    assert (result.batch.num_rows, reject_list(result.rejects)) == (0, [(1, "no match")])


@pytest.mark.parametrize("loaded", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("name", ["alb", "s3"])
def test_later_fields_are_skipped_whatever_they_hold(
    monkeypatch: pytest.MonkeyPatch, name: str, loaded: bool
) -> None:
    """Fields AWS appends after the documented ones (several, quoted, with spaces) are skipped, as its
    documentation asks, so that next year's lines still read."""
    monkeypatch.setattr(compiled, "loaded", lambda: loaded)
    whole = DOC_LINES[name][-1] if name == "s3" else DOC_LINES[name][1] + b' "-" "-" "-"'
    assert len(tokens(whole) or []) == len(FIELDS[name])
    later = [whole + b" x", whole + b' "a new field" 12 "-"', whole + b" "]
    result = get_format(name).parse(b"".join(line + b"\n" for line in later), 1)
    assert result.rows.tolist() == [0, 1] and reject_list(result.rejects) == [(3, "no match")]


@pytest.mark.parametrize("loaded", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("agent", ["curl/7.4", "caf\u00e9"], ids=["ascii", "regex"])
@pytest.mark.parametrize("name, line", [("alb", 1), ("elb", 1)])
def test_a_line_cut_after_the_space_before_its_last_field_is_rejected(
    monkeypatch: pytest.MonkeyPatch, loaded: bool, agent: str, name: str, line: int
) -> None:
    """The last unquoted field of a built-in format is a word: not empty. A line cut after the space
    before it (ALB's ``conn_trace_id``, ELB's ``ssl_protocol``; a format of several variants and one
    of one, which the compiled loops split apart) is not read as a line with an empty one."""
    monkeypatch.setattr(compiled, "loaded", lambda: loaded)
    whole = DOC_LINES[name][line].replace(b"curl/7.4", agent.encode())
    assert not whole.endswith(b'"')  # it ends with an unquoted field
    cut = whole[: whole.rindex(b" ") + 1]
    result = get_format(name).parse(whole + b"\n" + cut + b"\n", 1)
    assert result.rows.tolist() == [0]
    assert reject_list(result.rejects) == [(2, "no match")]


# --- generated lines --------------------------------------------------------------------------------

IPS = ["10.0.0.1", "192.168.131.39", "2001:db8::1", "[2001:db8::7]", "::1"]
AGENTS = ["curl/8.0", "Mozilla/5.0 (X11; Linux x86_64) Gecko", 'say \\"hi\\"', "caf\u00e9 bot", "-", ""]
REQUESTS = [
    "GET /a?b=1 HTTP/1.1",
    "POST https://example.com:443/x?y HTTP/2.0",
    "- - - ",
    "GET /",
    "<BADREQ>",
    "GET /caf\u00e9 HTTP/1.1",
    'GET /a\\"b HTTP/1.1',
]


def _iso(rng: random.Random) -> str:
    when = datetime(
        2019 + rng.randrange(6), 1 + rng.randrange(12), 1 + rng.randrange(28), rng.randrange(24), 59, 59
    )
    frac = rng.choice(["", ".1", ".123", ".123456", ".123456789"])
    return when.strftime("%Y-%m-%dT%H:%M:%S") + frac + rng.choice(["Z", "Z", "+02:00", "-05:30"])


def _clf(rng: random.Random, ms: bool = False) -> str:
    when = datetime(
        2019 + rng.randrange(6), 1 + rng.randrange(12), 1 + rng.randrange(28), 23, rng.randrange(60), 5
    )
    if ms:
        return when.strftime("%d/%b/%Y:%H:%M:%S.") + f"{rng.randrange(1000):03d}"
    return when.strftime("%d/%b/%Y:%H:%M:%S ") + rng.choice(["+0000", "+0100", "-0700"])


def _hp(rng: random.Random) -> str:
    ip = rng.choice(IPS)
    return rng.choice([f"{ip}:{rng.randrange(65536)}", f"{ip}:{rng.randrange(65536)}", "-"])


def _value(rng: random.Random, kind: str) -> str:
    if kind == "iso":
        return _iso(rng)
    if kind == "iso?":
        return rng.choice([_iso(rng), "-"])
    if kind == "clf":
        return f"[{_clf(rng)}]"
    if kind == "hp":
        return _hp(rng)
    if kind in ("sec", "ms"):
        return rng.choice(
            ["0.000", "0.001048", "-1", "12", "-"] if kind == "sec" else ["0", "7", "-1", "1234", "-"]
        )
    if kind in ("st", "st0"):
        return rng.choice(["200", "404", "-", "502", *(["0"] if kind == "st0" else [])])
    if kind == "i":
        return rng.choice(["0", "366", "-", "9223372036854775807"])
    if kind == "pri":
        return rng.choice(["0", "1", "50000", "-1", "-"])
    if kind == "req":
        return '"' + rng.choice(REQUESTS) + '"'
    if kind == "ua":
        return '"' + rng.choice(AGENTS) + '"'
    if kind == "msunit":
        return rng.choice(["0", "3", "1500"]) + "ms"
    if kind == "lit-":
        return "-"
    return rng.choice(["-", "abc", "arn:aws:x/y", "caf\u00e9", "a:b"])


QUOTED = {
    "alb": {12, 13, 17, 18, 19, 22, 23, 24, 25, 26, 27, 28, 30, 31, 32},
    "elb": {11, 12},
    "s3": {8, 15, 16},
    "envoy": {1, 8, 9, 10, 11, 12},
    "istio": {1, 6, 11, 12, 13, 14, 15},
    "traefik": {4, 7, 8, 10, 11},
}
FIELDS = {
    "alb": ALB_FIELDS,
    "elb": ELB_FIELDS,
    "s3": S3_FIELDS,
    "envoy": ENVOY_FIELDS,
    "istio": ISTIO_FIELDS,
    "traefik": TRAEFIK_FIELDS,
}
# documented lengths, and longer lines (later fields, which may be quoted and hold spaces)
LENGTHS = {"alb": (33, 34, 35, 30, 29, 27, 25, 24, 20, 18, 21), "s3": (27, 28, 29, 26, 25, 24, 23, 18, 20)}


def generated_line(name: str, rng: random.Random) -> bytes:
    if name == "envoy" and rng.random() < 0.5:
        name = "istio"
    fields = FIELDS[name]
    values = []
    for k, (kind, _) in enumerate(fields):
        v = _value(rng, kind)
        if k in QUOTED[name] and not v.startswith('"'):
            v = '"' + v + '"'
        values.append(v)
    if name in ("envoy", "istio"):
        values[0] = f"[{values[0]}]"
    count = rng.choice(LENGTHS.get(name, (len(fields),)))
    values = ([*values, "extra_field", '"more fields"'])[:count]
    return " ".join(values).encode()


def haproxy_line(rng: random.Random) -> bytes:
    def ms() -> str:
        return rng.choice(["0", "10", "-1", "8490"])

    prefix = rng.choice(
        [
            "",
            "Feb  6 12:14:14 localhost haproxy[14389]: ",
            "<134>Dec 16 01:02:03 haproxy[7]: ",  # local
            "2024-03-01T12:00:00.123456+00:00 lb-1 haproxy[7]: ",  # rsyslog's RFC 3339 file
            "<134>1 2009-02-06T12:14:14.655+01:00 lb-1 haproxy 14389 - - ",  # rfc5424
            "<6>2009-02-06T12:14:14.655+01:00 ",  # timed
            "<6>",  # short
            "<134>",  # priority
            "2009-02-06T12:14:14.655+01:00 ",  # iso
        ]
    )
    if rng.random() < 0.2:  # tcplog, a TCP frontend's line
        tcp = [
            _hp(rng).replace("-", "1.2.3.4:5"),
            f"[{_clf(rng, ms=True)}]",
            rng.choice(["fnt", "db~"]),
            rng.choice(["bck/srv1", "bck/<NOSRV>"]),
            f"{ms()}/{ms()}/" + rng.choice([ms(), "+" + ms()]),
            rng.choice(["212", "+212", "0"]),
            rng.choice(["--", "CD", "SC"]),
            "0/0/0/0/" + rng.choice(["3", "+1"]),
            "0/0",
        ]
        return (prefix + " ".join(tcp)).encode()
    captures = rng.choice(["", "{1wt.eu} ", "{a|b} {} ", "{} {x y} "])
    parts = [
        _hp(rng).replace("-", "1.2.3.4:5"),
        f"[{_clf(rng, ms=True)}]",
        rng.choice(["http-in", "fe~"]),
        rng.choice(["static/srv1", "px/<NOSRV>"]),
        # option logasap: the total time and the bytes so far, after a "+"
        "/".join(ms() for _ in range(4)) + "/" + rng.choice([ms(), "+" + ms()]),
        rng.choice(["200", "-1", "503"]),
        rng.choice(["0", "2750", "+2750"]),
        "- -",
        rng.choice(["----", "CR--", "SD--"]),
        "1/1/0/0/" + rng.choice(["0", "+1"]),
        "0/0",
    ]
    tls = rng.choice(
        [
            "",
            "",
            " 0/0/0/0/0 1wt.eu/TLSv1.3/TLS_AES_256_GCM_SHA384",
            " 1/14094412/0/0/1 /TLSv1.2/ECDHE-RSA-AES128-GCM-SHA256",
            " 0/0/-/x/0 -/-/-",
        ]
    )
    return (prefix + " ".join(parts) + " " + captures + '"' + rng.choice(REQUESTS) + '"' + tls).encode()


def ingress_line(rng: random.Random) -> bytes:
    ip = rng.choice(["1.2.3.4", "2001:db8::1"])
    head = rng.choice([f"{ip} - ", f"{ip} - [{ip}] - "])
    upstream = rng.choice(["10.0.0.1:80", "10.0.0.1:80, 10.0.0.2:80", "-"])
    counts = {"10.0.0.1:80": ("12", "0.004", "200"), "-": ("-", "-", "-")}.get(
        upstream, ("0, 12", "0.001, 0.002", "502, 200")
    )
    alt = "" if "[" in head else rng.choice(["[] ", "[canary-svc-80] "])
    tail = rng.choice([" 3fa0c1", ""]) if "[" in head else " 3fa0c1"
    line = (
        f'{head}{rng.choice(["-", "bob"])} [{_clf(rng)}] "{rng.choice(REQUESTS)}" '
        f"{rng.choice(['200', '404'])} "
        f'{rng.choice(["0", "612"])} "-" "{rng.choice(AGENTS)}" 100 0.001 [default-svc-80] {alt}{upstream} '
        f"{counts[0]} {counts[1]} {counts[2]}{tail}"
    )
    return line.encode()


def make(name: str, rng: random.Random) -> bytes:
    if name == "haproxy":
        return haproxy_line(rng)
    if name == "upstreaminfo":
        cri = rng.choice(
            ["", "", "2024-03-01T12:00:00.123456789Z stdout F ", "2024-03-01T12:00:00Z stderr F "]
        )
        return cri.encode() + ingress_line(rng)
    return generated_line(name, rng)


JUNK = [b"", b"x", b"-", b'"', b"GET / HTTP/1.1", b"\xff\xfe", b"a b c d e f g h i j k l m n o p"]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_generated_lines_read_as_the_reference_reads_them(name: str) -> None:
    rng = random.Random(name)
    lines = []
    for _ in range(400):
        line = make(name, rng)
        pick = rng.randrange(10)
        if pick == 0:
            line = line[: rng.randrange(len(line))]
        elif pick == 1:
            line = rng.choice(JUNK)
        lines.append(line)
    rows = check(name, lines)
    assert len(rows) > 150  # most generated lines are good ones


UPSTREAMINFO = (
    'log_format upstreaminfo \'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] '
    "[$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time "
    "$upstream_status $req_id';"
)


def test_upstreaminfo_is_the_pasted_ingress_nginx_format() -> None:
    rng = random.Random(3)
    lines = [line for line in (ingress_line(rng) for _ in range(300)) if b"] - " not in line.split(b'"')[0]]
    data = b"".join(line + b"\n" for line in [DOC_LINES["upstreaminfo"][0], *lines])
    pasted = get_format(("nginx", UPSTREAMINFO)).parse(data, 1)
    built_in = get_format("upstreaminfo").parse(data, 1)
    assert pasted.batch.num_rows == len(lines) + 1
    assert built_in.batch.equals(pasted.batch)


@pytest.mark.slow
def test_a_folder_of_several_servers_logs_read_with_auto(tmp_path: Path) -> None:
    inputs = tmp_path / "logs"
    inputs.mkdir()
    rng = random.Random(7)
    for name in SERVERS:
        lines = [line for line in DOC_LINES[name]]
        lines += [make(name, rng) for _ in range(30)]
        good = [line for line in lines if reference(name, [line])[0]]
        (inputs / f"{name}.log").write_bytes(b"".join(line + b"\n" for line in good))
    # W3C logs beside them: IIS's (CRLF) and CloudFront's, their directives skipped
    w3c = {name: (SERVER_LOGS / f"{name}.log").read_bytes() for name in W3C_DIALECTS}
    for name, data in w3c.items():
        (inputs / f"{name}.log").write_bytes(data)
    out = tmp_path / "out"
    proc = run_cli("run", "--input", str(inputs), "--output", str(out), "--set", 'run.format="auto"')
    assert proc.returncode == 0, proc.stderr
    table = read_output(out)
    expected = sum(len(reference(n, (inputs / f"{n}.log").read_bytes().splitlines())[0]) for n in SERVERS)
    w3c_rows = {n: w3c_reference(W3C_DIALECTS[n], data.split(b"\n")[:-1]) for n, data in w3c.items()}
    assert table.num_rows == expected + sum(len(rows) for rows, _, _ in w3c_rows.values())
    m = committed_manifest(out)
    assert m["skipped"] == sum(skipped for _, _, skipped in w3c_rows.values()) > 0
    assert {Path(i["path"]).stem: i["format"] for i in m["inputs"]} == {
        n: n for n in [*SERVERS, *W3C_DIALECTS]
    }
    for name in [*SERVERS, *W3C_DIALECTS]:
        lines = (inputs / f"{name}.log").read_bytes().splitlines()
        chosen = choose(lines)
        assert chosen is not None and chosen[0] == name
    detect_proc = run_cli("detect", *[str(p) for p in sorted(inputs.iterdir())])
    assert detect_proc.returncode == 0, detect_proc.stderr
    for name in [*SERVERS, *W3C_DIALECTS]:
        assert f"{name}.log: {name}, " in detect_proc.stdout


def _alone(name: str, line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A line parsed as a chunk of its own: its row, or its reason."""
    result = get_format(name).parse(line + b"\n", 1)
    if result.batch.num_rows:
        return result.batch.to_pylist()[0], None
    return None, reject_list(result.rejects)[0][1]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_lines_of_every_variant_in_every_order_read_as_each_line_alone(name: str) -> None:
    """One chunk of lines that different variants read (and lines none reads), in every order: each
    line's row, or reject and reason, is the one it gets in a chunk of its own."""
    rng = random.Random(f"orders {name}")
    variants = plans(name)
    candidates = [
        line for line in (make(name, rng) for _ in range(2000)) if line.isascii() and b"\\" not in line
    ]
    data = b"".join(line + b"\n" for line in candidates)
    by_variant: dict[int, bytes] = {}
    taken: set[int] = set()
    for n, plan in enumerate(variants):  # each line's variant: the first whose plan reads it
        for i in PlanFormat(name, plan).parse(data, 1).rows.tolist():
            if i not in taken:
                taken.add(i)
                by_variant.setdefault(n, candidates[i])
    picked = [by_variant[n] for n in sorted(by_variant)[:4]]
    assert len(picked) == min(4, len(variants))
    lines = [*picked, b"GET / HTTP/1.1 - -", picked[0][: len(picked[0]) // 2]]
    alone = [_alone(name, line) for line in lines]
    assert sum(row is None for row, _ in alone) == 2
    for order in itertools.permutations(range(len(lines)), len(lines)):
        if rng.random() > 0.12:  # an eighth of the 720 orders: every pair of lines meets in many of them
            continue
        result = get_format(name).parse(b"".join(lines[i] + b"\n" for i in order), 1)
        got = dict(zip(result.rows.tolist(), result.batch.to_pylist(), strict=True))
        reasons = dict(reject_list(result.rejects))
        for at, i in enumerate(order):
            row, reason = alone[i]
            assert (got.get(at), reasons.get(at + 1)) == (row, reason), (order, at)
