"""``python -m bench remote [options]``: logpipe on remote inputs, against local servers.

* HTTP with latency: the stdlib server of :mod:`bench.remote_server` waits ``--latency-ms`` before
  every answer (HEAD and each ranged GET, as a far object store does); logpipe reads the set over it
  with 1 and with N read threads (``read.workers``), alternating, and the medians' ratio is printed.
* S3 against local (``--s3``): the same set from moto's S3 server (in a thread) and from the local
  disk, alternating; printed as seconds per GB of input.

Each run is the real ``logpipe run`` in a subprocess (``--input`` URLs, ``--set``), timed from the
outside. Make the set with ``logpipe sample -o /tmp/r1m`` (8 files, 1M lines).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.remote_server import Faults, serve

_RUN_TIMEOUT_S = 1800


def logpipe(
    inputs: list[str], out: Path, sets: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> float:
    """Wall seconds of one ``logpipe run`` (it must commit every input), of the ``pipeline`` package
    that ``cwd`` holds (None: the current directory's)."""
    args = [sys.executable, "-m", "pipeline", "run", "-o", str(out), "--quiet"]
    for spec in inputs:
        args += ["--input", spec]
    for item in ["run.progress=off", *sets]:
        args += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT_S,
        check=False,
        env=env or dict(os.environ),
        cwd=cwd or Path.cwd(),
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"logpipe run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall


def alternate(
    runs: dict[str, list[str]], repeat: int, make: dict[str, list[str]], scratch: Path
) -> dict[str, float]:
    """Median wall of each named variant (inputs, --set items), run in turn ``repeat`` times."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(repeat):
        for name, sets in runs.items():
            wall = logpipe(make[name], scratch / f"out-{name}-{k}", sets)
            walls[name].append(wall)
            print(f"  {name:<16} run {k + 1}: {wall:6.2f} s", file=sys.stderr)  # noqa: T201 - progress
    return {name: statistics.median(w) for name, w in walls.items()}


def http_threads(
    data: Path, latency_ms: float, threads: list[int], repeat: int, sets: list[str], bandwidth_mb: float = 0.0
) -> str:
    files = sorted(p for p in data.iterdir() if p.is_file() and not p.name.startswith("."))
    with (
        serve(data, Faults(latency_s=latency_ms / 1000, bandwidth=bandwidth_mb * 1e6)) as (base, faults),
        tempfile.TemporaryDirectory() as tmp,
    ):
        urls = [f"{base}/{p.name}" for p in files]
        runs = {f"{n} read threads": [f"read.workers={n}", *sets] for n in threads}
        medians = alternate(runs, repeat, dict.fromkeys(runs, urls), Path(tmp))
        gets = sum(1 for method, _, _ in faults.requests if method == "GET")
    first = medians[f"{threads[0]} read threads"]
    size = sum(p.stat().st_size for p in files)
    lines = [
        f"HTTP, {latency_ms:g} ms per request"
        + (f", {bandwidth_mb:g} MB/s per connection" if bandwidth_mb else "")
        + f", {len(files)} files, {size / 1e6:.0f} MB, {' '.join(sets) or 'default settings'}, "
        f"{gets // (repeat * len(threads))} ranged GETs per run, median of {repeat} (alternating):"
    ]
    lines += [f"  {name:<16} {wall:6.2f} s  {first / wall:5.2f}x" for name, wall in medians.items()]
    return "\n".join(lines)


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_vs_local(data: Path, repeat: int, sets: list[str]) -> str:
    import boto3  # type: ignore[import-untyped]

    files = sorted(p for p in data.iterdir() if p.is_file() and not p.name.startswith("."))
    size = sum(p.stat().st_size for p in files)
    with moto_s3() as endpoint, tempfile.TemporaryDirectory() as tmp:
        env = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        os.environ.update(env)  # the logpipe subprocesses inherit it
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench")
        for p in files:
            client.upload_file(str(p), "bench", f"logs/{p.name}")
        runs = {"local": list(sets), "s3 (moto)": list(sets)}
        make = {"local": [str(data)], "s3 (moto)": ["s3://bench/logs/"]}
        medians = alternate(runs, repeat, make, Path(tmp))
    lines = [f"S3 (moto, 127.0.0.1) against local disk, {size / 1e6:.0f} MB, median of {repeat}:"]
    lines += [
        f"  {name:<16} {wall:6.2f} s  {wall / (size / 1e9):6.2f} s/GB  {medians['local'] / wall:5.2f}x local"
        for name, wall in medians.items()
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench remote", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/r1m"), help="the set (logpipe sample -o DIR)")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="HTTP: wait before every answer")
    ap.add_argument("--bandwidth-mb", type=float, default=0.0, help="HTTP: MB/s per answer (0: no limit)")
    ap.add_argument("--threads", default="1,8", help="read.workers to compare (the first is the base)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant (median)")
    ap.add_argument("--s3", action="store_true", help="also: moto S3 against the local disk")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="more logpipe --set items")
    ap.add_argument("--json", type=Path, help="also write the printed results here")
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        ap.error(f"{a.data}: no such directory (make it with: logpipe sample -o {a.data})")
    threads = [int(n) for n in a.threads.split(",")]
    results = [http_threads(a.data, a.latency_ms, threads, a.repeat, a.sets, a.bandwidth_mb)]
    if a.s3:
        results.append(s3_vs_local(a.data, a.repeat, a.sets))
    text = "\n\n".join(results)
    print(text)  # noqa: T201 - the benchmark's result
    if a.json is not None:
        a.json.write_text(json.dumps({"results": results}, indent=2))
    return 0
