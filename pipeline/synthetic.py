"""A deterministic generator of synthetic combined-format access logs (``logpipe sample``).

The same seed gives the same bytes. A fraction ``bad`` of lines is malformed on purpose, cycling
through every reject class the parser knows (plus valid-but-unusual lines: IPv6 clients, escaped
quotes, the request ``"-"``, CRLF line ends), so tests can check each class.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

COMPRESSIONS = ("none", "gzip", "bz2", "xz", "zstd")
_SUFFIX = {"none": "", "gzip": ".gz", "bz2": ".bz2", "xz": ".xz", "zstd": ".zst"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_METHODS = ["GET"] * 17 + ["POST"] * 2 + ["HEAD", "PUT", "DELETE"]
_STATUS = [200] * 16 + [304, 301, 302, 404, 404, 500, 503, 201, 204]
_PATHS = (
    "/",
    "/index.html",
    "/api/v2/orders/{n}",
    "/assets/main.{n}.css",
    "/search?q=w{n}&page={p}",
    "/account",
    "/shop/item/{n}?src=mail",
    "/feed.xml",
    "/favicon.ico",
    "/docs/{n}/intro",
)
_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0",
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Screaming Frog SEO Spider/20.0",
    "curl/8.11.0",
    "Python-Requests/2.32",
    "-",
)
_REFERRERS = ("-", "https://duckduckgo.com/", "https://example.org/", "https://example.org/shop/item/7")
_ZONES = ("+0000", "+0100", "-0500", "+0530", "-0930", "+1345")

# Malformed lines, one per reject reason (the reason is in the comment), cycled through in order.
BAD_LINES: tuple[bytes, ...] = (
    b"",  # empty line
    b"this is not an access log line",  # no match
    b'10.1.1.1 - - [31/Apr/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "-"',  # bad timestamp
    b'10.1.1.2 - - [01/Nov/2026:25:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "-"',  # bad timestamp
    b'10.1.1.3 - - [01/Nov/2026:10:00:00 +0000] "GET /\xff\xfe HTTP/1.1" 200 5 "-" "-"',  # invalid UTF-8
    b"\x00\x00\x00\x01binary\x00junk",  # NUL byte
    # out-of-range number
    b'10.1.1.4 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 99999999999999999999 "-" "-"',
    b'10.1.1.5 - - [01/Nov/2026:10:00:00 +0000] "GET /cut-off',  # no match
    b'10.1.1.6 - - [01/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" abc 5 "-" "-"',  # no match
)
# Valid but unusual lines, mixed in at the same rate as the malformed ones.
ODD_LINES: tuple[bytes, ...] = (
    b'2001:db8::7 - - [01/Nov/2026:10:00:00 +0000] "GET /v6 HTTP/2.0" 200 12 "-" "curl/8.0"',
    b'10.2.2.2 - - [01/Nov/2026:10:00:01 +0000] "GET /q HTTP/1.1" 200 1 "-" "agent \\"quoted\\" v1"',
    b'10.2.2.3 - - [01/Nov/2026:10:00:02 -0800] "-" 400 0 "-" "-"',
    b'10.2.2.4 - bob [01/Nov/2026:10:00:03 +0000] "GET /caf\xc3\xa9 HTTP/1.1" 200 7 "-" "Mozilla/5.0"',
)


def line(rng: random.Random, ts: datetime) -> bytes:
    """One valid combined-format line at ``ts`` (written in a random local offset)."""
    zone = rng.choice(_ZONES)
    sign = -1 if zone[0] == "-" else 1
    local = ts + sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    stamp = f"{local:%d}/{_MONTHS[local.month - 1]}/{local:%Y:%H:%M:%S} {zone}"
    ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    user = "-" if rng.random() < 0.9 else f"u{rng.randrange(500)}"
    path = rng.choice(_PATHS).format(n=rng.randrange(50000), p=rng.randrange(1, 9))
    status = rng.choice(_STATUS)
    size = "-" if status in (204, 304) else str(rng.randrange(0, 250000))
    agent, ref = rng.choice(_AGENTS), rng.choice(_REFERRERS)
    text = (
        f'{ip} - {user} [{stamp}] "{rng.choice(_METHODS)} {path} HTTP/1.1" {status} {size} "{ref}" "{agent}"'
    )
    return text.encode()


def _opener(compression: str) -> Callable[[Path], BinaryIO]:
    if compression == "gzip":
        # mtime=0: the gzip header would otherwise make equal data differ byte for byte
        return lambda p: gzip.GzipFile(p, "wb", compresslevel=6, mtime=0)  # type: ignore[return-value]
    if compression == "bz2":
        return lambda p: bz2.open(p, "wb")  # type: ignore[return-value]
    if compression == "xz":
        return lambda p: lzma.open(p, "wb")  # type: ignore[return-value]
    if compression == "zstd":
        return lambda p: pa.CompressedOutputStream(str(p), "zstd")
    return lambda p: open(p, "wb")


def generate(
    outdir: Path,
    files: int = 4,
    lines: int = 10_000,
    compression: str = "none",
    bad: float = 0.001,
    seed: int = 7,
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
) -> list[Path]:
    """Write ``files`` logs of ``lines`` lines each into ``outdir``; return their paths.

    ``compression`` is one of :data:`COMPRESSIONS` or ``"mixed"`` (cycles through all of them).
    File ``k`` covers about a day starting ``k`` days after ``start``; lines end in ``\\n``, except
    every other unusual line, which ends in CRLF.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    n_bad = n_odd = 0
    for k in range(files):
        comp = COMPRESSIONS[k % len(COMPRESSIONS)] if compression == "mixed" else compression
        if comp not in COMPRESSIONS:
            raise ValueError(f"compression {comp!r}; allowed: {', '.join(COMPRESSIONS)}, mixed")
        rng = random.Random(seed * 7919 + k)
        ts = start + timedelta(days=k)
        step_ms = max(1, 86_400_000 // max(lines, 1))
        path = outdir / f"access-{k:03d}.log{_SUFFIX[comp]}"
        buf: list[bytes] = []
        for _ in range(lines):
            ts += timedelta(milliseconds=rng.randrange(0, 2 * step_ms))
            r = rng.random()
            if r < bad:
                buf.append(BAD_LINES[n_bad % len(BAD_LINES)] + b"\n")
                n_bad += 1
            elif r < 2 * bad:
                odd = ODD_LINES[n_odd % len(ODD_LINES)]
                buf.append(odd + (b"\r\n" if n_odd % 2 else b"\n"))
                n_odd += 1
            else:
                buf.append(line(rng, ts) + b"\n")
        with _opener(comp)(path) as fh:
            fh.write(b"".join(buf))
        paths.append(path)
    return paths
