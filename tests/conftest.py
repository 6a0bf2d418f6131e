"""Shared fixtures: the committed sample, a serial reference parser, and helpers to run the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CLI_TIMEOUT_S = 120

# An independent statement of the accepted format, written for the tests (not imported from the
# parser): the combined format, plus backslash escapes inside quoted fields, the request "-" and a
# request that does not split into three words (what nginx logs with status 400), kept as logged.
_Q = r'"((?:[^"\\]|\\.)*)"'
REFERENCE_RE = re.compile(
    rb"(\S+) (\S+) (\S+) \[([^\]]+)\] "
    + rb'"(?:(\S+) (\S+) (\S+)|-|((?:[^"\\]|\\.)*))" (\d{3}) (\d+|-) '
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
        raw_request = g.pop(7)  # the request as logged where it did not split; after it, as before
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
                "request": raw_request,
                "status": int(g[7] or ""),
                "bytes": size,
                "referrer": None if g[9] == "-" else g[9],
                "user_agent": g[10],
                "is_bot": BOT_RE.search(g[10] or "") is not None,
            }
        )
    return rows, rejected


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


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``logpipe`` in a subprocess, as cron would (no TTY), with a timeout so it cannot hang."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
        **kw,
    )


@pytest.fixture
def sample_dir() -> Path:
    """The committed sample data set."""
    assert SAMPLE.is_dir(), "data/sample is committed with the repository"
    return SAMPLE
