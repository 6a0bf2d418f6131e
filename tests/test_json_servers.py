"""The built-in JSON access logs (Caddy, Traefik): documented and real-looking lines, generated lines of
every field's variants, each compared value by value with a plain-Python reference (``json.loads`` and
the documentation's meaning of each field, written here apart from the code); detection; runs."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.formats import choose, detect, get_format
from pipeline.formats import jsonl as jsonl_module
from pipeline.formats.json_servers import JSON_SERVERS
from tests.conftest import BOT_RE, batch_rows, read_output, reject_list, run_cli

# Caddy's documentation's example entry (https://caddyserver.com/docs/caddyfile/directives/log), and lines
# as issue reports show them: before 2.5 (remote_addr, common_log), IPv6, no TLS, an unreadable peer.
CADDY_DOC = [
    b'{"level":"info","ts":1646861401.5241024,"logger":"http.log.access","msg":"handled request",'
    b'"request":{"remote_ip":"127.0.0.1","remote_port":"41342","client_ip":"127.0.0.1","proto":"HTTP/2.0",'
    b'"method":"GET","host":"localhost","uri":"/","headers":{"User-Agent":["curl/7.82.0"],"Accept":["*/*"],'
    b'"Accept-Encoding":["gzip, deflate, br"]},"tls":{"resumed":false,"version":772,"cipher_suite":4865,'
    b'"proto":"h2","server_name":"example.com"}},"bytes_read":0,"user_id":"","duration":0.000929675,'
    b'"size":10900,"status":200,"resp_headers":{"Server":["Caddy"],"Content-Encoding":["gzip"],'
    b'"Content-Type":["text/html; charset=utf-8"],"Vary":["Accept-Encoding"]}}',
    b'{"level":"error","ts":1617844528.7544096,"logger":"http.log.access.log0","msg":"handled request",'
    b'"request":{"remote_addr":"66.214.199.16:63555","proto":"HTTP/2.0","method":"GET","host":"example.com",'
    b'"uri":"/favicon.ico","headers":{"User-Agent":["Mozilla/5.0 (iPhone; CPU OS 14_4_2 like Mac OS X)"],'
    b'"Accept":["image/*;q=0.8"]},"tls":{"resumed":false,"version":772,"cipher_suite":4865,"proto":"h2",'
    b'"proto_mutual":true,"server_name":"example.com"}},"common_log":"66.214.199.16 - - '
    b'[08/Apr/2021:01:15:28 +0000] \\"GET /favicon.ico HTTP/2.0\\" 404 0","duration":0.000173197,"size":0,'
    b'"status":404,"resp_headers":{"Server":["Caddy"],"Cache-Control":["max-age=86400"]}}',
    b'{"level":"info","ts":1731084144.3270802,"logger":"http.log.access","msg":"handled request",'
    b'"request":{"remote_ip":"2001:db8::7","remote_port":"53176","client_ip":"2001:db8::7",'
    b'"proto":"HTTP/1.1","method":"POST","host":"example.org","uri":"/form?a=1&b=%20",'
    b'"headers":{"Accept":["*/*"],"Content-Length":["20"],"Referer":["https://example.org/"],'
    b'"User-Agent":["Mozilla/5.0 (X11; Linux x86_64) Chrome/81.0"]}},"bytes_read":20,"user_id":"bob",'
    b'"duration":0.000024323,"size":0,"status":308,"resp_headers":{"Content-Type":[],"Server":["Caddy"]}}',
    b'{"level":"info","ts":1743003163.1276934,"logger":"http.log.access.log0","msg":"handled request",'
    b'"request":{"remote_ip":"ziti-edge-router connId=2147483679","remote_port":"","client_ip":"",'
    b'"proto":"HTTP/1.1","method":"GET","host":"h.example","uri":"/web/sw.js","headers":{}},'
    b'"bytes_read":0,"user_id":"","duration":0.0018956,"size":0,"status":304,"resp_headers":{}}',
]
# Traefik's JSON access log as reports and projects show it (fields:
# https://doc.traefik.io/traefik/observability/access-logs/): with and without a backend, headers kept.
TRAEFIK_DOC = [
    b'{"ClientAddr":"192.168.156.1:31073","ClientHost":"192.168.156.1","ClientPort":"31073",'
    b'"ClientUsername":"-","DownstreamContentSize":75,"DownstreamStatus":404,"Duration":1964899,'
    b'"OriginContentSize":75,"OriginDuration":1694568,"OriginStatus":404,"Overhead":270331,'
    b'"RequestAddr":"nodejs.127.0.0.1.sslip.io","RequestContentSize":0,"RequestCount":1,'
    b'"RequestHost":"nodejs.127.0.0.1.sslip.io","RequestMethod":"GET","RequestPath":"/500","RequestPort":"-",'
    b'"RequestProtocol":"HTTP/1.1","RequestScheme":"http","RetryAttempts":0,"RouterName":"http-0@docker",'
    b'"ServiceAddr":"192.168.156.12:3000","ServiceName":"http-0@docker","ServiceURL":"http://192.168.156.12:3000",'
    b'"StartLocal":"2025-02-28T12:11:34.10912886Z","StartUTC":"2025-02-28T12:11:34.10912886Z",'
    b'"entryPointName":"http","level":"info","msg":"","time":"2025-02-28T12:11:34Z"}',
    b'{"ClientAddr":"172.16.100.61:49880","ClientHost":"172.16.100.61","ClientPort":"49880",'
    b'"ClientUsername":"-","DownstreamContentSize":19,"DownstreamStatus":404,"Duration":204055,'
    b'"Overhead":204055,"RequestAddr":"172.16.100.61","RequestContentSize":0,"RequestCount":1,'
    b'"RequestHost":"172.16.100.61","RequestMethod":"GET","RequestPath":"/","RequestPort":"-",'
    b'"RequestProtocol":"HTTP/1.1","RequestScheme":"http","RetryAttempts":0,'
    b'"StartLocal":"2021-06-05T04:03:22.742209746Z","StartUTC":"2021-06-05T04:03:22.742209746Z",'
    b'"level":"info","msg":"","time":"2021-06-05T04:03:22Z"}',
    b'{"ClientAddr":"[2001:db8::2]:52654","ClientHost":"2001:db8::2","ClientPort":"52654",'
    b'"ClientUsername":"alice","DownstreamContentSize":397,"DownstreamStatus":200,"Duration":3454189,'
    b'"OriginContentSize":397,"OriginDuration":3427197,"OriginStatus":200,"Overhead":26992,'
    b'"RequestAddr":"app.example.ca:443","RequestContentSize":12,"RequestCount":5,'
    b'"RequestHost":"app.example.ca","RequestMethod":"GET","RequestPath":"/.env?x=1","RequestPort":"443",'
    b'"RequestProtocol":"HTTP/2.0","RequestScheme":"https","RetryAttempts":1,"RouterName":"app@docker",'
    b'"ServiceAddr":"10.0.1.8:8000","ServiceName":"app@docker","ServiceURL":"http://10.0.1.8:8000",'
    b'"StartLocal":"2026-09-29T18:05:40.189830187-05:00","StartUTC":"2026-09-29T23:05:40.189830187Z",'
    b'"TLSCipher":"TLS_AES_128_GCM_SHA256","TLSVersion":"1.3","entryPointName":"websecure","level":"info",'
    b'"msg":"","request_Referer":"https://example.ca/","request_User-Agent":"Googlebot/2.1",'
    b'"time":"2026-09-29T18:05:40-05:00"}',
]
DOC_LINES = {"caddy": CADDY_DOC, "traefik_json": TRAEFIK_DOC}

# --- the reference: json.loads and each field's documented meaning, in plain Python -----------------------


def _ts(value: Any) -> int | None:
    """Microseconds since the epoch of a logged time: epoch seconds, ISO 8601 or Go's wall time."""
    if value is None or isinstance(value, bool):  # JSON true/false: no time (Python counts bools as ints)
        return None
    if isinstance(value, int | float):  # seconds, or a smaller unit where seconds would pass the year 9999
        scale = next(x for x in (1.0, 1e-3, 1e-6, 1e-9) if float(value) * x < 253_402_300_800)
        return round(float(value) * scale * 1e6)
    if len(value) > 4 and value[4] == "/":
        value = value.replace("/", "-", 2)
    when = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value))  # nanoseconds: truncated
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _get(record: Any, *steps: Any) -> Any:
    for step in steps:
        if isinstance(step, int):
            record = record[step] if isinstance(record, list) and step < len(record) else None
        else:
            record = record.get(step) if isinstance(record, dict) else None
    return record


def _text(value: Any) -> str | None:
    """A string column's value: an object or a list as its JSON text."""
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value in (None, "", "-") else str(value)


def _raw(value: Any) -> str | None:
    """An address's or an agent's value: kept as logged ("" and "-" included)."""
    return value if value is None or isinstance(value, str) else str(_text(value))


def _num(value: Any, scale: float = 1.0) -> Any:
    if value is None or (isinstance(value, str) and value in ("", "-")):
        return None
    if isinstance(value, bool | dict | list):
        raise ValueError(f"not a number: {value!r}")
    if scale != 1.0:
        return float(value) / round(1 / scale)  # 9 ms: 0.009 s (9 * 1e-3 is 0.009000000000000001)
    return float(value) if isinstance(value, float) else int(value)


def _int(value: Any) -> int | None:
    """An integer column's value: digits (a JSON number or a string), else the line is no row."""
    text = _text(value)
    if text is None:
        return None
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"not an integer: {value!r}")
    return int(text)


def _status(value: Any) -> int:
    if not re.fullmatch(r"\d{3}", _text(value) or ""):
        raise ValueError(f"not a status: {value!r}")
    return int(value)


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), values[0])


def _host_port(addr: str | None) -> tuple[str | None, str | None]:
    if addr is None:
        return None, None
    host, colon, port = addr.rpartition(":")
    if colon and port.isdigit() and ((host.startswith("[") and host.endswith("]")) or ":" not in host):
        return host.strip("[]"), port
    return addr, None


def _split(target: Any) -> tuple[str | None, str | None]:
    target = target if isinstance(target, str) else _text(target)  # a number is read as its text
    if target is None:
        return None, None
    path, sep, query = target.partition("?")
    return _text(path), _text(query) if sep else None


def _agent(row: dict[str, Any], agent: str | None) -> None:
    row["user_agent"] = agent
    row["is_bot"] = None if agent is None else BOT_RE.search(agent) is not None


def caddy_row(r: dict[str, Any]) -> dict[str, Any] | None:
    req: dict[str, Any] = r["request"] if isinstance(r.get("request"), dict) else {}
    if _get(r, "request", "method") is None or r.get("status") is None:
        return None
    old_host, old_port = _host_port(_raw(req.get("remote_addr")))
    row: dict[str, Any] = {"ts": _ts(r.get("ts"))}
    row["ip"] = _first(_raw(req.get("client_ip")), _raw(req.get("remote_ip")), old_host)
    row["remote_ip"] = _first(_raw(req.get("remote_ip")), old_host)
    row["remote_port"] = _int(_first(req.get("remote_port"), old_port))
    row["user"] = _text(r.get("user_id"))
    row["method"] = _text(req.get("method"))
    row["path"], row["query"] = _split(req.get("uri"))
    row["protocol"], row["host"] = _text(req.get("proto")), _text(req.get("host"))
    row["status"] = _status(r["status"])
    row["bytes"], row["bytes_read"] = _int(r.get("size")), _int(r.get("bytes_read"))
    row["request_time"] = _num(r.get("duration"), 1.0) if r.get("duration") is not None else None
    if isinstance(row["request_time"], int):
        row["request_time"] = float(row["request_time"])
    row["referrer"] = _text(_get(r, "request", "headers", "Referer", 0))
    _agent(row, _raw(_get(r, "request", "headers", "User-Agent", 0)))
    tls = req.get("tls") or {}
    row["tls_version"], row["tls_cipher_suite"] = _text(tls.get("version")), _int(tls.get("cipher_suite"))
    row["tls_proto"], row["tls_server_name"] = _text(tls.get("proto")), _text(tls.get("server_name"))
    resumed = tls.get("resumed")
    row["tls_resumed"] = None if resumed is None else ("true" if resumed else "false")
    row |= {k: _text(r.get(k)) for k in ("level", "logger", "msg")}
    return row


_TRAEFIK_TEXT = {
    "client_addr": "ClientAddr",
    "method": "RequestMethod",
    "protocol": "RequestProtocol",
    "scheme": "RequestScheme",
    "host": "RequestHost",
    "request_addr": "RequestAddr",
}
_TRAEFIK_TEXT2 = {
    "router_name": "RouterName",
    "service_name": "ServiceName",
    "service_addr": "ServiceAddr",
    "service_url": "ServiceURL",
    "entry_point_name": "entryPointName",
    "tls_version": "TLSVersion",
    "tls_cipher": "TLSCipher",
    "referrer": "request_Referer",
}


def traefik_row(r: dict[str, Any]) -> dict[str, Any] | None:
    if r.get("RequestMethod") is None or r.get("DownstreamStatus") is None:
        return None
    row: dict[str, Any] = {"ts": _ts(_first(r.get("StartUTC"), r.get("StartLocal"), r.get("time")))}
    row["ip"], row["client_port"] = _raw(r.get("ClientHost")), _int(r.get("ClientPort"))
    row["client_addr"] = _text(r.get("ClientAddr"))
    row["user"] = _text(r.get("ClientUsername"))
    row |= {c: _text(r.get(k)) for c, k in _TRAEFIK_TEXT.items() if c != "client_addr"}
    row["path"], row["query"] = _split(r.get("RequestPath"))
    row["request_port"] = _int(r.get("RequestPort"))
    row["status"], row["bytes"] = _status(r["DownstreamStatus"]), _int(r.get("DownstreamContentSize"))
    row["request_content_size"] = _int(r.get("RequestContentSize"))
    origin = r.get("OriginStatus")
    row["origin_status"] = None if _text(origin) in (None, "0") else _status(origin)
    row["origin_content_size"] = _int(r.get("OriginContentSize"))
    for column, key in (("request_time", "Duration"), ("origin_duration", "OriginDuration")):
        row[column] = _num(r.get(key), 1e-9)
    row["overhead"] = _num(r.get("Overhead"), 1e-9)
    row["request_count"], row["retry_attempts"] = _int(r.get("RequestCount")), _int(r.get("RetryAttempts"))
    row |= {c: _text(r.get(k)) for c, k in _TRAEFIK_TEXT2.items()}
    _agent(row, _raw(r.get("request_User-Agent")))
    row |= {k: _text(r.get(k)) for k in ("level", "msg")}
    return row


ROWS = {"caddy": caddy_row, "traefik_json": traefik_row}


def reference(name: str, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows (grouped by UTC date, in line order within one) and the rejected lines' indexes."""
    rows, rejected = [], []
    for i, line in enumerate(lines):
        bare = line.removesuffix(b"\r")
        if not (bare.startswith(b"{") and bare.endswith(b"}")) or any(b < 32 and b != 13 for b in bare):
            rejected.append(i)  # not shaped as a JSON object: whitespace around it, or a raw control byte
            continue
        try:
            record = json.loads(line)
        except ValueError:
            rejected.append(i)
            continue
        row = ROWS[name](record) if isinstance(record, dict) else None
        if row is None or row["ts"] is None:
            rejected.append(i)
            continue
        rows.append((row["ts"] // 86_400_000_000, i, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [row for _, _, row in rows], rejected


def parsed(name: str, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    result = get_format(name).parse(b"".join(line + b"\n" for line in lines), 1)
    rows = batch_rows(result.batch)
    for row in rows:
        row["ts"] = row["ts"] if isinstance(row["ts"], int) else None
    order = [f.name for f in get_format(name).schema]
    return [{c: row[c] for c in order} for row in rows], [line - 1 for line, _ in reject_list(result.rejects)]


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for column, value in g.items():
            expected = w[column]
            if isinstance(value, float) and expected is not None:
                assert value == pytest.approx(expected, rel=1e-12), column
            else:
                assert value == expected, (column, g, w)


@pytest.mark.parametrize("name", sorted(JSON_SERVERS))
def test_the_documentations_lines_read_as_the_reference_reads_them(name: str) -> None:
    rows, rejected = parsed(name, DOC_LINES[name])
    want, want_rejected = reference(name, DOC_LINES[name])
    assert rejected == want_rejected == []
    _same(rows, want)


def test_a_few_documented_values() -> None:
    rows = {r["msg"] and r["remote_port"]: r for r in parsed("caddy", CADDY_DOC)[0]}
    new = rows[41342]
    assert (new["ip"], new["path"], new["query"], new["user_agent"], new["is_bot"]) == (
        "127.0.0.1",
        "/",
        None,
        "curl/7.82.0",
        True,
    )
    assert (
        new["ts"] == 1646861401524102 and new["request_time"] == 0.000929675 and new["tls_version"] == "772"
    )
    old = rows[63555]  # Caddy 2.4: remote_addr as host:port
    assert (old["ip"], old["remote_ip"], old["bytes"], old["user"]) == ("66.214.199.16",) * 2 + (0, None)
    v6 = rows[53176]
    assert (v6["ip"], v6["query"], v6["referrer"], v6["tls_version"]) == (
        "2001:db8::7",
        "a=1&b=%20",
        "https://example.org/",
        None,
    )
    traefik = {r["client_port"]: r for r in parsed("traefik_json", TRAEFIK_DOC)[0]}
    assert traefik[31073]["request_time"] == pytest.approx(0.001964899)
    assert traefik[49880]["origin_status"] is None and traefik[31073]["origin_status"] == 404
    start = datetime(2026, 9, 29, 23, 5, 40, 189830, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    assert (
        traefik[52654]["ts"] == start // timedelta(microseconds=1)
        and traefik[52654]["user_agent"] == "Googlebot/2.1"
    )


# --- generated lines: every field's variants ------------------------------------------------------------


def _when(rng: random.Random) -> datetime:
    return datetime(2015, 1, 1, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(400_000_000), microseconds=rng.randrange(10**6)
    )


CADDY_TIMES = ["float", "int", "milli", "nano", "iso", "iso_off", "rfc_nano", "wall", "wall_milli"]


def _caddy_ts(rng: random.Random, form: str | None) -> Any:
    """A time as one of Caddy's ``time_format`` settings writes it (``form``; None: any, line by line)."""
    when = _when(rng)
    form = form or rng.choice(CADDY_TIMES)
    if form == "float":
        return round(when.timestamp(), 6)
    if form == "int":
        return int(when.timestamp())
    if form == "milli":  # unix_milli_float
        return round(when.timestamp() * 1000, 3)
    if form == "nano":  # unix_nano
        return int(when.timestamp()) * 10**9 + when.microsecond * 1000 + rng.randrange(1000)
    if form == "iso":  # Go's layout 2006-01-02T15:04:05.000Z0700: Z, or an offset without its colon
        offset = rng.choice(["Z", "+0100", "-0530"])
        local = (
            when.astimezone(timezone(timedelta(hours=int(offset[:3]), minutes=int(offset[0] + offset[3:]))))
            if offset != "Z"
            else when
        )
        return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + offset
    if form == "iso_off":
        return when.astimezone(timezone(timedelta(hours=-5))).isoformat()
    if form == "rfc_nano":
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}123Z"
    return when.strftime("%Y/%m/%d %H:%M:%S") + (
        f".{when.microsecond // 1000:03d}" if form == "wall_milli" else ""
    )


_AGENTS = [
    "curl/8.0",
    "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0",
    "Googlebot/2.1",
    'caf\u00e9 "q"',
]
_URIS = ["/", "/a/b?c=1&d=2", "/x?", "/caf%C3%A9", "/p?q=a?b", "*", "/a b"]


def make_caddy(rng: random.Random, ts_form: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {}
    addr = rng.choice(["1.2.3.4", "2001:db8::1", "10.0.0.7"])
    if rng.random() < 0.3:
        request["remote_addr"] = (
            f"[{addr}]:{rng.randrange(65536)}" if ":" in addr else f"{addr}:{rng.randrange(65536)}"
        )
    else:
        request["remote_ip"], request["remote_port"] = addr, rng.choice([str(rng.randrange(65536)), ""])
        if rng.random() < 0.7:
            request["client_ip"] = rng.choice([addr, "203.0.113.9", ""])
    request |= {
        "proto": rng.choice(["HTTP/1.1", "HTTP/2.0", "HTTP/3.0"]),
        "method": rng.choice(["GET", "POST"]),
    }
    request |= {"host": rng.choice(["example.org", "", "caf\u00e9.example"]), "uri": rng.choice(_URIS)}
    headers: dict[str, Any] = {}
    if rng.random() < 0.8:
        headers["User-Agent"] = rng.choice([[rng.choice(_AGENTS)], [], ["a", "b"]])
    if rng.random() < 0.5:
        headers["Referer"] = [rng.choice(["https://example.org/", "-", ""])]
    if rng.random() < 0.5:
        headers["Accept"] = ["*/*"]
    request["headers"] = headers
    if rng.random() < 0.5:
        request["tls"] = {
            "resumed": rng.random() < 0.5,
            "version": rng.choice([771, 772]),
            "cipher_suite": 4865,
        }
        request["tls"] |= {"proto": rng.choice(["h2", "http/1.1", ""]), "server_name": "example.org"}
    record: dict[str, Any] = {
        "level": "info",
        "ts": _caddy_ts(rng, ts_form),
        "logger": "http.log.access.log0",
    }
    record |= {"msg": "handled request", "request": request}
    if rng.random() < 0.7:
        record |= {"bytes_read": rng.randrange(5000), "user_id": rng.choice(["", "alice"])}
    record |= {"duration": rng.choice([0.000929675, 1, 12.5, 3e-05]), "size": rng.randrange(10**7)}
    record |= {"status": rng.choice([200, 304, 404, 502]), "resp_headers": {"Server": ["Caddy"]}}
    return record


def make_traefik(rng: random.Random, ts_form: str | None = None) -> dict[str, Any]:
    when = _when(rng)
    addr = rng.choice(["1.2.3.4", "2001:db8::1"])
    port = rng.randrange(65536)
    record: dict[str, Any] = {
        "ClientAddr": f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}",
        "ClientHost": addr,
        "ClientPort": str(port),
        "ClientUsername": rng.choice(["-", "alice"]),
        "DownstreamContentSize": rng.randrange(10**6),
        "DownstreamStatus": rng.choice([200, 404, 499, 502]),
        "Duration": rng.randrange(10**10),
        "RequestAddr": "example.org",
        "RequestContentSize": rng.randrange(100),
        "RequestCount": rng.randrange(1, 10**6),
        "RequestHost": "example.org",
        "RequestMethod": rng.choice(["GET", "PUT"]),
        "RequestPath": rng.choice(_URIS),
        "RequestPort": rng.choice(["-", "443"]),
        "RequestProtocol": "HTTP/2.0",
        "RequestScheme": rng.choice(["http", "https"]),
        "RetryAttempts": rng.randrange(3),
        "StartLocal": when.isoformat(),
        "StartUTC": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}{rng.randrange(1000):03d}Z",
        "level": "info",
        "msg": "",
        "time": when.replace(microsecond=0).isoformat(),
    }
    if rng.random() < 0.6:  # a backend answered
        record |= {"OriginContentSize": rng.randrange(10**6), "OriginDuration": rng.randrange(10**9)}
        record |= {"OriginStatus": rng.choice([200, 404]), "Overhead": rng.randrange(10**6)}
        record |= {"RouterName": "web@docker", "ServiceName": "web@docker", "ServiceAddr": "10.0.0.2:80"}
        record["ServiceURL"] = "http://10.0.0.2:80"
    else:
        record |= {"OriginStatus": 0, "Overhead": rng.randrange(10**6)}
    if rng.random() < 0.3:
        del record["StartUTC"]
        if rng.random() < 0.5:
            del record["StartLocal"]
    if rng.random() < 0.5:
        record |= {"TLSVersion": "1.3", "TLSCipher": "TLS_AES_128_GCM_SHA256", "entryPointName": "websecure"}
    if rng.random() < 0.6:
        record["request_User-Agent"] = rng.choice(_AGENTS)
    if rng.random() < 0.4:
        record["request_Referer"] = rng.choice(["https://example.org/", "-"])
    return record


MAKE = {"caddy": make_caddy, "traefik_json": make_traefik}


def make(name: str, rng: random.Random, ts_form: str | None = None) -> bytes:
    record = MAKE[name](rng, ts_form)
    items = list(record.items())
    if rng.random() < 0.3:
        rng.shuffle(items)
    return json.dumps(dict(items), ensure_ascii=rng.random() < 0.5).encode()


@pytest.mark.parametrize("name", sorted(JSON_SERVERS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_lines_read_as_the_reference_reads_them(name: str, seed: int) -> None:
    rng = random.Random(seed)
    lines = [make(name, rng) for _ in range(300)]
    rows, rejected = parsed(name, lines)
    want, want_rejected = reference(name, lines)
    assert rejected == want_rejected == []
    _same(rows, want)


@pytest.mark.parametrize(("name", "ts_form"), [("traefik_json", None), *(("caddy", f) for f in CADDY_TIMES)])
def test_good_lines_never_go_line_by_line(
    name: str, ts_form: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nested objects with differing keys are one struct column for Arrow: no chunk of good lines (of
    one time format, as a server writes them) is read with json.loads, nor any of its times one by one."""

    def refuse(*args: Any) -> Any:
        raise AssertionError("read line by line")

    class NoTimeLineByLine:
        @staticmethod
        def fromisoformat(text: str) -> Any:
            raise AssertionError(f"a time read line by line: {text}")

    monkeypatch.setattr(jsonl_module, "_read_each", refuse)
    monkeypatch.setattr(jsonl_module, "datetime", NoTimeLineByLine)
    rng = random.Random(5)
    lines = [make(name, rng, ts_form) for _ in range(200)]
    rows, rejected = parsed(name, lines)
    assert len(rows) == 200 and not rejected


@pytest.mark.parametrize("name", sorted(JSON_SERVERS))
def test_junk_and_other_loggers_lines_are_rejects_among_rows(name: str) -> None:
    rng = random.Random(11)
    other = MAKE["traefik_json" if name == "caddy" else "caddy"]
    lines = [make(name, rng) for _ in range(40)]
    junk = [
        b'{"level":"info","ts":1622829915.9538262,"logger":"admin","msg":"admin endpoint started"}',
        json.dumps(other(rng)).encode(),
        lines[0][:-5],
        b"not json",
        b"",
        b'{"RequestMethod":{"a":1},"DownstreamStatus":200,"StartUTC":"2026-01-01T00:00:00Z",'
        b'"request":{"method":["GET"]},"status":200,"ts":1}',
        b'{"request":"GET /","status":200,"ts":1,"RequestMethod":"GET","DownstreamStatus":"x"}',
    ]
    mixed = lines[:10] + junk + lines[10:]
    rows, rejected = parsed(name, mixed)
    want, want_rejected = reference_or_reject(name, mixed)
    assert rejected == want_rejected
    _same(rows, want)


def reference_or_reject(name: str, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    """The reference, where a row it cannot type (a status that is not a number) is a reject, as the
    format makes it."""
    good, bad = [], []
    for i, line in enumerate(lines):
        try:
            rows = reference(name, [line])[0]
        except (ValueError, TypeError, AttributeError):
            rows = []
        if rows:
            good.append(line)
        else:
            bad.append(i)
    return reference(name, good)[0], bad


# --- detection and runs -----------------------------------------------------------------------------------


def test_auto_and_detect_name_the_json_formats_before_a_generic_key_map() -> None:
    rng = random.Random(3)
    for name in JSON_SERVERS:
        lines = [make(name, rng) for _ in range(20)]
        assert detect(lines)[0] == (name, 20)
        assert choose(lines) == (name, 20)
        # another logger's messages in the same file: still the built-in while it reads half the lines
        startup = [b'{"level":"info","ts":1622829915.95,"logger":"admin","msg":"admin endpoint started"}']
        assert choose(lines + startup * 19) == (name, 20)
    generic = [b'{"time":"2026-03-14T23:21:12+01:00","status":200,"path":"/"}'] * 5
    chosen = choose(generic)
    assert chosen is not None and chosen[0] != "caddy" and chosen[0] != "traefik_json"


def _write_mixed(inputs: Path) -> dict[str, int]:
    """A folder of JSON and text logs; how many rows each file gives."""
    rng = random.Random(9)
    inputs.mkdir()
    counts = {}
    for name in JSON_SERVERS:
        lines = DOC_LINES[name] + [make(name, rng) for _ in range(400)]
        (inputs / f"{name}.log").write_bytes(b"".join(line + b"\n" for line in lines))
        counts[name] = len(lines)
    combined = b'1.2.3.4 - - [14/Mar/2026:23:21:12 +0100] "GET / HTTP/1.1" 200 512 "-" "curl/8.0"\n'
    (inputs / "combined.log").write_bytes(combined * 50)
    counts["combined"] = 50
    traefik = (
        b'10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] "GET /p HTTP/1.1" 200 5 "-" "curl/8.0" 1 '
        b'"web@docker" "http://10.1.0.1:80" 3ms\n'
    )
    (inputs / "traefik.log").write_bytes(traefik * 30)
    counts["traefik"] = 30
    return counts


@pytest.mark.slow
def test_a_folder_of_json_and_text_logs_read_with_auto(tmp_path: Path) -> None:
    inputs = tmp_path / "logs"
    counts = _write_mixed(inputs)
    for name in counts:
        chosen = choose((inputs / f"{name}.log").read_bytes().splitlines())
        assert chosen is not None and chosen[0] == name
    detect_proc = run_cli("detect", *[str(p) for p in sorted(inputs.iterdir())])
    assert detect_proc.returncode == 0, detect_proc.stderr
    for name in counts:
        assert f"{name}.log: {name}, " in detect_proc.stdout
    assert "Caddy v2 JSON access log: https://caddyserver.com/" in detect_proc.stdout


@pytest.mark.slow
def test_process_workers_write_what_a_serial_run_writes(tmp_path: Path) -> None:
    inputs = tmp_path / "logs"
    counts = _write_mixed(inputs)
    tables = []
    for executor in ("process", "inline"):
        out = tmp_path / executor
        proc = run_cli(
            "run",
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--set",
            'run.format="auto"',
            "--set",
            f'parse.executor="{executor}"',
            "--set",
            "read.chunk_bytes=65536",
        )
        assert proc.returncode == 0, proc.stderr
        tables.append(read_output(out))
    assert tables[0].num_rows == sum(counts.values())
    assert tables[0].equals(tables[1])


def test_an_older_caddy_peer_address_without_a_port_is_its_own_host() -> None:
    base = {"ts": 1700000000.5, "status": 200, "request": {"method": "GET", "uri": "/"}}
    lines = []
    for addr in ("10.0.0.7", "10.0.0.7:8080", "[2001:db8::1]:443", "2001:db8::1"):
        record = json.loads(json.dumps(base))
        record["request"]["remote_addr"] = addr
        lines.append(json.dumps(record).encode())
    rows, rejected = parsed("caddy", lines)
    assert rejected == []
    assert [(r["ip"], r["remote_port"]) for r in rows] == [
        ("10.0.0.7", None),
        ("10.0.0.7", 8080),
        ("2001:db8::1", 443),
        ("2001:db8::1", None),
    ]
