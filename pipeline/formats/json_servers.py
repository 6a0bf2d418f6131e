"""The built-in JSON access logs: Caddy's and Traefik's, each a table of output columns and the key
paths (:mod:`pipeline.formats.jsonpath`) that give them, typed as the documentation describes them.

They are read as key maps are (:mod:`pipeline.formats.jsonl`: the compiled read where it takes the chunk,
else Arrow's JSON reader over the chunk, line by line for a chunk it stops in); a column's value is the
first of its key paths that has one, which reads older versions' keys (Caddy before 2.5 logged
``remote_addr`` as ``host:port``). A line without
the format's ``required`` keys (another logger's line in the same file: Caddy's startup messages) is a
reject, ``no match``. The catalogue of docs/formats.md is generated from :data:`JSON_SERVERS`
(:func:`json_servers_markdown`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """An output column, the key paths it is read from (the first with a value), its type and notes.

    ``kind``: a :class:`~pipeline.formats.spec.Field` kind; ``scale``: times the number gives seconds;
    ``part``: ``host``/``port`` of an address, ``path``/``query`` of a request target (see
    :class:`pipeline.formats.jsonl.Entry`)."""

    name: str
    keys: tuple[str, ...]
    kind: str = "string"
    scale: float = 1.0
    part: str = ""
    note: str = ""
    nulls: tuple[bytes, ...] = ()  # what else than "-" (and "") is null


@dataclass(frozen=True)
class JsonServer:
    """A built-in JSON access log: what it is, where its fields are documented, its columns and the key
    paths a line must have."""

    title: str
    url: str
    columns: tuple[Column, ...]
    required: tuple[str, ...]
    note: str = ""


def _c(name: str, *keys: str, kind: str = "string", **more: Any) -> Column:
    return Column(name, keys, kind, **more)


_UA = 'request.headers["User-Agent"][0]'
_ADDR = "request.remote_addr"  # Caddy before 2.5: "host:port"

# https://caddyserver.com/docs/caddyfile/directives/log (the http.log.access logger's entries)
_CADDY = (
    _c(
        "ts",
        "ts",
        kind="time_local",
        note="any `time_format`: `unix_seconds_float` (the default), `unix_milli_float`, `unix_nano`, "
        "`iso8601`, `rfc3339`, `rfc3339_nano`, `wall`, `wall_milli`, `wall_nano` (no offset: read as "
        "UTC) or `common_log`",
    ),
    _c(
        "ip",
        "request.client_ip",
        "request.remote_ip",
        _ADDR,
        kind="ip",
        part="host",
        note="the client: `client_ip` (after `trusted_proxies`), else the peer",
    ),
    _c("remote_ip", "request.remote_ip", _ADDR, kind="ip", part="host", note="the peer, as logged"),
    _c("remote_port", "request.remote_port", _ADDR, kind="int", part="port"),
    _c("user", "user_id", kind="user", note='"" is null'),
    _c("method", "request.method"),
    _c("path", "request.uri", part="path", note="`uri` before its first `?`"),
    _c("query", "request.uri", part="query", note="`uri` after its first `?`; null without one"),
    _c("protocol", "request.proto"),
    _c("host", "request.host"),
    _c("status", "status", kind="status"),
    _c("bytes", "size", kind="int", note="response body bytes"),
    _c("bytes_read", "bytes_read", kind="int", note="request body bytes"),
    _c(
        "request_time",
        "duration",
        kind="duration",
        note="`duration_format` `seconds` (the default); `string` (`1.5ms`) is a reject, and the "
        "integers of `nano` or `ms` would read as seconds: map `duration` in a key map for those",
    ),
    _c("referrer", "request.headers.Referer[0]"),
    _c("user_agent", _UA, kind="agent"),
    _c("tls_version", "request.tls.version", note="as logged: 772 is TLS 1.3 (a string, as Traefik's)"),
    _c("tls_cipher_suite", "request.tls.cipher_suite", kind="int"),
    _c("tls_proto", "request.tls.proto", note="ALPN: h2, http/1.1"),
    _c("tls_server_name", "request.tls.server_name"),
    _c("tls_resumed", "request.tls.resumed", note="true or false"),
    _c("level", "level"),
    _c("logger", "logger"),
    _c("msg", "msg"),
)

_NS = 1e-9
# https://doc.traefik.io/traefik/observability/access-logs/ (format = "json"; headers kept as request_<Name>)
_TRAEFIK = (
    _c(
        "ts",
        "StartUTC",
        "StartLocal",
        "time",
        kind="time_local",
        note="`StartUTC`, else `StartLocal`, else the entry's `time`",
    ),
    _c("ip", "ClientHost", kind="ip"),
    _c("client_port", "ClientPort", kind="int"),
    _c("client_addr", "ClientAddr"),
    _c("user", "ClientUsername", kind="user", note='"-" is null'),
    _c("method", "RequestMethod"),
    _c("path", "RequestPath", part="path", note="`RequestPath` before its first `?`"),
    _c("query", "RequestPath", part="query", note="`RequestPath` after its first `?`; null without one"),
    _c("protocol", "RequestProtocol"),
    _c("scheme", "RequestScheme"),
    _c("host", "RequestHost"),
    _c("request_addr", "RequestAddr"),
    _c("request_port", "RequestPort", kind="int", note='"-" is null'),
    _c("status", "DownstreamStatus", kind="status"),
    _c("bytes", "DownstreamContentSize", kind="int", note="response body bytes"),
    _c("request_content_size", "RequestContentSize", kind="int"),
    _c(
        "origin_status",
        "OriginStatus",
        kind="status",
        nulls=(b"0",),
        note="0 (no backend answered) is null",
    ),
    _c("origin_content_size", "OriginContentSize", kind="int"),
    _c("request_time", "Duration", kind="duration", scale=_NS, note="nanoseconds, as seconds"),
    _c("origin_duration", "OriginDuration", kind="duration", scale=_NS, note="nanoseconds, as seconds"),
    _c("overhead", "Overhead", kind="duration", scale=_NS, note="nanoseconds, as seconds"),
    _c("request_count", "RequestCount", kind="int"),
    _c("retry_attempts", "RetryAttempts", kind="int"),
    _c("router_name", "RouterName"),
    _c("service_name", "ServiceName"),
    _c("service_addr", "ServiceAddr"),
    _c("service_url", "ServiceURL"),
    _c("entry_point_name", "entryPointName"),
    _c("tls_version", "TLSVersion"),
    _c("tls_cipher", "TLSCipher"),
    _c("referrer", "request_Referer", note="kept only where the headers' mode keeps it"),
    _c("user_agent", "request_User-Agent", kind="agent", note="kept only where the headers' mode keeps it"),
    _c("level", "level"),
    _c("msg", "msg"),
)

JSON_SERVERS: dict[str, JsonServer] = {
    "caddy": JsonServer(
        "Caddy v2 JSON access log",
        "https://caddyserver.com/docs/caddyfile/directives/log",
        _CADDY,
        ("request.method", "status"),
        "Caddy's default `json` encoder; lines without `request.method` and `status` (other loggers' "
        "messages) are rejects. Caddy before 2.5 logged `request.remote_addr` (`host:port`), read "
        "for `ip`, `remote_ip` and `remote_port`",
    ),
    "traefik_json": JsonServer(
        "Traefik access log, JSON",
        "https://doc.traefik.io/traefik/observability/access-logs/",
        _TRAEFIK,
        ("RequestMethod", "DownstreamStatus"),
        'the access log with `format = "json"`; lines without `RequestMethod` and `DownstreamStatus` are '
        "rejects; the CLF variant is `traefik`",
    ),
}


def json_servers_markdown() -> str:
    """The docs/formats.md section of the built-in JSON formats: per format, its documentation and
    each column with its key paths, its Arrow type and notes."""
    from pipeline.formats.jsonl import builtin_plan

    out = []
    for name, server in JSON_SERVERS.items():
        out += [f"#### `{name}`: {server.title}", "", f"Fields: <{server.url}>. {server.note}.", ""]
        out += [
            "| column | key paths (the first with a value) | Arrow type | notes |",
            "| --- | --- | --- | --- |",
        ]
        types = {f.name: f.type for f in builtin_plan(name).schema()}
        for c in server.columns:
            keys = ", ".join(f"`{k}`" for k in c.keys)
            out.append(f"| `{c.name}` | {keys} | {types[c.name]} | {c.note} |")
            if c.kind == "agent":
                out.append(f"| `is_bot` | (from `{c.name}`) | {types['is_bot']} | |")
        out.append("")
    return "\n".join(out)
