"""Benchmark harness for logpipe: the pipeline against the yardstick peers, like with like.

Run from the repository root (``make bench``)::

    .venv/bin/python bench/run_bench.py [--files 8] [--lines 125000] [--gzip] [--repeats 3]
        [--peers polars,polars_lazy | none] [--config configs/laptop.toml] [--set key=value ...]
        [--check/--no-check] [--scaling]

What it does:

* data: ``.bench/data/<files>x<lines>[-gz]/`` made once with the yardstick generator
  ``../shared/bench/gen_access_logs.py`` (or ``logpipe sample`` when the yardstick is absent);
* peers: ``../shared/bench/peers.py`` run in their own venv ``.bench/peers-venv`` (made on demand);
* measurement: every contender once per round, rounds alternated, each run a subprocess timed by the
  harness (``perf_counter``), its CPU from ``getrusage`` of the whole tree; then the same command once
  more while a sampler thread sums the PSS (RSS where PSS is unavailable) of the whole process tree
  every ``--sample-ms`` milliseconds: the peak of that sum is the run's memory. Timing and memory come
  from separate runs because reading PSS costs ~3 ms of kernel time per process and sample, on the
  same cores: a tree of five processes (the pipeline) lost ~30% of a core to the sampler, a single
  process (polars) ~7%. ``--memory-sampling inline`` measures both in one run as before;
* correctness: after the first round every contender's output is compared with the reference peer's
  (``polars``) as sorted tables in a common schema; MATCH or MISMATCH is printed;
* report: markdown tables on stdout, raw results in ``.bench/results/<timestamp>.json``.

``--scaling`` runs the pipeline alone with ``parse.workers`` 1 and 2 and ``read.workers`` 1, 2 and 4.

Exit status: 0 when every run succeeded and every check matched, 1 when a run failed or a check
mismatched, 2 for a usage or set-up error.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gzip
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

try:
    import psutil
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.formats import combined
    from pipeline.layout import Layout
except ImportError as exc:  # pragma: no cover - only without the project's venv
    sys.exit(
        f"run_bench.py: error: {exc}; run it with the project's venv: .venv/bin/python bench/run_bench.py"
    )

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
BENCH_DIR = REPO / ".bench"
PEERS_VENV = BENCH_DIR / "peers-venv"
PEER_PACKAGES = ["pandas", "pyarrow", "duckdb", "polars", "dask[bag,dataframe]"]
PIPELINE = "pipeline"
REFERENCE_PEER = "polars"
DEFAULT_PEERS = "polars,polars_lazy"
# --format: the yardstick generator's formats, and the run.format that reads each (the nginx log_format
# lines its docstring gives; JSON through the escape=json template)
JSON_TEMPLATE = (
    'escape=json \'{"time_local":"$time_local","remote_addr":"$remote_addr",'
    '"remote_user":"$remote_user","request":"$request","status":"$status",'
    '"body_bytes_sent":"$body_bytes_sent","request_time":"$request_time","http_referrer":"$http_referer",'
    '"http_user_agent":"$http_user_agent"}\''
)
FORMAT_SETTINGS = {
    "combined": '"combined"',
    "upstream": '"upstream_time"',
    "json": "{nginx = '''" + JSON_TEMPLATE + "'''}",
}
STAGES = ("read", "parse", "write")
MB = 1_000_000
PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
LEFTOVER_GRACE_S = 10.0  # how long processes a run leaves behind may outlive its main process
PEER_LINE = re.compile(r"rows=(\d+)\s+rejected=(\d+)(?:\s+seconds=([0-9.]+))?")
# Columns of the job's output, in order, with the types both sides are cast to before comparing.
# the pipeline's own output schema, plus the partition column read back from the directory names
COMMON_SCHEMA = combined.SCHEMA.append(pa.field("date", pa.string()))


class SetupError(Exception):
    """A problem with the environment or the arguments that stops the benchmark before it starts."""


def log(msg: str) -> None:
    """Write a progress line to stderr (the report itself goes to stdout)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def emit(text: str = "") -> None:
    """Write one line of the report to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """One generated input data set and its sizes."""

    name: str
    path: Path
    files: list[str]
    lines: int
    bytes_on_disk: int
    bytes_uncompressed: int
    gzip: bool
    generator: str


def data_files(path: Path) -> list[Path]:
    """The log files of a data set directory, sorted (the peers take ``*.log*``)."""
    return sorted(p for p in path.glob("*.log*") if p.is_file())


def generate_dataset(
    dest: Path, files: int, lines: int, use_gzip: bool, logpipe: Path, fmt: str = "combined"
) -> str:
    """Generate a data set into ``dest`` (atomically: into a temporary folder, then renamed).

    Uses the yardstick generator when ``../shared/bench`` exists, else ``logpipe sample``.
    Returns the name of the generator used.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    gen = SHARED_BENCH / "gen_access_logs.py"
    if gen.is_file():
        cmd = [sys.executable, str(gen), str(tmp), "--files", str(files), "--lines", str(lines)]
        cmd += ["--gzip"] if use_gzip else []
        cmd += ["--format", fmt] if fmt != "combined" else []
        generator = "shared/bench/gen_access_logs.py"
    else:
        if not logpipe.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise SetupError(f"{SHARED_BENCH} is missing and so is {logpipe}: no way to generate data")
        if fmt != "combined":
            shutil.rmtree(tmp, ignore_errors=True)
            raise SetupError(f"--format {fmt} needs the yardstick generator in {SHARED_BENCH}")
        log(f"warning: {SHARED_BENCH} not found, generating data with `logpipe sample`")
        cmd = [str(logpipe), "sample", "--output", str(tmp), "--files", str(files), "--lines", str(lines)]
        cmd += ["--compression", "gzip"] if use_gzip else []
        generator = "logpipe sample"
    log(f"generating {dest.name}: {shlex.join(cmd)}")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not data_files(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        raise SetupError(f"data generation failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    (dest.parent / f"{dest.name}.generator").write_text(generator + "\n")
    tmp.chmod(0o755)  # mkdtemp makes it 0700
    tmp.rename(dest)
    return generator


def count_stream(stream: Any) -> tuple[int, int]:
    """Return (bytes, lines) of a binary stream; a last line without newline counts as a line."""
    size = lines = 0
    last = b"\n"
    while chunk := stream.read(1 << 22):
        size += len(chunk)
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    return size, lines + (last != b"\n")


def measure_dataset(path: Path, use_gzip: bool, generator: str) -> Dataset:
    """Sizes and line count of a data set, cached next to it in ``<name>.meta.json``.

    Reading every file also warms the page cache, so the first measured run is not penalised.
    """
    files = data_files(path)
    if not files:
        raise SetupError(f"no *.log* files in {path}; delete it to have it regenerated")
    key = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    meta_path = path.parent / f"{path.name}.meta.json"
    meta: dict[str, Any] = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
    if meta.get("key") == key:
        for p in files:  # warm the page cache only
            with p.open("rb") as f:
                while f.read(1 << 22):
                    pass
    else:
        total_u = total_lines = 0
        for p in files:
            opener: Any = gzip.open if p.name.endswith(".gz") else open
            with opener(p, "rb") as f:
                size, lines = count_stream(f)
            total_u += size
            total_lines += lines
        meta = {"key": key, "bytes_uncompressed": total_u, "lines": total_lines}
        meta_path.write_text(json.dumps(meta))
    return Dataset(
        name=path.name,
        path=path,
        files=[p.name for p in files],
        lines=int(meta["lines"]),
        bytes_on_disk=sum(p.stat().st_size for p in files),
        bytes_uncompressed=int(meta["bytes_uncompressed"]),
        gzip=use_gzip,
        generator=generator,
    )


def ensure_dataset(files: int, lines: int, use_gzip: bool, logpipe: Path, fmt: str = "combined") -> Dataset:
    """Return the data set ``<files>x<lines>[-gz][-format]``, generating it first if missing."""
    name = f"{files}x{lines}" + ("-gz" if use_gzip else "") + ("" if fmt == "combined" else f"-{fmt}")
    path = BENCH_DIR / "data" / name
    marker = path.parent / f"{name}.generator"
    if path.is_dir():
        generator = marker.read_text().strip() if marker.exists() else "unknown"
    else:
        generator = generate_dataset(path, files, lines, use_gzip, logpipe, fmt)
    return measure_dataset(path, use_gzip, generator)


# -------------------------------------------------------------------------------------------- peers


def peers_python() -> Path:
    """The interpreter of the peers' venv."""
    return PEERS_VENV / "bin" / "python"


def known_peers() -> list[str] | None:
    """Peer names defined in ``peers.py`` (its ``PEERS = {...}`` dict), or None if unreadable."""
    try:
        text = (SHARED_BENCH / "peers.py").read_text()
    except OSError:
        return None
    m = re.search(r"^PEERS\s*=\s*\{(.*?)\}", text, re.S | re.M)
    return re.findall(r"[\"'](\w+)[\"']\s*:", m.group(1)) if m else None


def ensure_bytecode() -> None:
    """Compile the pipeline package's bytecode, as any pip-installed package (the peers') has.

    The project is installed editable, so its modules are compiled on first import; with
    ``PYTHONDONTWRITEBYTECODE=1`` in the environment (this sandbox, many containers) that would happen
    in every process of every run (~0.2 CPU-s per run), a cost no installed package pays.
    """
    import compileall

    if not compileall.compile_dir(REPO / "pipeline", quiet=1):
        raise SetupError("could not compile the pipeline package")


def ensure_peers_venv() -> None:
    """Create ``.bench/peers-venv`` with the peers' packages unless it already imports them."""
    py = peers_python()
    probe = "import pandas, pyarrow, duckdb, polars"
    if (
        py.exists()
        and subprocess.run([str(py), "-c", probe], capture_output=True, check=False).returncode == 0
    ):
        return
    base = shutil.which("python3") or sys.executable
    install_log = BENCH_DIR / "peers-venv-install.log"
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log(f"setting up {PEERS_VENV} (pip install {' '.join(PEER_PACKAGES)}; log in {install_log})")
    with install_log.open("w") as out:
        steps = [[base, "-m", "venv", str(PEERS_VENV)], [str(py), "-m", "pip", "install", *PEER_PACKAGES]]
        for cmd in steps:
            if py.exists() and cmd[1:3] == ["-m", "venv"]:
                continue
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
            if rc != 0:
                tail = install_log.read_text()[-2000:]
                raise SetupError(f"setting up the peers venv failed: {shlex.join(cmd)} (rc={rc})\n{tail}")


# ------------------------------------------------------------------------------------- measurement


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``).

    Processes a run leaves behind when its main process exits (a multiprocessing forkserver, a resource
    tracker) are then re-parented to the harness instead of init: they stay in the sampled tree, and
    their CPU time (and that of the workers they reaped) reaches ``RUSAGE_CHILDREN`` when the harness
    reaps them. Without it a forkserver's workers are invisible to ``getrusage``. Returns success.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def descendants() -> list[psutil.Process]:
    """All live descendants of this (harness) process: during a run, the run's whole process tree."""
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


class TreeSampler(threading.Thread):
    """Samples the harness's descendants: summed PSS (RSS where PSS can't be read) and CPU times.

    The harness runs one contender at a time, so its descendants are exactly the run's process tree,
    including processes re-parented to it as subreaper.
    """

    def __init__(self, interval_s: float, memory: bool = True) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.memory = memory  # False: CPU times only (cheap: /proc/PID/stat)
        self.peak = 0
        self.samples = 0
        self.max_procs = 0
        self.kinds: set[str] = set()
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> last seen user+sys s
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Ask the sampler to finish and wait for it."""
        self._stop_event.set()
        self.join()

    def _sample(self) -> None:
        procs = descendants()
        total = 0
        for p in procs:
            try:
                with p.oneshot():
                    try:
                        if self.memory:
                            total += p.memory_full_info().pss
                            self.kinds.add("pss")
                    except (psutil.AccessDenied, AttributeError):
                        total += p.memory_info().rss
                        self.kinds.add("rss")
                    t = p.cpu_times()
                    self.cpu[(p.pid, p.create_time())] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        self.samples += 1
        self.max_procs = max(self.max_procs, len(procs))
        self.peak = max(self.peak, total)

    @property
    def cpu_s(self) -> float:
        """CPU seconds of every process seen (a lower bound: the last interval of each is missed)."""
        return sum(self.cpu.values())

    def run(self) -> None:
        """Sample until stopped."""
        while True:
            self._sample()
            if self._stop_event.wait(self.interval_s):
                return


def kill_descendants() -> None:
    """Kill every descendant of the harness (children first); ignore those already gone."""
    for p in reversed(descendants()):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def reap_leftovers(grace_s: float) -> tuple[int, float]:
    """Reap processes a run left behind (re-parented to the harness); kill them after ``grace_s``.

    Returns how many were reaped and how long they outlived the run's main process.
    """
    t0 = time.perf_counter()
    reaped = 0
    killed = False
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if killed else os.WNOHANG)
        except ChildProcessError:  # no children left
            break
        if pid:
            reaped += 1
            continue
        if not killed and time.perf_counter() - t0 > grace_s:
            log(f"warning: processes left by the run still alive after {grace_s:g} s; killing them")
            kill_descendants()
            killed = True
        time.sleep(0.005)
    return reaped, time.perf_counter() - t0


def children_cpu_s() -> float:
    """User + system CPU seconds of all reaped children of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class RunResult:
    """One measured run of one contender."""

    contender: str
    round: int
    cmd: list[str]
    rc: int
    wall_s: float
    cpu_s: float
    cpu_rusage_s: float
    cpu_sampled_s: float
    peak_mem_bytes: int
    mem_kind: str
    mem_samples: int
    max_procs: int
    leftover_procs: int
    leftover_s: float
    log_prefix: str
    outdir: str
    variant: str = ""
    rows: int | None = None
    rejected: int | None = None
    lines: int | None = None
    status: str | None = None
    self_reported_s: float | None = None
    manifest: dict[str, Any] | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """Name shown in tables (includes the scaling variant)."""
        return f"{self.contender} [{self.variant}]" if self.variant else self.contender

    @property
    def ok(self) -> bool:
        """True when the run exited 0 and its result could be read."""
        return self.rc == 0 and self.error is None


def tail(path: Path, limit: int = 1500) -> str:
    """The last ``limit`` characters of a text file ('' if unreadable)."""
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def measure(
    cmd: list[str],
    log_prefix: Path,
    timeout_s: float,
    interval_s: float,
    subreaper: bool,
    sample_memory: bool = True,
) -> dict[str, Any]:
    """Run ``cmd`` from the repo root; return rc, wall/cpu seconds and the tree's peak memory.

    Wall time is the main process's lifetime. CPU time is ``RUSAGE_CHILDREN`` of everything reaped
    (exact when the harness is a subreaper), else the larger of that and the sampled CPU times.
    Without ``sample_memory`` (and as a subreaper) nothing is sampled: the peak memory is 0.
    """
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    reap_leftovers(0.0)  # nothing of an earlier run may count towards this one
    with open(f"{log_prefix}.out", "wb") as out, open(f"{log_prefix}.err", "wb") as err:
        cpu0 = children_cpu_s()
        sampler = TreeSampler(interval_s, memory=sample_memory)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        if sample_memory or not subreaper:
            sampler.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_descendants()
            rc = proc.wait()
        except BaseException:
            kill_descendants()
            proc.wait()
            reap_leftovers(0.0)
            raise
        finally:
            wall = time.perf_counter() - t0
            if sampler.is_alive():
                sampler.stop()
        leftovers, linger_s = reap_leftovers(LEFTOVER_GRACE_S)
        cpu_rusage = children_cpu_s() - cpu0
    cpu = cpu_rusage if subreaper else max(cpu_rusage, sampler.cpu_s)
    return {
        "rc": rc,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_rusage_s": cpu_rusage,
        "cpu_sampled_s": sampler.cpu_s,
        "peak_mem_bytes": sampler.peak,
        "mem_kind": "+".join(sorted(sampler.kinds)) or "none",
        "mem_samples": sampler.samples,
        "max_procs": sampler.max_procs,
        "leftover_procs": leftovers,
        "leftover_s": linger_s if leftovers else 0.0,
        "timed_out": timed_out,
    }


# ---------------------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """Something the harness runs: the pipeline (optionally with extra ``--set``) or a peer."""

    name: str
    kind: str  # "pipeline" or "peer"
    sets: list[str] = field(default_factory=list)
    variant: str = ""

    @property
    def label(self) -> str:
        """Name shown in tables (includes the scaling variant)."""
        return f"{self.name} [{self.variant}]" if self.variant else self.name

    def command(self, ctx: Context, outdir: Path) -> list[str]:
        """The command line that runs this contender on the data set, writing to ``outdir``."""
        indir = str(ctx.dataset.path)
        if self.kind == PIPELINE:
            cmd = [str(ctx.logpipe), "run", "--config", str(ctx.config), "--input", indir]
            cmd += ["--output", str(outdir)]
            for kv in self.sets:
                cmd += ["--set", kv]
            return cmd
        peers = str(SHARED_BENCH / "peers.py")
        cmd = [str(peers_python()), peers, self.name, indir, str(outdir), "--workers", str(ctx.workers)]
        return cmd + (["--format", ctx.format] if ctx.format != "combined" else [])


@dataclass
class Context:
    """Everything the runs share."""

    dataset: Dataset
    logpipe: Path
    config: Path
    workers: int
    timeout_s: float
    interval_s: float
    logs: Path
    subreaper: bool
    separate_memory: bool = True
    format: str = "combined"  # the yardstick's --format


def fresh(outdir: Path) -> None:
    """Remove an output folder and the pipeline's record beside it: every run starts from nothing."""
    shutil.rmtree(outdir, ignore_errors=True)
    shutil.rmtree(Layout.of(outdir).meta, ignore_errors=True)


def read_manifest(outdir: Path) -> dict[str, Any]:
    """Load the manifest of the run that wrote ``OUTDIR`` (in its metadata directory, ``OUTDIR.meta``)."""
    path = Layout.of(outdir).last_run
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def as_int(value: Any) -> int | None:
    """``int(value)`` or None."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def failed_status(status: Any) -> bool:
    """True if a manifest ``status`` says the run did not succeed."""
    s = str(status).lower()
    return any(word in s for word in ("fail", "error", "abort", "cancel"))


def run_one(ctx: Context, c: Contender, round_no: int) -> RunResult:
    """Run one contender once (fresh output folder), measure it and read its result."""
    slug = re.sub(r"[^\w.=-]+", "_", c.label)
    outdir = BENCH_DIR / "out" / slug
    fresh(outdir)
    cmd = c.command(ctx, outdir)
    log_prefix = ctx.logs / f"{slug}-r{round_no}"
    log(f"round {round_no}: {c.label} ...")
    m = measure(cmd, log_prefix, ctx.timeout_s, ctx.interval_s, ctx.subreaper, not ctx.separate_memory)
    timed_manifest: dict[str, Any] | None = None
    if ctx.separate_memory and m["rc"] == 0 and not m["timed_out"]:
        # the stage table must describe the timed run, not the sampled one
        if c.kind == PIPELINE:
            with contextlib.suppress(OSError, ValueError):
                timed_manifest = read_manifest(outdir)
        # the same command again, sampled for memory only; its time is not used
        fresh(outdir)
        sampled = measure(cmd, Path(f"{log_prefix}-mem"), ctx.timeout_s, ctx.interval_s, ctx.subreaper)
        for key in ("peak_mem_bytes", "mem_kind", "mem_samples", "max_procs"):
            m[key] = sampled[key]
        if sampled["rc"] != 0:
            m["rc"], m["timed_out"] = sampled["rc"], sampled["timed_out"]
            log_prefix = Path(f"{log_prefix}-mem")
    r = RunResult(
        contender=c.name,
        variant=c.variant,
        round=round_no,
        cmd=cmd,
        rc=m["rc"],
        wall_s=m["wall_s"],
        cpu_s=m["cpu_s"],
        cpu_rusage_s=m["cpu_rusage_s"],
        cpu_sampled_s=m["cpu_sampled_s"],
        peak_mem_bytes=m["peak_mem_bytes"],
        mem_kind=m["mem_kind"],
        mem_samples=m["mem_samples"],
        max_procs=m["max_procs"],
        leftover_procs=m["leftover_procs"],
        leftover_s=m["leftover_s"],
        log_prefix=str(log_prefix),
        outdir=str(outdir),
    )
    err_tail = tail(Path(f"{log_prefix}.err"))
    if m["timed_out"]:
        r.error = f"timed out after {ctx.timeout_s:g} s"
    elif r.rc != 0:
        r.error = f"exit status {r.rc}; stderr tail:\n{err_tail}"
    elif c.kind == PIPELINE:
        try:
            man = timed_manifest if timed_manifest is not None else read_manifest(outdir)
        except (OSError, ValueError) as exc:
            r.error = f"no readable manifest: {exc}"
        else:
            r.manifest = man
            r.rows, r.rejected, r.lines = (
                as_int(man.get("rows")),
                as_int(man.get("rejected")),
                as_int(man.get("lines")),
            )
            r.status = str(man.get("status"))
            if failed_status(man.get("status")):
                r.error = f"manifest status is {man.get('status')!r}"
    else:
        out = tail(Path(f"{log_prefix}.out"), 4000)
        hits = PEER_LINE.findall(out)
        if not hits:
            r.error = f"no 'rows=N rejected=M' line in its output: {out[-500:]!r}"
        else:
            rows, rej, secs = hits[-1]
            r.rows, r.rejected = int(rows), int(rej)
            r.self_reported_s = float(secs) if secs else None
            r.status = "ok"
    mem = r.peak_mem_bytes / MB
    if r.leftover_procs and r.leftover_s > 1.0:
        log(f"  note: {r.leftover_procs} process(es) outlived the main one by {r.leftover_s:.1f} s")
    if r.ok:
        log(f"  {c.label}: {r.wall_s:.2f} s, cpu {r.cpu_s:.2f} s, peak {mem:.0f} MB, rows={r.rows}")
    else:
        log(f"  {c.label}: FAILED ({r.error})")
    return r


# ------------------------------------------------------------------------------------ correctness


def load_output(root: Path) -> tuple[pa.Table, list[str]]:
    """Read a hive-partitioned Parquet output as one table in ``COMMON_SCHEMA``.

    Folders and files whose name starts with ``_`` or ``.`` (a peer's ``_SUCCESS`` and the like) are
    skipped. The partition value ``date`` comes from the ``date=...`` folder name; a ``date`` column
    stored inside a file (polars' eager writer keeps it) is dropped first, after checking that it
    agrees with the folder. Returns the table and notes about what was cast or dropped.
    """
    notes: list[str] = []
    casts: dict[str, list[str]] = {}  # "from -> to" -> columns
    files = sorted(
        p
        for p in root.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )
    if not files:
        raise ValueError(f"no Parquet files under {root}")
    tables = []
    for p in files:
        rel = p.relative_to(root)
        parts = dict(part.split("=", 1) for part in rel.parent.parts if "=" in part)
        if "date" not in parts:
            raise ValueError(f"{rel} is not under a date=YYYY-MM-DD folder")
        date = unquote(parts["date"])
        t = pq.read_table(p)
        if "date" in t.column_names:
            inside = t.column("date").cast(pa.string())
            if t.num_rows and not pc.all(pc.equal(inside, date)).as_py():
                notes.append(f"WARNING: the 'date' column inside {rel} disagrees with its folder")
            if not any(n.startswith("files contain") for n in notes):
                notes.append("files contain a 'date' column (dropped; the folder name is used)")
            t = t.drop_columns(["date"])
        t = t.append_column("date", pa.array([date] * t.num_rows, pa.string()))
        cols = []
        for fld in COMMON_SCHEMA:
            if fld.name not in t.column_names:
                raise ValueError(f"column {fld.name!r} missing in {rel} (has {', '.join(t.column_names)})")
            col = t.column(fld.name)
            if col.type != fld.type:
                names = casts.setdefault(f"{col.type} -> {fld.type}", [])
                if fld.name not in names:
                    names.append(fld.name)
                try:
                    col = col.cast(fld.type)
                except pa.ArrowException as exc:
                    raise ValueError(
                        f"{rel}: column {fld.name}: cannot cast {col.type} to {fld.type}: {exc}"
                    ) from exc
            cols.append(col)
        extra = [n for n in t.column_names if n not in COMMON_SCHEMA.names]
        note = f"extra columns ignored: {', '.join(extra)}"
        if extra and note not in notes:
            notes.append(note)
        tables.append(pa.Table.from_arrays(cols, schema=COMMON_SCHEMA))
    notes += [f"cast {kind}: {', '.join(names)}" for kind, names in casts.items()]
    return pa.concat_tables(tables).combine_chunks(), notes


def row_keys(t: pa.Table) -> pa.Array:
    """One string per row joining all columns (nulls marked), for set differences of rows."""
    parts = [pc.fill_null(t.column(n).cast(pa.string()), "\x00NULL") for n in t.column_names]
    return pc.binary_join_element_wise(*parts, "\x1f")


def describe_rows(t: pa.Table, idx: Iterable[int]) -> list[str]:
    """Render some rows of a table as ``{col: value}`` lines."""
    return [json.dumps(t.slice(i, 1).to_pylist()[0], default=str) for i in idx]


@dataclass
class CheckResult:
    """Outcome of comparing one contender's output with the reference's."""

    contender: str
    reference: str
    verdict: str  # MATCH, MISMATCH or NOT CHECKED
    rows: int | None
    rejected: int | None
    ref_rows: int | None
    ref_rejected: int | None
    output_rows: int | None = None
    ref_output_rows: int | None = None
    details: list[str] = field(default_factory=list)


def column_stats(t: pa.Table, name: str) -> dict[str, Any]:
    """Summary of one column used to point at the column that differs: nulls, distinct values, range."""
    col = t.column(name)
    stats: dict[str, Any] = {"nulls": col.null_count, "distinct": pc.count_distinct(col).as_py()}
    if col.type != pa.bool_():
        mm = pc.min_max(col)
        stats |= {"min": str(mm["min"].as_py()), "max": str(mm["max"].as_py())}
    return stats


def compare_outputs(
    run: RunResult,
    ref: RunResult,
    dataset: Dataset,
    cache: dict[str, tuple[pa.Table, list[str]]] | None = None,
    examples: int = 5,
) -> CheckResult:
    """Compare ``run``'s output folder with ``ref``'s: counts, then sorted tables in a common schema.

    ``cache`` keeps loaded outputs by folder so the reference is read once for several contenders.
    """
    res = CheckResult(run.label, ref.label, "MISMATCH", run.rows, run.rejected, ref.rows, ref.rejected)
    d = res.details
    cache = {} if cache is None else cache
    try:
        for folder in (run.outdir, ref.outdir):
            if folder not in cache:
                cache[folder] = load_output(Path(folder))
        a, notes_a = cache[run.outdir]
        b, notes_b = cache[ref.outdir]
    except (OSError, ValueError, pa.ArrowException) as exc:
        d.append(f"could not read the outputs: {exc}")
        return res
    d += [f"{run.label}: {n}" for n in notes_a] + [f"{ref.label}: {n}" for n in notes_b]
    res.output_rows, res.ref_output_rows = a.num_rows, b.num_rows
    counts_ok = True
    for r, t in ((run, a), (ref, b)):
        if r.rows is not None and r.rows != t.num_rows:
            d.append(f"{r.label} reports rows={r.rows} but its output holds {t.num_rows} rows")
            counts_ok = False
    if run.rejected != ref.rejected:
        d.append(f"rejected differs: {run.label}={run.rejected} {ref.label}={ref.rejected}")
        counts_ok = False
    if run.lines is not None and run.lines != dataset.lines:
        d.append(f"{run.label} manifest lines={run.lines} but the input has {dataset.lines} lines")
        counts_ok = False
    if run.rows is not None and run.rejected is not None and run.rows + run.rejected != dataset.lines:
        d.append(f"{run.label}: rows + rejected = {run.rows + run.rejected} != {dataset.lines} input lines")
        counts_ok = False
    keys = [(n, "ascending") for n in COMMON_SCHEMA.names]
    a_sorted, b_sorted = a.sort_by(keys), b.sort_by(keys)
    tables_ok = a_sorted.equals(b_sorted)
    if not tables_ok:
        d.append(f"table differs: {run.label} has {a.num_rows} rows, {ref.label} has {b.num_rows}")
        for n in COMMON_SCHEMA.names:
            sa, sb = column_stats(a, n), column_stats(b, n)
            if sa != sb:
                d.append(f"  column {n} stats differ: {run.label} {sa} / {ref.label} {sb}")
        if a.num_rows == b.num_rows:
            for n in COMMON_SCHEMA.names:
                ca, cb = a_sorted.column(n), b_sorted.column(n)
                same = pc.fill_null(pc.equal(ca, cb), False)
                both_null = pc.and_(pc.is_null(ca), pc.is_null(cb))
                bad = pc.invert(pc.or_(same, both_null))
                nbad = pc.sum(bad).as_py() or 0
                if nbad:
                    first = pc.index(bad, True).as_py()
                    d.append(
                        f"  column {n}: {nbad} differing rows after sorting; first at row {first}: "
                        f"{run.label}={ca[first].as_py()!r} {ref.label}={cb[first].as_py()!r}"
                    )
        ka, kb = row_keys(a), row_keys(b)
        only_a = pc.indices_nonzero(pc.invert(pc.is_in(ka, value_set=kb))).to_pylist()
        only_b = pc.indices_nonzero(pc.invert(pc.is_in(kb, value_set=ka))).to_pylist()
        d.append(f"  rows only in {run.label}: {len(only_a)}; rows only in {ref.label}: {len(only_b)}")
        d += [f"    {run.label} only: {s}" for s in describe_rows(a, only_a[:examples])]
        d += [f"    {ref.label} only: {s}" for s in describe_rows(b, only_b[:examples])]
        if not only_a and not only_b:
            d.append("  (same distinct rows, different multiplicities: duplicated or missing copies)")
    res.verdict = "MATCH" if counts_ok and tables_ok else "MISMATCH"
    return res


# -------------------------------------------------------------------------------------- reporting


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; numeric-looking cells are right-aligned."""
    body = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    numeric = [
        bool(body) and all(re.fullmatch(r"[-+0-9.,x%]+|-", r[i]) for r in body) for i in range(len(headers))
    ]

    def fmt(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)
            )
            + " |"
        )

    sep = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([fmt(list(headers)), sep, *(fmt(r) for r in body)])


def num(value: Any, digits: int = 2) -> str:
    """Format a number with thousands separators, or '-' if it isn't one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if isinstance(value, int) or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def manifest_stages(manifest: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``manifest["stages"]`` as {name: stats}; a list of stage dicts with a ``name`` key is accepted too."""
    stages = (manifest or {}).get("stages") or {}
    if isinstance(stages, list):
        stages = {str(st.get("name", i)): st for i, st in enumerate(stages) if isinstance(st, dict)}
    if not isinstance(stages, dict):
        return {}
    return {str(k): v for k, v in stages.items() if isinstance(v, dict)}


def median_run(runs: list[RunResult]) -> RunResult:
    """The run whose wall time is the (lower) median."""
    ordered = sorted(runs, key=lambda r: r.wall_s)
    return ordered[(len(ordered) - 1) // 2]


def summarise(runs: list[RunResult], dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Per contender label: medians and derived throughputs of its successful runs."""
    out: dict[str, dict[str, Any]] = {}
    labels = list(dict.fromkeys(r.label for r in runs))
    for label in labels:
        mine = [r for r in runs if r.label == label]
        ok = [r for r in mine if r.ok]
        s: dict[str, Any] = {"runs": len(mine), "ok_runs": len(ok), "failed": len(mine) - len(ok)}
        if ok:
            med = statistics.median(r.wall_s for r in ok)
            s |= {
                "median_s": med,
                "min_s": min(r.wall_s for r in ok),
                "max_s": max(r.wall_s for r in ok),
                "lines_per_s": dataset.lines / med if med else None,
                "mb_per_s": dataset.bytes_uncompressed / MB / med if med else None,
                "mb_per_s_compressed": dataset.bytes_on_disk / MB / med if med and dataset.gzip else None,
                "median_cpu_s": statistics.median(r.cpu_s for r in ok),
                "median_peak_mem_mb": statistics.median(r.peak_mem_bytes for r in ok) / MB,
                "max_peak_mem_mb": max(r.peak_mem_bytes for r in ok) / MB,
                "rows": ok[0].rows,
                "rejected": ok[0].rejected,
            }
            parse_lps = [
                v
                for r in ok
                if isinstance(
                    v := manifest_stages(r.manifest).get("parse", {}).get("lines_per_s"), (int, float)
                )
            ]
            if parse_lps:
                s["median_parse_lines_per_s"] = statistics.median(parse_lps)
        out[label] = s
    return out


def contender_table(summary: dict[str, dict[str, Any]], dataset: Dataset) -> str:
    """The main results table with the ratio to the best polars peer."""
    polars_meds = [
        summary[p]["median_s"] for p in ("polars", "polars_lazy") if "median_s" in summary.get(p, {})
    ]
    best = min(polars_meds) if polars_meds else None
    rows = []
    for label, s in summary.items():
        med = s.get("median_s")
        ratio = f"{best / med:.2f}x" if best and med else "-"
        rows.append(
            [
                label,
                f"{s['ok_runs']}/{s['runs']}",
                num(med),
                num(s.get("min_s")),
                num(s.get("lines_per_s"), 0),
                num(s.get("mb_per_s"), 1),
                num(s.get("median_cpu_s")),
                num(s.get("median_peak_mem_mb"), 0),
                ratio,
            ]
        )
    headers = [
        "contender",
        "ok",
        "median s",
        "min s",
        "lines/s",
        "MB/s",
        "cpu s",
        "peak tree MB",
        "polars-best/it",
    ]
    mbps = "MB/s of uncompressed input" + (
        f" ({dataset.bytes_on_disk / MB:.1f} MB gzip on disk)" if dataset.gzip else ""
    )
    return (
        md_table(headers, rows)
        + f"\n\n{mbps}; MB = 10^6 bytes; cpu s = user+sys of the whole tree; peak tree MB = median over runs"
        " of the peak summed PSS; polars-best/it = best polars median / its median (>1: faster than polars)."
    )


def stage_table(manifest: dict[str, Any]) -> str:
    """The pipeline's per-stage table from one manifest."""
    stages = manifest_stages(manifest)
    bottleneck = manifest.get("bottleneck")
    names = [n for n in STAGES if n in stages] + [n for n in stages if n not in STAGES]
    rows = []
    for n in names:
        st = stages.get(n) or {}
        rows.append(
            [
                n,
                num(st.get("workers"), 0),
                num(st.get("wall_s")),
                num(st.get("busy_s")),
                num(st.get("wait_in_s")),
                num(st.get("blocked_out_s")),
                num(st.get("cpu_s")),
                num(st.get("utilization")),
                num(st.get("items_in"), 0),
                num(st.get("items_out"), 0),
                num(st.get("lines_per_s"), 0),
                num(st.get("mb_per_s"), 1),
                "<== bottleneck" if n == bottleneck else "",
            ]
        )
    headers = ["stage", "workers", "wall", "busy", "wait_in", "blocked_out", "cpu", "util", "in", "out"]
    headers += ["lines/s", "MB/s", ""]
    hints = "".join(f"\n{h}" for h in manifest.get("queue_hints") or [])
    return md_table(headers, rows) + f"\n\nbottleneck: {bottleneck}; status: {manifest.get('status')}{hints}"


# ------------------------------------------------------------------------------------- machine info


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version_of(dist: str) -> str | None:
    """Installed version of a distribution in this interpreter, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def peer_versions() -> dict[str, str]:
    """Versions of the peers' packages, from their venv."""
    py = peers_python()
    if not py.exists():
        return {}
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for d in ('polars', 'pyarrow', 'duckdb', 'pandas', 'dask'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "emit(json.dumps(out))"
    )
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()}


def git_revision() -> str:
    """``HEAD`` of the repo, with ``+dirty`` if the tree has changes (read-only git calls)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no commit yet?)"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, interpreters and library versions."""
    vm = psutil.virtual_memory()
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(vm.total / 2**30, 1),
        "ram_available_gb": round(vm.available / 2**30, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "project": {d: version_of(d) for d in ("logpipe", "pyarrow", "pandas", "psutil")},
        "peers": peer_versions(),
        "git": git_revision(),
    }


def print_header(info: dict[str, Any], command: str, started: str, dataset: Dataset) -> None:
    """Print when/where/what: date, exact command, machine and data set."""
    proj = ", ".join(f"{k} {v}" for k, v in info["project"].items() if v)
    peers = ", ".join(f"{k} {v}" for k, v in info["peers"].items())
    emit(f"# logpipe benchmark, {started}\n")
    emit(f"- command: `{command}`")
    emit(f"- git: {info['git']}")
    emit(
        f"- machine: {info['cpu_model']}, {info['logical_cores']} logical /"
        f" {info['physical_cores']} physical cores, {info['ram_gb']} GiB RAM, load avg {info['loadavg']}"
    )
    emit(f"- os: {info['os']}; python {info['python']}; {proj}")
    if peers:
        emit(f"- peers venv: {peers}")
    emit(
        f"- cpu s: {info.get('cpu_accounting')}; memory: peak of the tree's summed PSS, "
        + info.get("memory_runs", "sampled in the timed runs")
    )
    comp = f", {dataset.bytes_on_disk / MB:.1f} MB gzip on disk" if dataset.gzip else ""
    emit(
        f"- data: {dataset.path.relative_to(REPO)} ({len(dataset.files)} files, {dataset.lines:,} lines,"
        f" {dataset.bytes_uncompressed / MB:.1f} MB uncompressed{comp}; generator: {dataset.generator})\n"
    )


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(
        prog="run_bench.py",
        description="Benchmark the logpipe pipeline against the yardstick peers (polars, ...) on generated "
        "access logs: alternated rounds, medians, whole-process-tree peak memory, output check.",
        epilog="Exit status: 0 all good, 1 a run failed or the check mismatched, 2 usage/set-up error.",
    )
    ap.add_argument("--files", type=int, default=8, help="number of log files (default 8)")
    ap.add_argument("--lines", type=int, default=125_000, help="lines per file (default 125000)")
    ap.add_argument("--gzip", action="store_true", help="gzip-compressed input files")
    ap.add_argument(
        "--format",
        choices=sorted(FORMAT_SETTINGS),
        default="combined",
        help="the yardstick's log format (upstream, json: only the polars peers support them)",
    )
    ap.add_argument("--repeats", "-r", type=int, default=3, help="rounds; each runs every contender once (3)")
    ap.add_argument(
        "--peers",
        default=DEFAULT_PEERS,
        help=f"comma list of peers from shared/bench/peers.py, or 'none' (default {DEFAULT_PEERS})",
    )
    ap.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the logpipe pipeline (--no-pipeline: peers only)",
    )
    ap.add_argument(
        "--config", default="configs/laptop.toml", help="pipeline config (default configs/laptop.toml)"
    )
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override passed to `logpipe run --set` (repeatable)",
    )
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="--workers for the peers (cores)"
    )
    ap.add_argument(
        "--logpipe",
        type=Path,
        default=REPO / ".venv" / "bin" / "logpipe",
        help="the logpipe executable to benchmark (default .venv/bin/logpipe)",
    )
    ap.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after round 1 compare every output with the polars peer's (default on)",
    )
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="pipeline only: parse.workers=1,2 and read.workers=1,2,4, --repeats times each",
    )
    ap.add_argument("--sample-ms", type=float, default=50.0, help="memory sampling period in ms (50)")
    ap.add_argument(
        "--memory-sampling",
        choices=("separate", "inline"),
        default="separate",
        help="measure memory in a second run of each command (default; the sampler's CPU cost does not "
        "slow the timed run) or inline in the timed run",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed (1800)")
    a = ap.parse_args(argv)
    if a.files < 1 or a.lines < 1:
        ap.error("--files and --lines must be at least 1")
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    if a.workers < 1:
        ap.error("--workers must be at least 1")
    if a.sample_ms <= 0 or a.timeout <= 0:
        ap.error("--sample-ms and --timeout must be positive")
    bad_sets = [s for s in a.sets if "=" not in s or s.startswith("=")]
    if bad_sets:
        ap.error(f"--set wants KEY=VALUE, got {', '.join(map(repr, bad_sets))}")
    peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    a.peer_list = [] if a.scaling or peers in ([], ["none"]) else peers
    if "none" in a.peer_list:
        ap.error("--peers none cannot be combined with peer names")
    known = known_peers()
    unknown = [p for p in a.peer_list if known is not None and p not in known]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; peers.py has: {', '.join(known or [])}")
    if a.scaling and not a.pipeline:
        ap.error("--scaling runs the pipeline; it cannot be combined with --no-pipeline")
    if not a.pipeline and not a.peer_list:
        ap.error("nothing to run: --no-pipeline and no peers")
    return a


def resolve_config(config: str) -> Path:
    """The config path: as given if it exists (relative to the cwd), else relative to the repo root."""
    p = Path(config)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return REPO / p


def build_contenders(a: argparse.Namespace) -> list[Contender]:
    """The contenders of one round, in run order."""
    if a.scaling:
        variants = [
            "parse.workers=1",
            "parse.workers=2",
            "read.workers=1",
            "read.workers=2",
            "read.workers=4",
        ]
        return [Contender(PIPELINE, PIPELINE, [*a.sets, v], v) for v in variants]
    fmt = [] if a.format == "combined" else [f"run.format={FORMAT_SETTINGS[a.format]}"]
    out = [Contender(PIPELINE, PIPELINE, [*fmt, *a.sets])] if a.pipeline else []
    return out + [Contender(p, "peer") for p in a.peer_list]


def scaling_report(summary: dict[str, dict[str, Any]]) -> str:
    """Table of the scaling variants and the 1 -> N worker ratios."""
    rows = []
    base: dict[str, dict[str, Any]] = {}
    for label, s in summary.items():
        m = re.search(r"\[(\w+)\.workers=(\d+)\]", label)
        stage, n = (m.group(1), int(m.group(2))) if m else ("?", 0)
        if n == 1:
            base[stage] = s
        b = base.get(stage, {})
        speedup = b.get("median_s") / s["median_s"] if b.get("median_s") and s.get("median_s") else None
        lps, blps = s.get("median_parse_lines_per_s"), b.get("median_parse_lines_per_s")
        rows.append(
            [
                label,
                f"{s['ok_runs']}/{s['runs']}",
                num(s.get("median_s")),
                num(s.get("min_s")),
                num(s.get("lines_per_s"), 0),
                num(lps, 0),
                f"{lps / blps:.2f}x" if lps and blps else "-",
                f"{speedup:.2f}x" if speedup else "-",
                num(s.get("median_peak_mem_mb"), 0),
            ]
        )
    headers = [
        "variant",
        "ok",
        "median s",
        "min s",
        "lines/s",
        "parse lines/s",
        "parse vs 1",
        "total vs 1",
        "peak MB",
    ]
    text = md_table(headers, rows)
    p1 = summary.get("pipeline [parse.workers=1]", {}).get("median_parse_lines_per_s")
    p2 = summary.get("pipeline [parse.workers=2]", {}).get("median_parse_lines_per_s")
    if p1 and p2:
        text += f"\n\nparse stage lines/s, 2 workers / 1 worker: {p2 / p1:.2f}x"
    return text


def run_benchmark(a: argparse.Namespace) -> int:
    """Set up, run the rounds, check, report; returns the exit status."""
    started = datetime.now().astimezone()
    stamp = started.strftime("%Y%m%dT%H%M%S")
    command = shlex.join([sys.executable, *sys.argv])
    logpipe = Path(a.logpipe).absolute()
    config = resolve_config(a.config)
    if a.pipeline:
        if not logpipe.exists():
            raise SetupError(f"{logpipe} not found: install the project first (.venv/bin/pip install -e .)")
        if not os.access(logpipe, os.X_OK):
            raise SetupError(f"{logpipe} is not executable")
        if not config.exists():
            where = sorted({str(Path.cwd()), str(REPO)})
            raise SetupError(f"config {a.config} not found (looked in {' and '.join(where)})")
    if a.peer_list and not (SHARED_BENCH / "peers.py").is_file():
        log(f"warning: {SHARED_BENCH} not found; skipping the peers {', '.join(a.peer_list)}")
        a.peer_list = []
        if not a.pipeline:
            raise SetupError("no peers available and --no-pipeline: nothing to run")
    if a.peer_list:
        ensure_peers_venv()
    if a.pipeline:
        ensure_bytecode()
    dataset = ensure_dataset(a.files, a.lines, a.gzip, logpipe, a.format)
    info = machine_info()
    if a.memory_sampling == "separate":
        info["memory_runs"] = "sampled in a second, untimed run of each command"
    subreaper = become_subreaper()
    info["cpu_accounting"] = (
        "getrusage of the whole tree (harness is a child subreaper)"
        if subreaper
        else "max(getrusage of reaped children, sampled per-process cpu times)"
    )
    ctx = Context(
        dataset,
        logpipe,
        config,
        a.workers,
        a.timeout,
        a.sample_ms / 1000,
        BENCH_DIR / "logs" / stamp,
        subreaper,
        a.memory_sampling == "separate",
        a.format,
    )
    contenders = build_contenders(a)
    print_header(info, command, started.isoformat(timespec="seconds"), dataset)

    runs: list[RunResult] = []
    checks: list[CheckResult] = []
    failed: set[str] = set()
    check_wanted = a.check and not a.scaling
    ref_label = REFERENCE_PEER if REFERENCE_PEER in a.peer_list else (a.peer_list[0] if a.peer_list else None)
    if check_wanted and ref_label is None:
        log("warning: --check needs a peer as reference (e.g. --peers polars); check skipped")
    for round_no in range(1, a.repeats + 1):
        for c in contenders:
            if c.label in failed:
                continue
            r = run_one(ctx, c, round_no)
            runs.append(r)
            if not r.ok:
                failed.add(c.label)
        if round_no == 1 and check_wanted and ref_label is not None:
            checks = run_checks(runs, ref_label, dataset)

    summary = summarise(runs, dataset)
    emit("## Results\n")
    emit(f"{a.repeats} round(s), contenders alternated within each round; times measured by the harness.\n")
    emit(scaling_report(summary) if a.scaling else contender_table(summary, dataset))
    pipe_ok = [r for r in runs if r.contender == PIPELINE and r.ok and r.manifest]
    if pipe_ok and not a.scaling:
        med = median_run(pipe_ok)
        emit(f"\n## Pipeline stages (median run: round {med.round}, {med.wall_s:.2f} s)\n")
        emit(stage_table(med.manifest or {}))
    if check_wanted and ref_label is None:
        emit("\nCorrectness check: SKIPPED (no reference peer; run with --peers polars)")
    if checks:
        emit("\n## Correctness check (after round 1)\n")
        for ch in checks:
            verdict = ch.verdict
            emit(
                f"- **{verdict}** {ch.contender} vs {ch.reference}: rows {ch.rows} vs {ch.ref_rows}, "
                f"rejected {ch.rejected} vs {ch.ref_rejected} "
                f"(output rows {ch.output_rows} vs {ch.ref_output_rows})"
            )
            for line in ch.details:
                emit(f"    {line}")
    failures = [r for r in runs if not r.ok]
    if failures:
        emit("\n## Failed runs\n")
        for r in failures:
            emit(f"- {r.label} round {r.round}: {r.error}")
            emit(f"  command: `{shlex.join(r.cmd)}`; logs: {r.log_prefix}.*")
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results_dir = BENCH_DIR / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"{stamp}.json"
    payload = {
        "started": started.isoformat(),
        "command": command,
        "args": dict(vars(a)),
        "machine": info,
        "dataset": {**asdict(dataset), "path": str(dataset.path)},
        "summary": summary,
        "checks": [asdict(c) for c in checks],
        "runs": [{**asdict(r), "label": r.label} for r in runs],
    }
    out.write_text(json.dumps(payload, indent=2, default=str))
    emit(f"\nload avg at end: {info['loadavg_end']}; raw results: {out.relative_to(REPO)}")
    mismatched = [c for c in checks if c.verdict != "MATCH"]
    return 1 if failures or mismatched else 0


def run_checks(runs: list[RunResult], ref_label: str, dataset: Dataset) -> list[CheckResult]:
    """Compare every round-1 output with the reference peer's round-1 output."""
    first = {r.label: r for r in runs if r.round == 1}
    ref = first.get(ref_label)
    checks = []
    cache: dict[str, tuple[pa.Table, list[str]]] = {}
    for label, r in first.items():
        if label == ref_label:
            continue
        if ref is None or not ref.ok:
            res = CheckResult(label, ref_label, "NOT CHECKED", r.rows, r.rejected, None, None)
            res.details.append(f"reference {ref_label} failed; nothing to compare with")
        elif not r.ok:
            res = CheckResult(label, ref_label, "NOT CHECKED", r.rows, r.rejected, ref.rows, ref.rejected)
            res.details.append("run failed; output not checked")
        else:
            log(f"checking {label} against {ref_label} ...")
            res = compare_outputs(r, ref, dataset, cache)
        log(f"  {label} vs {ref_label}: {res.verdict}")
        checks.append(res)
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    a = parse_args(argv)
    try:
        return run_benchmark(a)
    except SetupError as exc:
        log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
