"""``python -m bench.s3_layout [options]``: logpipe on an AWS log prefix, many small gzip objects in date
folders, from moto's S3 server on 127.0.0.1 (a process of its own).

AWS writes a load balancer's access logs as one ``.gz`` object per node every 5 minutes, under
``AWSLogs/<account>/elasticloadbalancing/<region>/<yyyy>/<mm>/<dd>/`` (CloudFront: one object per
distribution and hour or less, flat). This uploads ``--objects`` such objects of ``--lines`` ALB lines
each and measures, medians of ``--repeat``:

* listing: objects listed per second by :func:`pipeline.inputs.remote.resolve`, for the prefix and for
  a ``**`` glob (and the requests each made);
* opening: objects opened and read to their end per second by the reader (``Source``), on 1 and 8
  threads, and the requests per object;
* whole runs (``logpipe run`` in a subprocess, ``run.format = "alb"``): MB/s (decompressed) and lines/s
  with each ``--workers`` (``read.workers``), over the objects, over the same lines as one object, and
  over both as local files, alternating.

Every run must read every line (checked against its manifest).
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import remote

ACCOUNT = "123456789012"
REGION = "us-east-1"
LB = "app.my-lb.0123456789abcdef"
# an ALB entry (docs.aws.amazon.com, "Access log entries"), its varying fields as {placeholders}
ALB_LINE = (
    "{type} {time} app/my-lb/0123456789abcdef {client}:{port} 10.0.{t}.{t2}:80 0.000 {tpt} 0.000 {status} "
    '{status} {received} {sent} "{method} https://www.example.com:443{path} HTTP/1.1" "{agent}" '
    "ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-1:123456789012:"
    'targetgroup/my-targets/73e2d6bc24d8a067 "Root=1-{trace}" "www.example.com" '
    '"arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012" 0 '
    '{created} "forward" "-" "-" "10.0.{t}.{t2}:80" "{status}" "-" "-" TID_{tid}'
)
PATHS = ["/", "/index.html", "/api/v1/items", "/api/v1/items/42", "/static/app.js", "/login", "/search"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Googlebot/2.1 (+http://www.google.com/bot.html)"]


@dataclass(frozen=True)
class Layout:
    """The objects of the set: their keys, their gzip bytes, and their lines and text size in all."""

    keys: list[str]
    blobs: list[bytes]
    lines: int
    text_bytes: int


def alb_lines(rng: random.Random, start: float, n: int) -> list[str]:
    """``n`` ALB lines of the 5 minutes from ``start`` (epoch seconds), in time order."""
    out = []
    for k in range(n):
        t = start + 300 * k / max(n, 1)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"
        status = rng.choice((200, 200, 200, 200, 301, 304, 404, 500, 502))
        out.append(
            ALB_LINE.format(
                type=rng.choice(("http", "https", "h2")),
                time=stamp,
                created=stamp,
                client=f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
                port=rng.randrange(1024, 65536),
                t=rng.randrange(4),
                t2=rng.randrange(1, 255),
                tpt=f"{rng.random() / 10:.3f}",
                status=status,
                received=rng.randrange(100, 2000),
                sent=rng.randrange(0, 200_000),
                method=rng.choice(("GET", "GET", "GET", "POST")),
                path=rng.choice(PATHS) + ("" if rng.random() < 0.7 else f"?q={rng.randrange(1000)}"),
                agent=rng.choice(AGENTS),
                trace=f"{int(t):08x}-{rng.getrandbits(96):024x}",
                tid=f"{rng.getrandbits(64):016x}",
            )
        )
    return out


def make_layout(objects: int, lines: int, seed: int = 1, hour: int = 0) -> Layout:
    """``objects`` gzip objects of ``lines`` ALB lines each, 5 minutes apart from ``hour`` on
    2026-12-01 (UTC), in the date folders and with the names AWS gives them."""
    rng = random.Random(seed)
    first = calendar.timegm((2026, 12, 1, hour, 0, 0))
    keys, blobs, text = [], [], 0
    for k in range(objects):
        start = first + 300 * k
        day = time.strftime("%Y/%m/%d", time.gmtime(start))
        stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(start + 300))
        name = (
            f"{ACCOUNT}_elasticloadbalancing_{REGION}_{LB}_{stamp}_10.0.0.1_{rng.getrandbits(32):08x}.log.gz"
        )
        keys.append(f"AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/{day}/{name}")
        data = "".join(line + "\n" for line in alb_lines(rng, start, lines)).encode()
        text += len(data)
        blobs.append(gzip.compress(data, compresslevel=6, mtime=0))
    return Layout(keys, blobs, objects * lines, text)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of ``fn()``."""
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


class Requests:
    """Counts the S3 requests botocore sends, by operation (its ``before-call`` event)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hook(self, fs: object) -> None:
        """Count the requests of ``fs`` (an s3fs filesystem) from now on."""
        from fsspec.asyn import sync  # type: ignore[import-untyped]

        client = sync(fs.loop, fs.set_session)  # type: ignore[attr-defined]
        client.meta.events.register("before-call.s3", self._count)

    def _count(self, model: object, **_: object) -> None:
        name = str(getattr(model, "name", "?"))
        self.counts[name] = self.counts.get(name, 0) + 1

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, {}
        return counts


def listing(bucket: str, layout: Layout, repeat: int) -> list[str]:
    """Objects listed per second by ``resolve`` for the prefix and for a ``**`` glob."""
    from pipeline.inputs import remote

    settings = remote.Settings()
    requests = Requests()
    fs, _ = remote._filesystem(f"s3://{bucket}/", settings)
    requests.hook(fs)
    out = []
    for what, spec in (
        ("prefix", f"s3://{bucket}/AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/"),
        ("glob **", f"s3://{bucket}/AWSLogs/**/*.log.gz"),
        ("glob of a month", f"s3://{bucket}/AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/2026/12/**"),
    ):
        found, why = remote.resolve(spec, settings)
        if len(found) != len(layout.keys):
            raise RuntimeError(f"{spec}: listed {len(found)} of {len(layout.keys)} objects ({why})")
        requests.take()
        wall = timed(lambda spec=spec: remote.resolve(spec, settings), repeat)  # type: ignore[misc]
        per_run = {k: v // repeat for k, v in requests.take().items()}
        rate = len(found) / wall
        out.append(f"  list, {what:<16} {rate:9,.0f} objects/s  ({wall * 1000:6.0f} ms; requests: {per_run})")
    return out


def opening(bucket: str, layout: Layout, repeat: int, threads: list[int]) -> list[str]:
    """Objects opened and read to their end per second by the reader, on each number of threads."""
    from pipeline.inputs import remote
    from pipeline.stages.read import Source

    settings = remote.Settings()
    names, _ = remote.resolve(f"s3://{bucket}/AWSLogs/", settings)
    requests = Requests()
    requests.hook(remote.lookup(names[0]).fs)

    def read_one(name: str) -> int:
        src = Source(name, 4 << 20)
        try:
            got = 0
            while block := src.read(4 << 20):
                got += len(block)
            return got
        finally:
            src.close()

    out = []
    for n in threads:
        requests.take()

        def read_all(n: int = n) -> None:
            with ThreadPoolExecutor(n) as pool:
                got = sum(pool.map(read_one, names))
            if got != layout.text_bytes:
                raise RuntimeError(f"read {got} bytes, the objects hold {layout.text_bytes}")

        wall = timed(read_all, repeat)
        per_object = sum(requests.take().values()) / (repeat * len(names))
        out.append(
            f"  open+read, {n:>2} threads   {len(names) / wall:9,.0f} objects/s  ({wall:6.2f} s; "
            f"{per_object:.2f} requests per object)"
        )
    return out


def logpipe(
    inputs: list[str], out: Path, sets: list[str], tree: Path | None = None
) -> tuple[float, dict[str, object]]:
    """Wall seconds and manifest of one ``logpipe run`` (it must commit every input), of the
    ``pipeline`` package in ``tree`` (None: this one)."""
    wall = remote.logpipe(inputs, out, sets, cwd=tree)
    manifest = json.loads((out.parent / f"{out.name}.meta" / "current" / "manifest.json").read_text())
    return wall, manifest


def runs(
    variants: dict[str, tuple[str, str]],
    layout: Layout,
    workers: list[int],
    repeat: int,
    sets: list[str],
    scratch: Path,
    base: Path | None = None,
) -> list[str]:
    """MB/s and lines/s of whole runs over each variant (an input, a format) with each
    ``read.workers``, alternating; with ``base`` (a checkout of another commit), each variant also run
    by that commit's ``pipeline`` (named ``... @base``)."""
    if base is not None:
        variants = {**variants, **{f"{v} @base": variants[v] for v in variants}}
    walls: dict[tuple[str, int], list[float]] = {(v, n): [] for v in variants for n in workers}
    for k in range(repeat):
        for (variant, n), found in walls.items():
            out = scratch / f"out-{k}-{n}-{variant.replace(' ', '_').replace(',', '')}"
            spec, fmt = variants[variant]
            tree = base if variant.endswith(" @base") else None
            wall, manifest = logpipe([spec], out, [f"read.workers={n}", f'run.format="{fmt}"', *sets], tree)
            if manifest["lines"] != layout.lines or manifest["rejected"]:
                raise RuntimeError(f"{variant}: read {manifest['lines']} lines, the set holds {layout.lines}")
            found.append(wall)
            print(f"  {variant:<20} {n:>2} readers, run {k + 1}: {wall:6.2f} s", file=sys.stderr)  # noqa: T201
    lines = []
    for (variant, n), found in walls.items():
        wall = statistics.median(found)
        mb_s, lines_s = layout.text_bytes / 1e6 / wall, layout.lines / wall
        lines.append(
            f"  run, {variant:<20} {n:>2} readers {wall:6.2f} s {mb_s:7.1f} MB/s {lines_s:10,.0f} lines/s"
        )
    return lines


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """moto's S3 server in a process of its own on 127.0.0.1 (in a thread of this process it would
    share the GIL with the readers measured here)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("moto's server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def s3_environment(endpoint: str) -> Iterator[None]:
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the logpipe subprocesses inherit it
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.s3_layout", description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=2000, help="gzip objects in date folders")
    ap.add_argument("--lines", type=int, default=50, help="ALB lines per object")
    ap.add_argument("--workers", default="1,4,8,16", help="read.workers of the whole runs")
    ap.add_argument("--threads", default="1,8", help="threads opening the objects")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median)")
    ap.add_argument("--auto", action="store_true", help="also: the objects with run.format = 'auto'")
    ap.add_argument("--variants", default="", help="only these runs (names as printed, comma-separated)")
    ap.add_argument("--base", type=Path, help="also run each variant with the pipeline of this checkout")
    ap.add_argument("--no-runs", action="store_true", help="only the listing and opening figures")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="more logpipe --set items")
    ap.add_argument("--json", type=Path, help="also write the printed results here")
    a = ap.parse_args(argv)
    import boto3  # type: ignore[import-untyped]

    layout = make_layout(a.objects, a.lines)
    gz = sum(len(b) for b in layout.blobs)
    folders = len({k.rsplit("/", 1)[0] for k in layout.keys})
    head = (
        f"{a.objects:,} gzip objects of {a.lines} ALB lines in {folders} "
        f"date folders: {layout.lines:,} lines, {layout.text_bytes / 1e6:.1f} MB ({gz / 1e6:.1f} MB gzip); "
        f"moto S3 on 127.0.0.1, medians of {a.repeat}"
    )
    results = [head]
    with moto_process() as endpoint, s3_environment(endpoint), tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        client = boto3.client("s3")
        client.create_bucket(Bucket="logs")
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda kb: client.put_object(Bucket="logs", Key=kb[0], Body=kb[1]),
                    zip(layout.keys, layout.blobs, strict=True),
                )
            )
        client.put_object(Bucket="logs", Key="one/all.log.gz", Body=b"".join(layout.blobs))  # gzip members
        local = scratch / "local"
        for key, blob in zip(layout.keys, layout.blobs, strict=True):
            (local / key).parent.mkdir(parents=True, exist_ok=True)
            (local / key).write_bytes(blob)
        (scratch / "one.log.gz").write_bytes(b"".join(layout.blobs))
        results += listing("logs", layout, a.repeat)
        results += opening("logs", layout, a.repeat, [int(n) for n in a.threads.split(",")])
        if not a.no_runs:
            variants = {
                "s3 objects": ("s3://logs/AWSLogs/", "alb"),
                "s3 one object": ("s3://logs/one/all.log.gz", "alb"),
                "local files": (str(local), "alb"),
                "local one file": (str(scratch / "one.log.gz"), "alb"),
            }
            if a.auto:
                variants["s3 objects (auto)"] = ("s3://logs/AWSLogs/", "auto")
            variants = {v: variants[v] for v in a.variants.split(",")} if a.variants else variants
            workers = [int(n) for n in a.workers.split(",")]
            results += runs(variants, layout, workers, a.repeat, a.sets, scratch, a.base)
    text = "\n".join(results)
    print(text)  # noqa: T201 - the benchmark's result
    if a.json is not None:
        a.json.write_text(json.dumps({"results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
