"""One contender's run: a command timed as a whole process tree, and its peak memory.

Wall time is the main process's lifetime, measured by the harness (start-up included). CPU time is
``RUSAGE_CHILDREN`` of everything reaped: the harness is a child subreaper, so processes a run leaves
behind (a multiprocessing fork server, a resource tracker) are re-parented to it, and their CPU and
that of the workers they reaped reaches ``getrusage`` when the harness reaps them. Memory is the peak of
the tree's summed PSS (RSS where PSS is unreadable), sampled every ``--sample-ms`` by a thread; by
default in a second, untimed run of the same command, because reading PSS costs ~3 ms of kernel time per
process and sample on the same cores (a five-process pipeline lost ~30% of a core to it, polars ~7%).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import BENCH_DIR, MB, REPO, SHARED_BENCH, log
from bench.datasets import Dataset
from bench.environment import PEERS_PYTHON
from pipeline.output.layout import Layout

PIPELINE = "pipeline"
PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
LEFTOVER_GRACE_S = 10.0  # how long processes a run leaves behind may outlive its main process
PEER_LINE = re.compile(r"rows=(\d+)\s+rejected=(\d+)(?:\s+seconds=([0-9.]+))?")


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``); returns success.

    Without it, the CPU of processes re-parented to init (a fork server's workers) is not counted.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _descendants() -> list[psutil.Process]:
    """All live descendants of the harness: during a run, exactly the run's process tree."""
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


class MemorySampler(threading.Thread):
    """Samples the summed PSS of the harness's descendants until stopped; keeps the peak."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peak = self.samples = self.max_procs = 0
        self.kinds: set[str] = set()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Ask the sampler to finish and wait for it."""
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        """Sample every ``interval_s`` until stopped."""
        while True:
            procs, total = _descendants(), 0
            for p in procs:
                try:
                    total += p.memory_full_info().pss
                    self.kinds.add("pss")
                except (psutil.AccessDenied, AttributeError):
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                        self.kinds.add("rss")
                except psutil.Error:
                    continue
            self.samples += 1
            self.max_procs = max(self.max_procs, len(procs))
            self.peak = max(self.peak, total)
            if self._stop_event.wait(self.interval_s):
                return


def _reap_leftovers(grace_s: float) -> tuple[int, float]:
    """Reap processes a run left behind (re-parented to the harness); kill them after ``grace_s``.

    Returns how many were reaped and how long they outlived the run's main process.
    """
    t0, reaped, killed = time.perf_counter(), 0, False
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if killed else os.WNOHANG)
        except ChildProcessError:  # no children left
            return reaped, time.perf_counter() - t0
        if pid:
            reaped += 1
        elif not killed and time.perf_counter() - t0 > grace_s:
            log(f"warning: processes left by the run still alive after {grace_s:g} s; killing them")
            _kill_descendants()
            killed = True
        else:
            time.sleep(0.005)


def _kill_descendants() -> None:
    for p in reversed(_descendants()):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Measurement:
    """What the harness measured of one command (``peak_mem_bytes`` 0 when memory was not sampled)."""

    rc: int
    wall_s: float
    cpu_s: float
    timed_out: bool
    leftover_procs: int
    leftover_s: float
    peak_mem_bytes: int = 0
    mem_kind: str = "none"
    mem_samples: int = 0
    max_procs: int = 0


def measure(cmd: list[str], log_prefix: Path, timeout_s: float, sample_s: float | None) -> Measurement:
    """Run ``cmd`` from the repo root (output to ``log_prefix.out/.err``) and measure it.

    With ``sample_s``, a thread samples the tree's memory every ``sample_s`` seconds.
    """
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    _reap_leftovers(0.0)  # nothing of an earlier run may count towards this one
    sampler = MemorySampler(sample_s) if sample_s else None
    with open(f"{log_prefix}.out", "wb") as out, open(f"{log_prefix}.err", "wb") as err:
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        if sampler:
            sampler.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_descendants()
            rc = proc.wait()
        except BaseException:
            _kill_descendants()
            proc.wait()
            _reap_leftovers(0.0)
            raise
        finally:
            wall = time.perf_counter() - t0
            if sampler:
                sampler.stop()
        leftovers, linger_s = _reap_leftovers(LEFTOVER_GRACE_S)
    m = Measurement(rc, wall, _children_cpu_s() - cpu0, timed_out, leftovers, linger_s if leftovers else 0.0)
    if sampler:
        m.peak_mem_bytes, m.mem_samples, m.max_procs = sampler.peak, sampler.samples, sampler.max_procs
        m.mem_kind = "+".join(sorted(sampler.kinds)) or "none"
    return m


@dataclass
class Contender:
    """Something the harness runs: the pipeline (optionally with extra ``--set``) or a peer."""

    name: str
    kind: str  # PIPELINE or "peer"
    sets: list[str] = field(default_factory=list)
    variant: str = ""

    @property
    def label(self) -> str:
        """Name shown in tables (includes the scaling variant)."""
        return f"{self.name} [{self.variant}]" if self.variant else self.name


@dataclass
class Context:
    """Everything the runs share."""

    dataset: Dataset
    logpipe: Path
    config: Path
    workers: int  # the peers' --workers
    timeout_s: float
    sample_s: float
    logs: Path
    separate_memory: bool = True
    format: str = "combined"  # the yardstick's --format

    def command(self, c: Contender, outdir: Path) -> list[str]:
        """The command line that runs ``c`` on the data set, writing to ``outdir``."""
        indir = str(self.dataset.path)
        if c.kind == PIPELINE:
            cmd = [str(self.logpipe), "run", "--config", str(self.config), "--input", indir]
            return cmd + ["--output", str(outdir)] + [arg for kv in c.sets for arg in ("--set", kv)]
        peers = str(SHARED_BENCH / "peers.py")
        cmd = [str(PEERS_PYTHON), peers, c.name, indir, str(outdir), "--workers", str(self.workers)]
        return cmd + (["--format", self.format] if self.format != "combined" else [])


@dataclass(kw_only=True)
class RunResult(Measurement):
    """One measured run of one contender, and what it reported."""

    contender: str
    variant: str
    round: int
    cmd: list[str]
    log_prefix: str
    outdir: str
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


def _fresh(outdir: Path) -> None:
    """Remove an output folder and the pipeline's record beside it: every run starts from nothing."""
    shutil.rmtree(outdir, ignore_errors=True)
    shutil.rmtree(Layout.of(outdir).meta, ignore_errors=True)


def _read_manifest(outdir: Path) -> dict[str, Any]:
    """The manifest of the run that wrote ``outdir`` (in its metadata directory)."""
    data = json.loads(Layout.of(outdir).last_run.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{Layout.of(outdir).last_run} is not a JSON object")
    return data


def _tail(path: Path, limit: int) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def run_one(ctx: Context, c: Contender, round_no: int) -> RunResult:
    """Run one contender once (fresh output folder), measure it and read its result."""
    slug = re.sub(r"[^\w.=-]+", "_", c.label)
    outdir = BENCH_DIR / "out" / slug
    _fresh(outdir)
    cmd = ctx.command(c, outdir)
    log_prefix = ctx.logs / f"{slug}-r{round_no}"
    log(f"round {round_no}: {c.label} ...")
    m = measure(cmd, log_prefix, ctx.timeout_s, None if ctx.separate_memory else ctx.sample_s)
    manifest: dict[str, Any] | None = None
    if c.kind == PIPELINE and m.rc == 0:  # the stage table describes the timed run
        with contextlib.suppress(OSError, ValueError):
            manifest = _read_manifest(outdir)
    if ctx.separate_memory and m.rc == 0 and not m.timed_out:
        # the same command again, sampled for memory only; its time is not used
        _fresh(outdir)
        mem = measure(cmd, Path(f"{log_prefix}-mem"), ctx.timeout_s, ctx.sample_s)
        m.peak_mem_bytes, m.mem_kind, m.mem_samples = mem.peak_mem_bytes, mem.mem_kind, mem.mem_samples
        m.max_procs = mem.max_procs
        if mem.rc != 0:
            m.rc, m.timed_out, log_prefix = mem.rc, mem.timed_out, Path(f"{log_prefix}-mem")
    r = RunResult(
        **asdict(m),
        contender=c.name,
        variant=c.variant,
        round=round_no,
        cmd=cmd,
        log_prefix=str(log_prefix),
        outdir=str(outdir),
    )
    if m.timed_out:
        r.error = f"timed out after {ctx.timeout_s:g} s"
    elif r.rc != 0:
        r.error = f"exit status {r.rc}; stderr tail:\n{_tail(Path(f'{log_prefix}.err'), 1500)}"
    elif c.kind == PIPELINE:
        if manifest is None:
            r.error = "no readable manifest"
        else:
            r.manifest, r.status = manifest, str(manifest.get("status"))
            r.rows, r.rejected, r.lines = (manifest.get(k) for k in ("rows", "rejected", "lines"))
            if r.status != "ok":
                r.error = f"manifest status is {r.status!r}"
    elif hits := PEER_LINE.findall(_tail(Path(f"{log_prefix}.out"), 4000)):
        rows, rej, secs = hits[-1]
        r.rows, r.rejected, r.status = int(rows), int(rej), "ok"
        r.self_reported_s = float(secs) if secs else None
    else:
        r.error = f"no 'rows=N rejected=M' line in its output ({log_prefix}.out)"
    if r.leftover_procs and r.leftover_s > 1.0:
        log(f"  note: {r.leftover_procs} process(es) outlived the main one by {r.leftover_s:.1f} s")
    if r.ok:
        mb = r.peak_mem_bytes / MB
        log(f"  {c.label}: {r.wall_s:.2f} s, cpu {r.cpu_s:.2f} s, peak {mb:.0f} MB, rows={r.rows}")
    else:
        log(f"  {c.label}: FAILED ({r.error})")
    return r
