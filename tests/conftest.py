"""Shared fixtures: the committed sample, a serial reference parser, and helpers to run the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

# The engine's compiled loops run with Numba's bounds checks in the tests and in every process they
# start (before anything imports Numba), in a cache of their own: Numba's cache does not tell a checked
# build from the unchecked one that runs use (pipeline/formats/kernels.py)
os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "numba"))

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

import pipeline.formats.kernels  # noqa: F401  (the tests' own parses run the compiled loops, as workers do)
from pipeline.config import load_config, validate
from pipeline.errors import ExitCode
from pipeline.formats.base import FormatResult, RejectRows
from pipeline.formats.engine import PlanFormat
from pipeline.formats.spec import FormatPlan
from pipeline.formats.w3c import Dialect, schema
from pipeline.output.layout import Layout
from pipeline.output.manifest import Extras, Manifest, as_manifest
from pipeline.stages.parse import ParseResult, from_ipc
from pipeline.stages.read import Chunk, Reader

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CLI_TIMEOUT_S = 120

# An independent statement of the accepted format, written for the tests (not imported from the
# parser): nginx's combined format, each field ending where the text after it first occurs (so an
# address or user may hold a space, as the plan's split reads them), quoted fields with backslash
# escapes, the request "-" and a request that does not split into three words (what nginx logs with
# status 400), kept as logged.
_QUOTED_BODY = re.compile(rb'(?:[^"\\]|\\.)*')  # up to the first quote that no backslash escapes
_REQUEST_RE = re.compile(r"([^ ]+) ([^ ]+) ([^ ]+)")  # three words, split at single spaces


def combined_fields(line: bytes) -> list[bytes] | None:
    """A combined line's address, user, time, request, status, bytes, referrer and agent, or None."""
    fields: list[bytes] = []
    pos = 0

    def until(literal: bytes) -> bool:
        nonlocal pos
        end = line.find(literal, pos)
        if end < 0:
            return False
        fields.append(line[pos:end])
        pos = end + len(literal)
        return True

    def quoted(after: bytes) -> bool:
        nonlocal pos
        m = _QUOTED_BODY.match(line, pos)
        assert m is not None  # the pattern matches the empty string
        fields.append(m.group(0))
        pos = m.end()
        if not line.startswith(after, pos):
            return False
        pos += len(after)
        return True

    if not (until(b" - ") and until(b" [") and until(b'] "') and quoted(b'" ')):
        return None
    status, pos = line[pos : pos + 3], pos + 3
    fields.append(status)
    if not (re.fullmatch(rb"\d{3}", status) and line.startswith(b" ", pos)):
        return None
    pos += 1
    if not (until(b' "') and quoted(b'" "') and quoted(b'"')) or pos != len(line):
        return None
    return fields


# Timestamps are zero-padded and fixed-width, as Apache and nginx write them (strptime alone is laxer).
TS_RE = re.compile(r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}")
BOT_RE = re.compile("bot|crawler|spider|curl|python-requests", re.IGNORECASE)


def reference_parse(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    """Parse lines one by one in plain Python: the serial reference for correctness tests."""
    rows, rejected = [], 0
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        fields = combined_fields(line)
        if fields is None or b"\x00" in line:
            rejected += 1
            continue
        try:
            ip, user, when, request, status, size_text, referrer, agent = (f.decode("utf-8") for f in fields)
            if not TS_RE.fullmatch(when):
                raise ValueError("not a fixed-width timestamp")
            ts = datetime.strptime(when, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
            # digits, with any whitespace around them (the engine's number typing reads " 12" as 12)
            digits = size_text.strip(" \t\n\v\f\r")
            size = None if size_text == "-" else int(digits) if re.fullmatch("[0-9]+", digits) else -1
        except ValueError:
            rejected += 1
            continue
        if size is not None and not 0 <= size < 2**63:
            rejected += 1
            continue
        split = _REQUEST_RE.fullmatch(request)
        method, target, protocol = split.groups() if split else (None, None, None)
        path, sep, query = target.partition("?") if target is not None else (None, "", None)
        rows.append(
            {
                "ip": ip,
                "user": None if user == "-" else user,
                "ts": ts,
                "method": method,
                "path": path,
                "query": query if sep else None,
                "protocol": protocol,
                "request": None if split or request == "-" else request,
                "status": int(status),
                "bytes": size,
                "referrer": None if referrer == "-" else referrer,
                "user_agent": agent,
                "is_bot": BOT_RE.search(agent) is not None,
            }
        )
    return rows, rejected


def reject_list(rejects: RejectRows) -> list[tuple[int, str]]:
    """(line, reason) of every reject of a chunk, in line order, blank lines (kept as arrays) included."""
    from pipeline.stages.parse import rejects_batch

    batch = rejects_batch(rejects)
    return list(zip(batch.column("line").to_pylist(), batch.column("reason").to_pylist(), strict=True))


def read_lines(path: Path) -> list[bytes]:
    """Decompressed lines of a sample file (without line ends)."""
    from pipeline.stages.read import Source

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
    # Arrow sorts no dictionary column (the origin columns): their values give the order
    keys = pa.table({c: _plain(table.column(c)) for c in table.column_names if c != "is_bot"})
    return table.take(pc.sort_indices(keys, [(c, "ascending") for c in keys.column_names]))


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


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


def forkserver_workers() -> list[Any]:
    """Worker processes this test process started through a fork server: its children's children."""
    found = []
    for server in psutil.Process().children():
        try:
            if "multiprocessing.forkserver" in " ".join(server.cmdline()):
                found += server.children()
        except psutil.NoSuchProcess:
            continue
    return found


def wait_until_no_workers(timeout: float = 5.0) -> None:
    """Fail unless every fork-server worker is gone within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := forkserver_workers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"worker processes left behind: {[p.pid for p in left]}"


def record_of(inputs: Path, out: Path) -> tuple[Manifest, Extras]:
    """The manifest and the report's extras of a real run on ``inputs`` (small chunks, so that every
    stage has several; the access-log panels collected)."""
    from pipeline.runner import run_pipeline

    run = {"inputs": [str(inputs)], "output": str(out), "progress": "off", "panels": True}
    result = run_pipeline(validate({"run": run, "read": {"chunk_bytes": 65536}}))
    assert result.exit_code == ExitCode.OK, result.error
    assert result.extras is not None
    return as_manifest(result.manifest), cast("Extras", result.extras)


# Headless Chromium, for the report's browser tests.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (CI installs it: apt-get install chromium)"
)
BROWSER_TIMEOUT_S = 45


def chromium(page: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium with no network: any request would fail, and the page would not
    draw if it needed one."""
    assert CHROMIUM is not None
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",  # its own profile: tests and other runs do not share one
        "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000",  # run the page's timers ahead (Bokeh draws after the load event)
        *args, path.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def pixels_near(image: Any, colour: str, tolerance: int = 6) -> int:
    """How many pixels of a PIL image are within ``tolerance`` of ``colour`` (``#rrggbb``)."""
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        n
        for n, pixel in image.getcolors(maxcolors=1 << 24)
        if all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], rgb, strict=True))
    )


@pytest.fixture
def sample_dir() -> Path:
    """The committed sample data set."""
    assert SAMPLE.is_dir(), "data/sample is committed with the repository"
    return SAMPLE


MB = 1_000_000


def documented_memory_bound(config: Path, overrides: list[str] | None = None) -> int:
    """The memory formula of docs/operations.md ("Memory") for a config on this machine, in
    bytes: what a run of it may take whatever its input."""
    cfg = load_config(config, overrides).resolved()
    c, lmax = cfg.read.chunk_bytes, cfg.read.max_line_bytes
    w, r = int(cfg.parse.workers), cfg.write.row_group_rows
    read = (cfg.read.queue_depth + 3 * int(cfg.read.workers) + 1) * c
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


# --- a per-line reference for compiled formats -------------------------------------------------------
# Each line through the plan's reference regex (the format's ground truth), then every value typed in
# plain Python, one line at a time, by the rules docs/formats.md gives for its kind. Written for the tests:
# the engine's vectorised typing must give exactly these rows and reject exactly the other lines.

PLAN_NUMBER = re.compile(rb"\d+(?:\.\d+)?")
# a single float (not an item of a list): an exponent is read too, as Arrow's cast reads it
PLAN_FLOAT = re.compile(rb"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_LIST_SEPARATORS = re.compile(rb"\s*[,:]\s*")
_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
_RFC3339_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")
_CLF_MS_RE = re.compile(r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MAX = 2**63 - 1


class _Reject(Exception):
    """The line does not fit its format."""


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // (datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH)


def _number(value: bytes, kind: str, scale: float) -> int | float | None:
    """An int/float/duration value: "-" is null; a list (after upstream retries) is its total."""
    if value == b"-":
        return None
    single = PLAN_NUMBER if kind == "int" else PLAN_FLOAT
    if single.fullmatch(value) and (kind != "int" or b"." not in value) and value[-1:].isdigit():
        total: int | float = int(value) if kind == "int" else float(value)
        if not math.isfinite(total):
            raise _Reject
    else:
        items = [i for i in _LIST_SEPARATORS.split(value.strip()) if i != b"-"]
        if not all(PLAN_NUMBER.fullmatch(i) and (kind != "int" or b"." not in i) for i in items):
            raise _Reject
        if not items:
            return None
        total = 0
        for item in items:
            total += int(item) if kind == "int" else float(item)
    if kind == "int":
        if total > _INT64_MAX:
            raise _Reject
        return total
    return total / round(1 / scale)  # 9 ms: 0.009 s (9 * 1e-3 is 0.009000000000000001)


def _time(value: bytes, kind: str, scale: float) -> int:
    """Microseconds since the epoch (UTC) of a time value."""
    text = value.decode()
    try:
        if kind == "time_local":
            if not TS_RE.fullmatch(text):
                raise _Reject
            return _micros(datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z"))
        if kind == "time_iso8601":
            if not _ISO_RE.fullmatch(text):
                raise _Reject
            return _micros(datetime.fromisoformat(text))
        if kind == "time_rfc3339":
            m = _RFC3339_RE.fullmatch(text)
            if m is None:
                raise _Reject
            zone = "+00:00" if m.group(3) == "Z" else m.group(3)
            fraction = int((m.group(2) or "")[:6].ljust(6, "0"))
            return _micros(datetime.fromisoformat(m.group(1) + zone)) + fraction
        if kind == "time_clf_ms":
            if not _CLF_MS_RE.fullmatch(text):
                raise _Reject
            return _micros(datetime.strptime(text, "%d/%b/%Y:%H:%M:%S.%f").replace(tzinfo=UTC))
    except (ValueError, OverflowError) as exc:
        raise _Reject from exc
    if not PLAN_FLOAT.fullmatch(value) or not value[-1:].isdigit() or not math.isfinite(float(value)):
        raise _Reject
    micros = round(float(value) * scale * 1e6)
    if not -62135596800_000_000 <= micros < 253402300800_000_000:  # years 1 to 9999
        raise _Reject
    return micros


def _plan_row(plan: Any, line: bytes) -> dict[str, Any]:
    """One line's row by the reference rules; raises _Reject."""
    if b"\x00" in line:
        raise _Reject
    try:
        line.decode()
    except UnicodeDecodeError as exc:
        raise _Reject from exc
    m = plan.reference_regex().fullmatch(line)
    if m is None:
        raise _Reject
    row: dict[str, Any] = {}
    json_escape = plan.escape == "json"
    for k, f in enumerate(plan.fields):
        value: bytes = m.group(k + 1)
        if f.plus and value.startswith(b"+"):
            value = value[1:]
        nulled = value == b"-" or value in f.nulls
        if f.kind == "skip":
            continue
        if f.kind == "ip_port":
            host, colon, port = value.rpartition(b":")
            if nulled:
                row |= {f.column: None, f.port: None}
                continue
            if not colon or not host or not port.isdigit() or len(port) > 5 or not port.isascii():
                raise _Reject
            if b" " in host:  # an address holds no space
                raise _Reject
            if host.startswith(b"[") and host.endswith(b"]") and len(host) > 2:
                host = host[1:-1]
            row |= {f.column: host.decode(), f.port: int(port)}
        elif f.column != "ts" and f.kind in (
            "time_local",
            "time_iso8601",
            "epoch",
            "time_rfc3339",
            "time_clf_ms",
        ):
            row[f.column] = None if nulled else _time(value, f.kind, f.scale)
        elif f.kind == "request" and f.nulls and nulled:
            row |= dict.fromkeys(("method", "path", "query", "protocol", "request"))
        elif (f.kind == "status" and f.nulls and nulled) or (
            f.kind in ("int", "float", "duration", "user", "string") and value in f.nulls
        ):
            row[f.column] = None
        elif f.kind in ("ip", "user", "string", "agent"):
            if f.kind == "ip" and plan.dialect == "template" and b" " in value:
                raise _Reject  # a built-in format's address holds no space
            text = value.decode()
            if json_escape and b"\\" in value:
                try:
                    text = json.loads(b'"' + value + b'"')
                except ValueError as exc:
                    raise _Reject from exc
            null = value == b"-" or (json_escape and value == b"")
            row[f.column] = None if null and f.kind in ("user", "string") else text
            if f.kind == "agent":
                row["is_bot"] = BOT_RE.search(text) is not None
        elif f.kind in ("time_local", "time_iso8601", "epoch", "time_rfc3339", "time_clf_ms"):
            row["ts"] = _time(value, f.kind, f.scale)
        elif f.kind == "request":
            words = value.split(b" ")
            split = len(words) == 3 and all(words)
            method, target, protocol = (w.decode() for w in words) if split else (None, None, None)
            path, sep, query = target.partition("?") if target is not None else (None, "", None)
            row |= {"method": method, "path": path, "query": query if sep else None}
            row |= {"protocol": protocol, "request": None if split or value == b"-" else value.decode()}
        elif f.kind == "status":
            if not re.fullmatch(rb"\d{3}", value):
                raise _Reject
            row[f.column] = int(value)
        else:
            row[f.column] = None if json_escape and value == b"" else _number(value, f.kind, f.scale)
    return row


def plan_reference(plan: Any, lines: list[bytes]) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of ``lines`` (without line ends) under a compiled format, grouped by UTC date as a
    parsed chunk's are (``ts`` in microseconds), and the 0-based numbers of the rejected lines."""
    rows: list[tuple[int, dict[str, Any]]] = []
    rejected = []
    for i, line in enumerate(lines):
        try:
            row = _plan_row(plan, line)
        except _Reject:
            rejected.append(i)
            continue
        rows.append((row["ts"] // 86_400_000_000, row))
    rows.sort(key=lambda r: r[0])  # stable: lines keep their order within a date
    return [row for _, row in rows], rejected


def batch_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """A parsed batch's rows with ``ts`` in microseconds since the epoch, as plan_reference gives."""
    rows: list[dict[str, Any]] = batch.to_pylist()
    for row in rows:
        for column, value in row.items():
            if isinstance(value, datetime):  # ts, and another time column of a server's format
                row[column] = _micros(value)
    return rows


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A worker left alive makes the interpreter's exit wait for it forever (the pool's manager thread
    joins it at exit): kill any, and fail the session naming them, instead of hanging CI."""
    left = forkserver_workers()
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    pids = [p.pid for p in left] + _LEFT_ON_XDIST_WORKERS
    # a pytest-xdist worker's exit status does not reach the main process: its workeroutput does
    if left and hasattr(session.config, "workeroutput"):
        session.config.workeroutput["left_behind"] = pids
    if pids:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        sys.stderr.write(f"\nworker processes left behind at the end of the session: {pids}\n")


_LEFT_ON_XDIST_WORKERS: list[int] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the main process of a pytest-xdist run: what a test process's session left behind."""
    _LEFT_ON_XDIST_WORKERS.extend(getattr(node, "workeroutput", {}).get("left_behind", []))


# ---------------------------------------------------------------------------------------------------
# Formats: the engine run on a plan, the yardstick's generator and its JSON template.

# the generator of the yardstick's logs (../shared/bench beside the checkout; /work/shared on the machine)
GEN = Path("/work/shared/bench/gen_access_logs.py")
if not GEN.exists():
    GEN = ROOT.parent / "shared" / "bench" / "gen_access_logs.py"

# nginx's log_format line of the yardstick's JSON logs, as its docstring gives it
JSON_FORMAT = (
    'escape=json \'{"time_local":"$time_local","remote_addr":"$remote_addr",'
    '"remote_user":"$remote_user","request":"$request","status":"$status","body_bytes_sent":"$body_bytes_sent",'
    '"request_time":"$request_time","http_referrer":"$http_referer","http_user_agent":"$http_user_agent"}\''
)


def generated(tmp_path: Path, fmt: str, lines: int = 3000, bad: float = 0.01) -> bytes:
    """One file of the yardstick's generator in ``fmt`` (combined, upstream or json), decompressed."""
    import gzip

    if not GEN.exists():
        pytest.skip("the yardstick generator (shared/bench) is not beside this checkout")
    out = tmp_path / fmt
    cmd = [sys.executable, str(GEN), str(out), "--files", "1", "--lines", str(lines), "--format", fmt]
    subprocess.run([*cmd, "--bad", str(bad), "--seed", "3"], check=True, timeout=60)
    path = next(out.iterdir())
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def parse_plan(plan: FormatPlan, data: bytes, first_line: int = 1) -> FormatResult:
    """``data`` parsed by the plan engine with ``plan`` (the combined format's plan included, which
    ``get_format`` gives its own parser)."""
    return PlanFormat(plan.name, plan).parse(data, first_line)


def chunks_of(path: Path, chunk_bytes: int = 64 * 1024) -> list[Chunk]:
    """``path`` cut into chunks by the pipeline's reader."""
    out: list[Chunk] = []
    Reader(0, str(path), chunk_bytes, 1 << 20, 4096, out.append).run()
    return out


def summary(results: list[ParseResult]) -> list[tuple[int, int, int, str]]:
    """What a result says, comparable across executors (timing and worker names left out)."""
    return sorted(
        (r.seq, r.rows, r.lines, repr([(p.date, from_ipc(p.ipc).to_pylist()) for p in r.parts]))
        for r in results
    )


# --- W3C logs: a plain-Python reference (tests/test_w3c.py, tests/fuzz_formats.py) ---------------------

_W3C_INT = re.compile(r"[0-9]+")
_W3C_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")
_W3C_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_W3C_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?")


def _w3c_unquote(value: str) -> str:
    """One pass of URL-decoding; a value whose decoded bytes are not UTF-8 stays as it is."""
    try:
        return urllib.parse.unquote_to_bytes(value).decode()
    except UnicodeDecodeError:
        return value


def _w3c_time(date: str, time: str) -> datetime | None:
    d, t = _W3C_DATE.fullmatch(date), _W3C_TIME.fullmatch(time)
    if d is None or t is None:
        return None
    micros = int((t[4] or "0").ljust(6, "0"))
    try:
        return datetime(int(d[1]), int(d[2]), int(d[3]), int(t[1]), int(t[2]), int(t[3]), micros, tzinfo=UTC)
    except ValueError:
        return None


def _w3c_epoch(kind: str, value: str) -> datetime | None:
    """CloudFront's ``timestamp`` (epoch seconds, a fraction of up to 9 digits) or ``timestamp(ms)``
    as a UTC time to the microsecond, or None where it is not one."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    try:
        if kind == "epoch_ms" and _W3C_INT.fullmatch(value):
            return epoch + timedelta(milliseconds=int(value))
        if kind == "epoch" and _W3C_DECIMAL.fullmatch(value):
            return epoch + timedelta(microseconds=round(float(value) * 1e6))
    except OverflowError:  # past 9999-12-31
        return None
    return None


def _w3c_value(kind: str, decode: str, value: str) -> tuple[Any, str | None]:
    """A value as the reference reads it, or the reason its line is rejected."""
    null = value in ("-", "")
    if kind in ("int", "status", "ms"):
        if null:
            return None, None
        if not _W3C_INT.fullmatch(value):
            return None, "no match"
        number = int(value)
        if number > (32767 if kind == "status" else 2**63 - 1):
            return None, "out-of-range number"
        return (number / 1000 if kind == "ms" else number), None
    if kind == "seconds":
        if null:
            return None, None
        return (float(value), None) if _W3C_DECIMAL.fullmatch(value) else (None, "no match")
    if kind == "string" and null:
        return None, None
    if decode == "plus":
        value = value.replace("+", " ")
    for _ in range({"percent": 1, "percent2": 2}.get(decode, 0)):
        value = _w3c_unquote(value)
    return value, None


def w3c_reference(
    dialect: Dialect, lines: list[bytes]
) -> tuple[list[dict[str, Any]], list[tuple[int, str]], int]:
    """Rows, rejects (line, reason) and skipped header lines of a file, line by line in plain Python."""
    fields = list(dialect.default)
    rows, rejects, skipped = [], [], 0
    names = schema(dialect).names
    for number, raw in enumerate(lines, 1):
        line = raw.removesuffix(b"\r")
        if line.startswith(b"#"):
            skipped += 1
            if line.startswith(b"#Fields:"):
                fields = line[8:].decode("latin-1").split()
            continue
        if not line:
            rejects.append((number, "empty line"))
            continue
        if b"\x00" in line:
            rejects.append((number, "NUL byte"))
            continue
        try:
            text = line.decode()
        except UnicodeDecodeError:
            rejects.append((number, "invalid UTF-8"))
            continue
        values = text.split(dialect.sep.decode())
        if len(values) != len(fields):
            rejects.append((number, "no match"))
            continue
        row: dict[str, Any] = dict.fromkeys(names)
        given: dict[str, str] = {}
        for name, value in zip(fields, values, strict=True):
            given.setdefault(name, value)
        reason = None
        epochs = {
            c.kind: given[f] for f, c in dialect.columns.items() if c.kind.startswith("epoch") and f in given
        }
        if "date" in given and "time" in given:
            row["ts"] = _w3c_time(given["date"], given["time"])
        elif epochs:  # CloudFront's timestamp(ms), else its timestamp
            kind = "epoch_ms" if "epoch_ms" in epochs else "epoch"
            row["ts"] = _w3c_epoch(kind, epochs[kind])
        else:
            reason = "missing time"
        if not reason and row["ts"] is None:
            reason = "bad timestamp"
        for name, value in given.items():
            column = dialect.columns.get(name)
            if column is None or column.name == "ts":
                continue
            row[column.name], why = _w3c_value(column.kind, column.decode, value)
            reason = reason or why
            if column.name == "user_agent":
                row["is_bot"] = bool(
                    re.search("bot|crawler|spider|curl|python-requests", row[column.name], re.I)
                )
        if reason:
            rejects.append((number, reason))
        else:
            rows.append(row)
    return rows, rejects, skipped


def run_panels(
    inputs: Path, out: Path, executor: str, fmt: Any = None, transforms: list[str] | None = None
) -> dict[str, Any]:
    """The access-log panels of a run over ``inputs`` in this process, with ``executor`` (two workers,
    small chunks: many partials to merge), the format ``fmt`` and ``transforms`` when given."""
    from pipeline.runner import run_pipeline

    run: dict[str, Any] = {"inputs": [str(inputs)], "output": str(out), "progress": "off", "panels": True}
    if fmt is not None:
        run["format"] = fmt
    if transforms:
        run["transforms"] = transforms
    cfg = {"run": run, "read": {"chunk_bytes": 65536}, "parse": {"executor": executor, "workers": 2}}
    result = run_pipeline(validate(cfg))
    assert result.exit_code == 0, result.error
    assert result.extras is not None
    panels: dict[str, Any] = result.extras["panels"]
    return panels


# values of each W3C field kind at and past its rules' edges (the compiled typing must fail or read each as
# the numpy typing does), strings that the URL and "+" decoding must treat alike, and the bytes a value's
# byte is replaced with to break one rule at a time
W3C_HOSTILE: dict[str, list[bytes]] = {
    "date": [b"2024-02-29", b"2023-02-29", b"0000-01-01", b"0001-01-01", b"9999-12-31", b"2026-13-01"],
    "time": [b"23:59:59", b"24:00:00", b"23:59:60", b"10:00:00.", b"10:00:00.123456", b"10:00:00.1234567"],
    "int": [b"9223372036854775807", b"9223372036854775808", b"000012", b"+1", b"1e3", b"9" * 30, b"-1"],
    "status": [b"32767", b"32768", b"200", b"0200", b"2OO"],
    "seconds": [
        *(b"0.1234567891", b"123456789012345.5", b"1234567890123456", b"12345678901.123456789"),
        *(b"12345678901.5", b"1.", b".5", b"0000000000001.5", b"1.000000000", b"9007199254740993"),
    ],
    "string": [
        *(b"%", b"%4", b"%41%", b"%%41", b"%zz", b"%C3%A9", b"%C3", b"%25%32%30", b"a+b+", b"+"),
        *(b"%2B", b"%e2%82%ac", b"\xc3\xa9", b"x" * 3000, b"%00", b"%0A"),
    ],
}
W3C_HOSTILE["ms"] = [*W3C_HOSTILE["int"], b"1.5"]
# epoch seconds and milliseconds (CloudFront's timestamp fields) at the last day a date can have
W3C_HOSTILE["epoch"] = [
    *W3C_HOSTILE["seconds"],
    b"253402300799.999",
    b"253402300800",
    b"253402300799.9999999",
    b"-",
]
W3C_HOSTILE["epoch_ms"] = [
    *W3C_HOSTILE["int"],
    b"253402300799999",
    b"253402300800000",
    b"1746058823123",
    b"-",
]
W3C_HOSTILE["as_logged"] = W3C_HOSTILE["string"]
W3C_BREAKERS = b"09-:.+% \t#aZ\xff\x00\xc3"
