"""Shared fixtures: the committed sample, a serial reference parser, and helpers to run the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.config import load_config
from pipeline.formats.base import RejectRows
from pipeline.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CLI_TIMEOUT_S = 120

# An independent statement of the accepted format, written for the tests (not imported from the
# parser): the combined format, plus backslash escapes inside quoted fields and the request "-".
_Q = r'"((?:[^"\\]|\\.)*)"'
REFERENCE_RE = re.compile(
    rb"(\S+) (\S+) (\S+) \[([^\]]+)\] "
    + rb'"(?:(\S+) (\S+) (\S+)|-)" (\d{3}) (\d+|-) '
    + _Q.encode()
    + b" "
    + _Q.encode()
)
# Timestamps are zero-padded and fixed-width, as Apache and nginx write them (strptime alone is laxer).
TS_RE = re.compile(r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}")
BOT_RE = re.compile("bot|crawler|spider|curl|python-requests", re.IGNORECASE)


def reference_parse(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    """Parse lines one by one in plain Python: the serial reference for correctness tests."""
    rows, rejected = [], 0
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        m = REFERENCE_RE.fullmatch(line)
        if m is None or b"\x00" in line:
            rejected += 1
            continue
        try:
            g = [x.decode("utf-8") if x is not None else None for x in m.groups()]
            if not TS_RE.fullmatch(g[3] or ""):
                raise ValueError("not a fixed-width timestamp")
            ts = datetime.strptime(g[3] or "", "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
        except ValueError:
            rejected += 1
            continue
        size = None if g[8] == "-" else int(g[8] or "")
        if size is not None and size >= 2**63:
            rejected += 1
            continue
        target = g[5]
        path, sep, query = target.partition("?") if target is not None else (None, "", None)
        rows.append(
            {
                "ip": g[0],
                "user": None if g[2] == "-" else g[2],
                "ts": ts,
                "method": g[4],
                "path": path,
                "query": query if sep else None,
                "protocol": g[6],
                "status": int(g[7] or ""),
                "bytes": size,
                "referrer": None if g[9] == "-" else g[9],
                "user_agent": g[10],
                "is_bot": BOT_RE.search(g[10] or "") is not None,
            }
        )
    return rows, rejected


def reject_list(rejects: RejectRows) -> list[tuple[int, str]]:
    """(line, reason) of every reject of a chunk, in line order, blank lines (kept as arrays) included."""
    from pipeline.parse import rejects_batch

    batch = rejects_batch(rejects)
    return list(zip(batch.column("line").to_pylist(), batch.column("reason").to_pylist(), strict=True))


def read_lines(path: Path) -> list[bytes]:
    """Decompressed lines of a sample file (without line ends)."""
    from pipeline.read import Source

    src = Source(str(path))
    try:
        data = b""
        while block := src.read(1 << 20):
            data += block
    finally:
        src.close()
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") else lines


def read_output(out: Path) -> pa.Table:
    """All rows of an output directory (with the ``date`` partition), in a canonical order."""
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    return table.sort_by([(c, "ascending") for c in table.column_names if c != "is_bot"])


def layout(out: Path) -> Layout:
    """The layout of an output directory written with the default ``run.meta_dir``."""
    return Layout.of(out)


def manifest(out: Path) -> dict[str, Any]:
    """The manifest of the latest run on an output directory (committed or not)."""
    data: dict[str, Any] = json.loads(layout(out).last_run.read_text())
    return data


def committed_manifest(out: Path) -> dict[str, Any]:
    """The manifest published with the data now in ``out``."""
    data: dict[str, Any] = json.loads(layout(out).manifest.read_text())
    return data


def rejects_dir(out: Path) -> Path:
    """The committed rejects of an output directory."""
    return layout(out).rejects


def run_cli(
    *args: str, timeout: float = CLI_TIMEOUT_S, cwd: Path = ROOT, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``logpipe`` in a subprocess, as cron would (no TTY), with a timeout so it cannot hang."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
        **kw,
    )


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (relative path: the bytes of a file, None for a folder or link), to
    show that a refused run changed nothing."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


@pytest.fixture
def sample_dir() -> Path:
    """The committed sample data set."""
    assert SAMPLE.is_dir(), "data/sample is committed with the repository"
    return SAMPLE


MB = 1_000_000


def readme_memory_bound(config: Path, overrides: list[str] | None = None) -> int:
    """The README's memory formula ("Memory", under "Configuration") for a config on this machine, in
    bytes: what a run of it may take whatever its input."""
    cfg = load_config(config, overrides).resolved()
    c, lmax = cfg.read.chunk_bytes, cfg.read.max_line_bytes
    w, r = int(cfg.parse.workers), cfg.write.row_group_rows
    read = (cfg.read.queue_depth + 2 * int(cfg.read.workers)) * c
    in_flight = 2 * w * 2.5 * (c + lmax)
    parsing = w * 10 * c
    results = (cfg.parse.queue_depth + int(cfg.write.workers) + 1) * c
    writing = int(cfg.write.workers) * 3 * r * 200
    fixed = 55 * MB + 40 * MB * (w + 1) + 8 * MB
    return int(read + in_flight + parsing + results + writing + fixed)


class TreeMemory(threading.Thread):
    """Samples the summed PSS of a process and its descendants until it exits; keeps the peak.

    PSS, not RSS: the workers share the fork server's pages and every process maps the shared-memory
    slots it uses, which summed RSS would count once per process.
    """

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self.peak_procs: dict[str, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:  # the run ended between two samples
                return
            sizes: dict[str, int] = {}
            for p in procs:
                try:
                    sizes[f"{p.pid} {'main' if p is self.root else p.name()}"] = p.memory_full_info().pss
                except psutil.Error:  # a worker that just exited
                    continue
            if sum(sizes.values()) > self.peak:
                self.peak, self.peak_procs = sum(sizes.values()), sizes
            self._done.wait(self.interval_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_cli_peak(
    *args: str, timeout: float = CLI_TIMEOUT_S
) -> tuple[subprocess.CompletedProcess[str], TreeMemory]:
    """:func:`run_cli`, sampling the peak memory of the run's whole process tree meanwhile."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipeline", *args]
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    ) as proc:
        sampler = TreeMemory(proc.pid)
        sampler.start()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            sampler.stop()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), sampler
