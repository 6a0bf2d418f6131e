"""The parse of one 1.5 MiB chunk of each built-in server format's lines (W3C logs included), per MiB,
beside the pasted-format engine on its own lines (``upstream_time``), in CPU milliseconds (median of
alternating rounds); and each format on lines it does not read (``combined`` lines), which are rejects,
also beside the format on its own lines; how many values (rows times columns) a KiB of each format's
lines holds; and the JSON formats' lines with one malformed line among them, and Traefik's with an
escape in every line.

    nice -n 19 python bench/server_formats.py [--rounds 21] [--compiled]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNK_BYTES = 1536 << 10
_UA = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/{a}"
_ALB_HEAD = (
    "https 2026-11-01T10:{m:02d}:{s:02d}.{n:06d}Z app/lb/50dc6c495c0c9188 10.0.{a}.{b}:{n} 10.1.0.{a}:80 "
    '0.000 0.0{a:02d} 0.000 {st} {st} 34 {n} "GET https://example.org:443/p/{n}?q={a} HTTP/1.1" "'
    + _UA
    + '" '
    "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:1234:targetgroup/t/73e2 "
    '"Root=1-58337262-36d228ad5d99923122bb{b:04d}"'
)
LINES = {
    "upstream_time": (
        '10.0.{a}.{b} - - [01/Nov/2026:10:{m:02d}:{s:02d} +0000] "GET /p/{n}?q={a} HTTP/1.1" {st} {n} '
        '"https://example.org/{b}" "' + _UA + '" rt=0.{b:03d} uct="0.001" uht="0.0{a:02d}" urt="0.0{a:02d}"'
    ),
    "alb": _ALB_HEAD + ' "example.org" "arn:aws:acm:us-east-2:123456789012:certificate/1234" 1 '
    '2026-11-01T10:{m:02d}:{s:02d}.000000Z "forward" "-" "-" "10.1.0.{a}:80" "{st}" "-" "-" TID_{n:08x}',
    "alb (2016 lines)": _ALB_HEAD,
    "elb": (
        "2026-11-01T10:{m:02d}:{s:02d}.{n:06d}Z my-lb 10.0.{a}.{b}:{n} 10.1.0.{a}:80 0.000073 0.0{a:02d} "
        '0.000057 {st} {st} 0 {n} "GET https://example.org:443/p/{n}?q={a} HTTP/1.1" "' + _UA + '" '
        "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2"
    ),
    "s3": (
        "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be bucket "
        "[01/Nov/2026:10:{m:02d}:{s:02d} +0000] 10.0.{a}.{b} arn:aws:iam::123456789012:user/a "
        "3E57427F3E{n:06d} REST.GET.OBJECT p/{n} "
        '"GET /bucket/p/{n}?q={a} HTTP/1.1" {st} - {n} {n} {a} {b} "-" "' + _UA + '" - '
        "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 "
        "ECDHE-RSA-AES128-GCM-SHA256 AuthHeader bucket.s3.us-west-1.amazonaws.com TLSv1.2 - -"
    ),
    "haproxy": (
        "Nov  1 10:{m:02d}:{s:02d} lb-1 haproxy[14389]: 10.0.{a}.{b}:{n} "
        "[01/Nov/2026:10:{m:02d}:{s:02d}.{a:03d}] "
        'http-in static/srv{a} 10/0/30/{b}/109 {st} {n} - - ---- 1/1/1/1/0 0/0 "GET /p/{n}?q={a} HTTP/1.1"'
    ),
    "envoy": (
        '[2026-11-01T10:{m:02d}:{s:02d}.{a:03d}Z] "GET /p/{n}?q={a} HTTP/1.1" {st} - 0 {n} {b} {a} '
        '"10.0.{a}.{b}" '
        '"' + _UA + '" "cc21d9b0-cf5c-432b-8c7e-98aeb79{n:05d}" "example.org" "10.1.0.{a}:80"'
    ),
    "traefik": (
        '10.0.{a}.{b} - - [01/Nov/2026:10:{m:02d}:{s:02d} +0000] "GET /p/{n}?q={a} HTTP/1.1" {st} {n} '
        '"https://example.org/{b}" "' + _UA + '" {n} "web@docker" "http://10.1.0.{a}:80" {b}ms'
    ),
    "upstreaminfo": (
        '10.0.{a}.{b} - - [01/Nov/2026:10:{m:02d}:{s:02d} +0000] "GET /p/{n}?q={a} HTTP/1.1" {st} {n} '
        '"https://example.org/{b}" "'
        + _UA
        + '" 312 0.{b:03d} [default-web-80] [] 10.1.0.{a}:80 {n} 0.{b:03d} '
        "{st} 5f0c{n:08x}"
    ),
    # IIS's default fields, and CloudFront's 33 (tab-separated): the formats' fields without a header
    "w3c": (
        "2026-11-01 10:{m:02d}:{s:02d} 10.1.0.{a} GET /p/{n} q={a} 443 - 10.0.{a}.{b} "
        + _UA.replace(" ", "+")
        + " https://example.org/{b} {st} 0 0 {b}"
    ),
    "cloudfront": "\t".join(
        [
            *("2026-11-01", "10:{m:02d}:{s:02d}", "SEA19-C{a}", "{n}", "10.0.{a}.{b}", "GET"),
            *("d111111abcdef8.cloudfront.net", "/p/{n}", "{st}", "https://example.org/{b}"),
            _UA.replace(" ", "%20"),
            *("q={a}", "-", "Hit", "kBkDzGnceVtWHqSCqBUqtA_cEs2T3tFUBbnBNkB9El_{n:08x}", "example.org"),
            *("https", "{a}", "0.{b:03d}", "-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "Hit", "HTTP/2.0"),
            *("-", "-", "{n}", "0.{b:03d}", "Hit", "text/html", "{n}", "-", "-"),
        ]
    ),
}
# HAProxy logging to stdout (no prefix: its last variants), and Istio's Envoy lines (its first)
LINES["haproxy (no prefix)"] = LINES["haproxy"].split("]: ", maxsplit=1)[1]
LINES["envoy (Istio's)"] = LINES["envoy"].replace(" - 0 {n}", ' - via_upstream - "-" 0 {n}') + (
    " outbound|80||web.default.svc.cluster.local 10.0.9.{a}:4{n:04d} 10.1.0.{a}:80 10.0.{a}.{b}:{n} - default"
)
LINES["combined"] = LINES["upstream_time"].split(" rt=")[0]
# the JSON access logs, and the same Caddy lines read with a key map of nested paths (format "jsonl")
LINES["caddy"] = (
    '{{"level":"info","ts":1793527{m:02d}{s:02d}.{n:06d},"logger":"http.log.access","msg":"handled request",'
    '"request":{{"remote_ip":"10.0.{a}.{b}","remote_port":"{n}","client_ip":"10.0.{a}.{b}","proto":"HTTP/2.0",'
    '"method":"GET","host":"example.org","uri":"/p/{n}?q={a}","headers":{{"User-Agent":["' + _UA + '"],'
    '"Accept":["*/*"],"Referer":["https://example.org/{b}"]}},"tls":{{"resumed":false,"version":772,'
    '"cipher_suite":4865,"proto":"h2","server_name":"example.org"}}}},"bytes_read":0,"user_id":"",'
    '"duration":0.0{a:02d}{b:03d},"size":{n},"status":{st},"resp_headers":{{"Server":["Caddy"]}}}}'
)
LINES["traefik_json"] = (
    '{{"ClientAddr":"10.0.{a}.{b}:{n}","ClientHost":"10.0.{a}.{b}","ClientPort":"{n}","ClientUsername":"-",'
    '"DownstreamContentSize":{n},"DownstreamStatus":{st},"Duration":1{n}{b},"OriginContentSize":{n},'
    '"OriginDuration":{n},"OriginStatus":{st},"Overhead":{b},"RequestAddr":"example.org",'
    '"RequestContentSize":0,"RequestCount":{n},"RequestHost":"example.org","RequestMethod":"GET",'
    '"RequestPath":"/p/{n}?q={a}","RequestPort":"-","RequestProtocol":"HTTP/1.1","RequestScheme":"http",'
    '"RetryAttempts":0,"RouterName":"web@docker","ServiceAddr":"10.1.0.{a}:80","ServiceName":"web@docker",'
    '"ServiceURL":"http://10.1.0.{a}:80","StartLocal":"2026-11-01T10:{m:02d}:{s:02d}.{n:09d}Z",'
    '"StartUTC":"2026-11-01T10:{m:02d}:{s:02d}.{n:09d}Z","entryPointName":"web","level":"info","msg":"",'
    '"request_User-Agent":"' + _UA + '","time":"2026-11-01T10:{m:02d}:{s:02d}Z"}}'
)
LINES["jsonl (Caddy lines, nested key map)"] = LINES["caddy"]
JSONL_CADDY = {
    "ts": "ts",
    "ip": "request.client_ip",
    "request_method": "request.method",
    "uri": "request.uri",
    "status": "status",
    "bytes": "size",
    "request_time": "duration",
    "user_agent": 'request.headers["User-Agent"][0]',
    "referrer": "request.headers.Referer[0]",
}


def chunk(template: str) -> bytes:
    """Complete lines of ``template`` filling about 1.5 MiB."""
    lines, size, n = [], 0, 0
    while size < CHUNK_BYTES:
        a, b = n % 97, n % 251
        line = template.format(a=a, b=b, m=n // 60 % 60, s=n % 60, n=n, st="200" if n % 7 else "404")
        lines.append(line.encode() + b"\n")
        size += len(lines[-1])
        n += 1
    return b"".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--compiled", action="store_true", help="with the engine's compiled loops loaded")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import json

    if args.compiled:
        import pipeline.formats.kernels  # noqa: F401  (as a worker of a large run has them)

    from pipeline.formats import get_format

    def key_of(label: str) -> Any:
        name = label.split(" ", maxsplit=1)[0]
        return ("jsonl", json.dumps(JSONL_CADDY)) if name == "jsonl" else name

    cases = [(label, key_of(label), chunk(LINES[label])) for label in LINES if label != "combined"]
    others = chunk(LINES["combined"])
    cases += [
        (f"{name if isinstance(name, str) else 'jsonl'} (combined lines: rejects)", name, others)
        for name in (
            "upstream_time",
            *(n for n in LINES if " " not in n and n not in ("combined", "upstream_time")),
            ("jsonl", json.dumps(JSONL_CADDY)),
        )
    ]
    # Go's HTML-safe escape of "&" in every line's path (Traefik's JSON): decoded by the compiled read
    escaped = chunk(LINES["traefik_json"].replace('?q={a}"', '?q={a}\\u0026r={b}"'))
    cases.append(("traefik_json (an escape in every path)", "traefik_json", escaped))
    for name in ("caddy", "traefik_json"):  # a malformed object among good lines: Arrow reads around it
        lines = chunk(LINES[name]).split(b"\n")
        malformed = b"\n".join([*lines[:100], b'{"ts": 1, "request": }', *lines[100:]])
        cases.append((f"{name} (one malformed line: rejects)", name, malformed))
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _ in range(args.rounds):  # alternating, so that a busy moment of the machine costs each alike
        for label, name, data in cases:
            fmt = get_format(name)
            start = time.process_time()
            result = fmt.parse(data, 1)
            times[label].append((time.process_time() - start) / (len(data) / (1 << 20)) * 1e3)
            if "rejects" not in label:
                assert len(result.rejects) == 0, label
    base = statistics.median(times["upstream_time"])
    own_label: dict[str, str] = {}  # each format's own lines: its first case (not a variant's)
    for label, name, _ in cases:
        if "rejects" not in label:
            own_label.setdefault(str(name), label)
    columns = ("CPU ms/MiB", "vs upstream_time", "vs its own lines", "values/KiB")
    print(f"{'format':40} {columns[0]:>10} {columns[1]:>17} {columns[2]:>17} {columns[3]:>10}")  # noqa: T201
    for label, name, data in cases:
        median = statistics.median(times[label])
        own = own_label[str(name)] if "rejects" in label else label
        versus = f"{statistics.median(times[own]) / median:16.2f}x" if "rejects" in label else ""
        values = "" if "rejects" in label else f"{_values(name, data) / (len(data) / 1024):10.0f}"
        print(f"{label:40} {median:10.1f} {base / median:16.2f}x {versus:>17} {values:>10}")  # noqa: T201
    return 0


def _values(name: str, data: bytes) -> int:
    """How many values a chunk's rows hold (rows times columns): what the parse's work grows with."""
    from pipeline.formats import get_format

    batch = get_format(name).parse(data, 1).batch
    return int(batch.num_rows * batch.num_columns)


if __name__ == "__main__":
    sys.exit(main())
