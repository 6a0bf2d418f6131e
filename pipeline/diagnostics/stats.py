"""Per-stage timing: a product feature, reported as a table and kept in the manifest.

For every stage: workers, items in/out, wall, busy, waiting-for-input, blocked-on-output and CPU
seconds, lines/s, MB/s, utilization (busy / (workers x run wall)) and a verdict, ``bound``, on what
limits it (:func:`judge`). The bottleneck is the busiest stage among those that neither starved nor
blocked; a run too short to tell names none rather than one that flips from run to run.

How each number is measured:

* **read** (threads): busy = time reading, decompressing and cutting; blocked_out = time waiting for
  room in the chunk queue; CPU = the threads' own CPU time (``time.thread_time``).
* **parse** (processes): busy and CPU are reported by the worker for each chunk (its wall and its
  process CPU time); wait_in = time the dispatcher had a free worker but no chunk to give it;
  blocked_out = time finished batches waited for room in the write queue.
* **write** (threads): busy = time encoding and writing Parquet; wait_in = time waiting for batches.

Below the table: the bottleneck, one line of advice per stage that needs one, and :func:`queue_hints`
for a queue that looks too shallow (the stage before it blocked on it full while the stage after it
waited on it empty).

Every worker also records *when* it was busy, waiting and blocked (:class:`Timeline`), and a sampler
keeps the counts and queue depths over time (:class:`Samples`): the run report draws them.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import psutil

if TYPE_CHECKING:
    from pipeline.output.manifest import MachineReadings, Manifest, Stage

STAGES = ("read", "parse", "write")
_MB = 1_000_000

# The queue after each stage but the last, by the setting that sizes it.
QUEUE_SETTINGS = {"read": "read.queue_depth", "parse": "parse.queue_depth"}
# Blocking or waiting worth a hint: at least this long and this share of the stage's worker time.
# Shorter spells are the start and the end of a run (the writer waits for the first batch); smaller
# shares cost nothing measurable: a deeper queue made no difference below this share, and was faster
# above it (the measurements: BENCHMARKS.md).
HINT_MIN_S = 0.1
HINT_MIN_SHARE = 0.10
_KIND = {"wait_in_s": "wait", "blocked_out_s": "blocked", "busy_s": "busy"}  # counter -> timeline kind

# The evidence a verdict needs: a stage with less busy time or fewer chunks is "short". Below this the
# stage that looks busiest changes from run to run (a 10,000-line run named write once, parse the next).
SHORT_BUSY_S = 1.0
SHORT_ITEMS = 4
# A stage that spent this share of its worker time waiting for input (or blocked on output) is not
# what limits the run: the stage it waits for is.
IDLE_SHARE = 0.5
# Busy time off the CPU above this share needs explaining: a wait for a core (the machine was
# saturated), for the GIL (threads of one process while cores were free) or for I/O.
OFF_CPU_SHARE = 0.25
SATURATED = 0.8  # share of the machine's cores busy over the run
# Threads on a CPU less than this share of their busy time are asleep, not queued for a core or the GIL
# (both of which hand out turns): they wait on a disk, a socket or a slow source.
SLEEPING = 0.15
GIL_CORES = 0.8  # the main process used about one core: its threads take turns holding the GIL


@dataclass
class StageStats:
    """Counters of one stage; every ``add`` is thread-safe."""

    name: str
    workers: int = 1
    executor: str = "thread"
    busy_s: float = 0.0
    wait_in_s: float = 0.0
    blocked_out_s: float = 0.0
    cpu_s: float = 0.0
    items_in: int = 0
    items_out: int = 0
    lines: int = 0
    bytes: int = 0
    started: float | None = None
    finished: float | None = None
    timeline: Timeline | None = field(default=None, repr=False)  # where its workers' intervals go
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: float) -> None:
        """Add to counters by name, e.g. ``add(busy_s=0.2, items_out=1)``."""
        with self._lock:
            for key, value in amounts.items():
                setattr(self, key, getattr(self, key) + value)

    def start(self) -> None:
        """Mark that the stage started work (first call wins)."""
        with self._lock:
            if self.started is None:
                self.started = time.perf_counter()

    def finish(self) -> None:
        """Mark that the stage finished (last call wins)."""
        with self._lock:
            self.finished = time.perf_counter()

    @contextmanager
    def timed(self, counter: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to ``counter`` (``"wait_in_s"`` or ``"blocked_out_s"``)
        and record it on the calling thread's lane of the timeline."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            t1 = time.perf_counter()
            self.add(**{counter: t1 - t0})
            self.interval(_KIND[counter], t0, t1)

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Add the wall and thread CPU time of the ``with`` body to busy and CPU seconds."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            t1 = time.perf_counter()
            self.add(busy_s=t1 - t0, cpu_s=time.thread_time() - c0)
            self.interval("busy", t0, t1)

    def interval(self, kind: str, start: float, end: float, worker: str | None = None) -> None:
        """Record an interval of ``worker`` (by default the calling thread) on the timeline."""
        if self.timeline is not None:
            self.timeline.add(self.name, worker or threading.current_thread().name, kind, start, end)

    @property
    def wall_s(self) -> float:
        """Seconds from the stage's first work to its end."""
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    def summary(self, run_wall_s: float) -> Stage:
        """The stage's numbers, as stored in the manifest."""
        wall = self.wall_s
        capacity = self.workers * run_wall_s
        return {
            "workers": self.workers,
            "executor": self.executor,
            "items_in": self.items_in,
            "items_out": self.items_out,
            "lines": self.lines,
            "bytes": self.bytes,
            "wall_s": round(wall, 4),
            "busy_s": round(self.busy_s, 4),
            "wait_in_s": round(self.wait_in_s, 4),
            "blocked_out_s": round(self.blocked_out_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "utilization": round(self.busy_s / capacity, 4) if capacity > 0 else 0.0,
            "lines_per_s": round(self.lines / wall) if wall > 0 else 0,
            "mb_per_s": round(self.bytes / _MB / wall, 2) if wall > 0 else 0.0,
        }


class Machine:
    """What the whole machine and this process did while the stages ran: the context a verdict needs.

    Off-CPU time of a busy worker means something else when every core was busy (it waited for a core)
    than when cores were free (it waited for the GIL, or for I/O). ``cores_busy`` is the share of all
    the machine's cores in use (any process, ours or not); ``main_cores`` the cores this process used
    (its read, write and parse threads, not the worker processes).
    """

    def __init__(self) -> None:
        self.cores = psutil.cpu_count() or 1
        self._t0 = time.perf_counter()
        self._machine0 = psutil.cpu_times()
        self._main0 = time.process_time()
        self._end: MachineReadings | None = None

    def finish(self) -> None:
        """Take the readings at the end of the stages (first call wins)."""
        if self._end is not None:
            return
        wall = max(time.perf_counter() - self._t0, 1e-9)
        t0, t1 = self._machine0, psutil.cpu_times()
        total = sum(t1) - sum(t0)
        idle = (t1.idle - t0.idle) + (getattr(t1, "iowait", 0.0) - getattr(t0, "iowait", 0.0))
        self._end = {
            "cores": self.cores,
            "cores_busy": round(1.0 - idle / total, 3) if total > 0 else 0.0,
            "main_cores": round((time.process_time() - self._main0) / wall, 3),
        }

    def summary(self) -> MachineReadings:
        """The readings (taken now if :meth:`finish` was not called)."""
        self.finish()
        assert self._end is not None
        return self._end.copy()


class Timeline:
    """When each worker was busy, waiting for input and blocked on output, in seconds from ``t0``.

    One lane per worker (a read or write thread, a parse process or thread). Recording is one append
    under a lock per interval (a few per chunk), cheap enough to leave on (BENCHMARKS.md). The memory is
    bounded: a lane that reaches ``max_per_lane`` intervals has its neighbours merged pairwise, halving
    its resolution, so a run of any length keeps at most that many per lane; the stage's totals are
    kept exactly by :class:`StageStats` regardless.
    """

    KINDS = ("busy", "wait", "blocked")
    MIN_IDLE_S = 2e-4

    def __init__(self, t0: float, max_per_lane: int = 2000):
        self.t0 = t0
        self.max_per_lane = max_per_lane
        self._lanes: dict[tuple[str, str], list[list[Any]]] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, worker: str, kind: str, start: float, end: float) -> None:
        """Record one interval (``perf_counter`` times; the clock is shared by this machine's
        processes, so a parse worker's times need no conversion)."""
        if end - start < (self.MIN_IDLE_S if kind != "busy" else 0.0) or end <= start:
            return  # a queue that answered at once: invisible in a picture, and there are many
        with self._lock:
            lane = self._lanes.setdefault((stage, worker), [])
            if lane and lane[-1][2] == kind and start - lane[-1][1] < 1e-4:
                lane[-1][1] = end  # the same state continued: one interval
            else:
                lane.append([start, end, kind])
            if len(lane) >= self.max_per_lane:
                lane[:] = [_merge(lane[k : k + 2]) for k in range(0, len(lane), 2)]

    def lanes(self) -> list[dict[str, Any]]:
        """Every lane, ordered by stage then worker, times relative to ``t0``. A lane that recorded only
        busy intervals is a worker that cannot report its idle time (a parse process or thread between
        chunks): the gaps between its intervals become waits."""
        with self._lock:
            items = sorted(self._lanes.items(), key=lambda kv: (STAGES.index(kv[0][0]), kv[0][1]))
            out = []
            for (stage, worker), lane in items:
                intervals = sorted(lane, key=lambda iv: iv[0])
                if all(kind == "busy" for _, _, kind in intervals):
                    intervals = _fill_gaps(intervals)
                out.append(
                    {
                        "stage": stage,
                        "worker": worker,
                        "intervals": [
                            [round(a - self.t0, 5), round(b - self.t0, 5), kind] for a, b, kind in intervals
                        ],
                    }
                )
            return out


def _merge(pair: list[list[Any]]) -> list[Any]:
    """Two neighbouring intervals as one, of the kind that took longer."""
    if len(pair) == 1:
        return pair[0]
    (a0, a1, ak), (b0, b1, bk) = pair
    return [a0, b1, ak if a1 - a0 >= b1 - b0 else bk]


def _fill_gaps(intervals: list[list[Any]], min_gap_s: float = 1e-3) -> list[list[Any]]:
    out: list[list[Any]] = []
    for iv in intervals:
        if out and iv[0] - out[-1][1] >= min_gap_s:
            out.append([out[-1][1], iv[0], "wait"])
        out.append(iv)
    return out


class Samples:
    """Counts and queue depths over time, taken by a sampler thread every ``period`` seconds.

    Bounded like :class:`Timeline`: at ``max_samples`` every other sample is dropped and the period
    doubles, so a long run keeps between half and all of ``max_samples``.
    """

    FIELDS = ("read_lines", "parsed_lines", "written_rows", "chunk_queue", "result_queue")

    def __init__(self, t0: float, period: float = 0.1, max_samples: int = 1000):
        self.t0 = t0
        self.period = period
        self.max_samples = max_samples
        self.rows: list[tuple[float, ...]] = []
        self._lock = threading.Lock()

    def take(self, now: float, values: tuple[int, ...]) -> None:
        """Record one sample: the :attr:`FIELDS`, in order."""
        with self._lock:
            self.rows.append((round(now - self.t0, 4), *values))
            if len(self.rows) >= self.max_samples:
                self.rows = self.rows[::2]
                self.period *= 2

    def to_dict(self, chunk_queue_max: int, result_queue_max: int) -> dict[str, Any]:
        """Columns: ``t`` and every field, plus the queues' sizes."""
        with self._lock:
            columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * (1 + len(self.FIELDS))
        out: dict[str, Any] = {"t": list(columns[0])}
        out |= {name: list(col) for name, col in zip(self.FIELDS, columns[1:], strict=True)}
        return out | {"chunk_queue_max": chunk_queue_max, "result_queue_max": result_queue_max}


@dataclass
class RunStats:
    """The three stages of a run, the machine around them, and their timeline."""

    read: StageStats = field(default_factory=lambda: StageStats("read"))
    parse: StageStats = field(default_factory=lambda: StageStats("parse"))
    write: StageStats = field(default_factory=lambda: StageStats("write"))
    started: float = field(default_factory=time.perf_counter)
    machine: Machine = field(default_factory=Machine)
    timeline: Timeline = field(init=False)

    def __post_init__(self) -> None:
        self.timeline = Timeline(self.started)
        for name in STAGES:
            self.stage(name).timeline = self.timeline

    def stage(self, name: str) -> StageStats:
        """The stats of stage ``name``."""
        stats: StageStats = getattr(self, name)
        return stats

    def summary(self, run_wall_s: float) -> dict[str, Stage]:
        """Every stage's summary, with its verdict."""
        stages = {name: self.stage(name).summary(run_wall_s) for name in STAGES}
        return judge(stages, self.machine.summary())


def judge(stages: Mapping[str, Stage], machine: MachineReadings) -> dict[str, Stage]:
    """Each stage's summary with what bounds it (``bound``), the numbers behind the verdict and the
    evidence in words. The verdicts, in the order they are tried:

    * ``short``: under :data:`SHORT_BUSY_S` of worker time (busy, waiting and blocked) or
      :data:`SHORT_ITEMS` chunks: too little to tell.
    * ``starved`` / ``blocked``: at least :data:`IDLE_SHARE` of its time waiting for input / for room
      downstream. Not the problem: another stage is.
    * ``cpu``: busy time spent on a CPU; for worker processes, also the rest (they parse from memory:
      off a CPU they wait for a core, and more cores would help).
    * ``io``: threads asleep nearly all their busy time (on a CPU under :data:`SLEEPING` of it): they
      wait on a disk, a network or a slow source. More threads overlap more waits.
    * ``gil``: threads off the CPU while their process ran about one core (:data:`GIL_CORES`): they
      take turns holding the GIL. Processes would each have their own.
    * ``cpu`` again: threads off the CPU while the machine's cores were busy (:data:`SATURATED`):
      waiting for a core.
    * ``io`` again: off the CPU while cores were free and the process did not use one.
    """
    judged = {}
    used = run_cores(stages)
    for name, s in stages.items():
        r = _Reading.of(name, s)
        numbers = {
            "wait_share": round(r.wait_share, 3),
            "blocked_share": round(r.blocked_share, 3),
            "cpu_per_busy_s": round(r.on_cpu, 3),
            "cores_used": round(s["cpu_s"] / s["wall_s"], 3) if s["wall_s"] > 0 else 0.0,
        }
        # the first verdict family that applies, in the order of the docstring
        bound, evidence = (
            _too_short(r) or _idle(r) or _on_cpu(r, machine, used) or _threads_off_cpu(r, machine, used)
        )
        judged[name] = cast("Stage", {**s, **numbers, "bound": bound, "evidence": evidence})
    return judged


@dataclass(frozen=True)
class _Reading:
    """What a stage's verdict is made of."""

    workers: int
    executor: str
    items: int
    accounted: float  # worker seconds busy, waiting and blocked
    wait_share: float
    blocked_share: float
    on_cpu: float  # share of the busy time on a CPU

    @classmethod
    def of(cls, name: str, s: Stage) -> _Reading:
        workers, wall, busy = s["workers"], s["wall_s"], s["busy_s"]
        # the parse stage's wait and block are measured on one thread (the dispatcher, the collector):
        # a share of the stage's wall; read and write sum theirs over their threads. A stage's wall
        # starts at its first work, but its threads wait for that work before: their time is at least
        # what they accounted, so no share is over 100%.
        single = name == "parse"
        capacity = wall if single else max(workers * wall, busy + s["wait_in_s"] + s["blocked_out_s"])
        return cls(
            workers,
            s["executor"],
            s["items_out"] if name != "write" else s["items_in"],
            busy + s["wait_in_s"] + s["blocked_out_s"],
            _share(s["wait_in_s"], capacity),
            _share(s["blocked_out_s"], capacity),
            s["cpu_s"] / busy if busy > 0 else 0.0,
        )

    @property
    def what(self) -> str:
        return _workers_text(self.workers, self.executor)


_Verdict = tuple[str, str]  # bound, evidence


def _too_short(r: _Reading) -> _Verdict | None:
    if r.accounted < SHORT_BUSY_S or r.items < SHORT_ITEMS:
        return "short", f"{r.items} chunks, {r.accounted:.2f} s of worker time: too little to tell"
    return None


def _idle(r: _Reading) -> _Verdict | None:
    """Starved or blocked: another stage is the problem."""
    if r.wait_share >= IDLE_SHARE:
        return "starved", f"waited for input {r.wait_share:.0%} of its time"
    if r.blocked_share >= IDLE_SHARE:
        return "blocked", f"blocked on a full queue {r.blocked_share:.0%} of its time"
    return None


def _on_cpu(r: _Reading, machine: MachineReadings, used: float) -> _Verdict | None:
    """CPU-bound: on a CPU, or a worker process off it (waiting for a core)."""
    if 1.0 - r.on_cpu <= OFF_CPU_SHARE:
        return "cpu", f"on a CPU {r.on_cpu:.0%} of its busy time ({r.what})"
    if r.executor != "thread":
        # a worker process parses from memory: its time off a CPU is a wait for a core
        return "cpu", (
            f"on a CPU {r.on_cpu:.0%} of its busy time ({r.what}), the rest waiting for a core: "
            + _machine_text(machine, used)
        )
    return None


def _threads_off_cpu(r: _Reading, machine: MachineReadings, used: float) -> _Verdict:
    """Why threads were off the CPU: asleep on I/O, taking turns at the GIL, or waiting for a core."""
    if r.on_cpu < SLEEPING and machine["main_cores"] < 1.0:
        return "io", f"off the CPU {1 - r.on_cpu:.0%} of its busy time ({r.what}): waiting on I/O"
    if machine["main_cores"] >= GIL_CORES:
        return "gil", (
            f"{r.what} on a CPU only {r.on_cpu:.0%} of {'its' if r.workers == 1 else 'their'} busy time "
            f"while the process ran "
            f"{machine['main_cores']:.2f} cores: its threads take turns holding the GIL"
        )
    if machine["cores_busy"] >= SATURATED:
        return "cpu", (
            f"on a CPU {r.on_cpu:.0%} of its busy time, the rest waiting for a core: "
            + _machine_text(machine, used)
        )
    return "io", (
        f"off the CPU {1 - r.on_cpu:.0%} of its busy time while {1 - machine['cores_busy']:.0%} "
        "of the cores were free: waiting on I/O"
    )


def _share(seconds: float, of: float) -> float:
    return min(1.0, seconds / of) if of > 0 else 0.0


def _workers_text(workers: int, executor: str) -> str:
    noun = {"thread": "thread", "process": "process", "inline": "inline worker", "dask": "Dask worker"}
    word = noun.get(executor, f"{executor} worker")
    plural = "es" if word.endswith("s") else "s"
    return f"{workers} {word}{plural * (workers != 1)}"


def run_cores(stages: Mapping[str, Stage]) -> float:
    """The cores the run's stages used together (their CPU seconds over their walls): on a busy
    machine, how much of it the run itself took."""
    return sum(s["cpu_s"] / s["wall_s"] for s in stages.values() if s["wall_s"] > 0)


# A verdict blames the machine's other processes when the run used less than this share of the cores
# that were busy.
OTHERS_SHARE = 0.75


def _machine_text(machine: MachineReadings, used: float) -> str:
    """``the machine's 2 cores were 100% busy, 0.70 of them with this run (other processes took the
    rest)``: a verdict that blames the machine says how much of it the run itself used."""
    cores, share = machine["cores"], machine["cores_busy"]
    text = f"the machine's {cores} cores were {share:.0%} busy, {used:.2f} of them with this run"
    return text + (" (other processes took the rest)" if _others_busy(machine, used) else "")


def _others_busy(machine: MachineReadings, used: float) -> bool:
    # a record without the readings blames nothing
    return used < OTHERS_SHARE * machine.get("cores", 0) * machine.get("cores_busy", 0.0)


def bottleneck(stages: Mapping[str, Stage]) -> str | None:
    """The busiest stage (relative to its workers) among those that neither starved nor blocked;
    ``None`` when every stage is ``short``: naming one would be a guess that flips between runs."""
    candidates = [n for n in STAGES if stages[n].get("bound") not in ("short", "starved", "blocked")]
    if not candidates:
        if all(stages[n].get("bound") == "short" for n in STAGES):
            return None
        candidates = list(STAGES)
    return max(candidates, key=lambda name: stages[name]["utilization"])


def advice(
    stages: Mapping[str, Stage],
    cores: int,
    machine: MachineReadings | None = None,
    cluster: bool = False,
) -> list[str]:
    """One line for each stage whose verdict calls for a change, the bottleneck first.

    ``machine``: the readings of :class:`Machine` (advice that blames the machine says how much of it
    the run used); ``cluster``: the parse ran on an external Dask cluster, whose workers no setting of
    this run changes."""
    neck = bottleneck(stages)
    out = []
    for name in sorted(STAGES, key=lambda n: n != neck):
        s = stages[name]
        bound = s.get("bound")
        if bound == "gil":
            out += _gil_advice(name, stages)
        elif bound == "io" and name == neck:  # elsewhere more threads would wait on the bottleneck
            out.append(f"{name} is io-bound: raise {name}.workers (now {s['workers']}) to overlap more waits")
        elif bound == "cpu" and name == neck:
            out.append(_cpu_advice(name, s, cores, cluster, _blame(machine, run_cores(stages))))
    if neck is None:
        out.append("to find the bottleneck, run on more input (logpipe profile runs bounded samples)")
    return out


def _gil_advice(name: str, stages: Mapping[str, Stage]) -> list[str]:
    workers, parse = stages[name]["workers"], stages["parse"]
    if name == "parse":
        return [
            f"parse is gil-bound on {_workers_text(workers, 'thread')}: set parse.executor = "
            '"process" (one GIL per process)'
        ]
    if parse.get("bound") == "gil":
        return []  # the parse's advice cures it too
    if parse["executor"] in ("thread", "inline"):
        return [
            f"{name} is gil-bound: the main process's threads take turns holding the GIL; "
            'parse.executor = "process" keeps the parse out of it'
        ]
    if workers > 1:  # the parse is out of the process already: the stage's own threads contend
        return [
            f"{name} is gil-bound: its {workers} threads take turns holding the GIL with the other "
            f"stages' threads; fewer {name}.workers (now {workers}) may do as well"
        ]
    return []


def _blame(machine: MachineReadings | None, used: float) -> str:
    """What advice that blames the machine adds when other processes took most of it."""
    if machine is None or not _others_busy(machine, used):
        return ""
    return f", but this run used {used:.2f} of them: other processes took the rest"


def _cpu_advice(name: str, s: Stage, cores: int, cluster: bool, blame: str) -> str:
    workers, executor = s["workers"], s["executor"]
    if name == "parse" and executor == "thread":
        return 'parse is cpu-bound on threads: set parse.executor = "process"'
    if name == "parse" and executor == "inline":
        return 'parse is cpu-bound inline: set parse.executor = "process" and parse.workers'
    if name == "parse" and executor == "dask" and cluster:
        what = _workers_text(workers, "dask")
        return f"parse is cpu-bound on the Dask cluster's {what}: add workers to the cluster"
    if workers < cores:
        return f"{name} is cpu-bound: raise {name}.workers (now {workers}; {cores} cores)"
    if blame:
        return f"{name} is cpu-bound on all {cores} cores{blame}; a quieter machine or more cores would help"
    return f"{name} is cpu-bound on all {cores} cores: more cores would help"


def queue_hints(stages: Mapping[str, Stage]) -> list[str]:
    """Queues that look too shallow, as lines of advice.

    When the stage before a queue spent a noticeable share of its time blocked on it full and the
    stage after it a noticeable share waiting on it empty, the queue went from full to empty and back:
    one side works in bursts (the writer encoding a row group while the parse workers keep finishing
    chunks) that the queue is too short to even out, and a core idles in between. A deeper queue keeps
    both sides working (docs/development.md, "Performance notes"). A stage that is merely faster than
    the next one blocks without the next one ever waiting, and gets no hint.
    """
    hints = []
    for up, down in itertools.pairwise(STAGES):
        blocked, waited = stages[up]["blocked_out_s"], stages[down]["wait_in_s"]
        if _noticeable(blocked, stages[up]) and _noticeable(waited, stages[down]):
            hints.append(
                f"hint: {up} was blocked {blocked:.2f} s on a full queue to {down}, and {down} waited "
                f"{waited:.2f} s on it empty: a bigger {QUEUE_SETTINGS[up]} would keep both working"
            )
    return hints


def _noticeable(seconds: float, stage: Stage) -> bool:
    return seconds >= HINT_MIN_S and seconds >= HINT_MIN_SHARE * stage["workers"] * stage["wall_s"]


class Column(NamedTuple):
    """A column of the stage table: the manifest's key, its heading, how a value is written."""

    key: str
    label: str
    cell: Callable[[Any], str]
    wide: bool = False  # only where there is room: the HTML report, not the terminal


def _seconds(v: Any) -> str:
    return f"{float(v):.2f}"


# The stage table's columns, for the table printed after a run and for the HTML report's.
STAGE_COLUMNS = (
    Column("workers", "workers", lambda v: f"{int(v)}"),
    Column("executor", "executor", str, wide=True),
    Column("items_in", "items in", lambda v: f"{int(v):,}"),
    Column("items_out", "items out", lambda v: f"{int(v):,}"),
    Column("lines", "lines", lambda v: f"{int(v):,}", wide=True),
    Column("bytes", "MB", lambda v: f"{int(v) / _MB:,.1f}", wide=True),
    Column("wall_s", "wall s", _seconds),
    Column("busy_s", "busy s", _seconds),
    Column("wait_in_s", "wait in s", _seconds),
    Column("blocked_out_s", "blocked s", _seconds),
    Column("cpu_s", "cpu s", _seconds),
    Column("utilization", "util", lambda v: f"{float(v):.0%}"),
    Column("lines_per_s", "lines/s", lambda v: f"{int(v):,}"),
    Column("mb_per_s", "MB/s", lambda v: f"{float(v):,.1f}"),
)


def format_table(
    stages: Mapping[str, Stage],
    cores: int | None = None,
    machine: MachineReadings | None = None,
    cluster: bool = False,
) -> str:
    """The stage table printed after a run, with the bottleneck, the advice and the queue hints."""
    neck = bottleneck(stages)
    columns = [c for c in STAGE_COLUMNS if not c.wide]
    head = ("stage", *(c.label for c in columns), "bound")
    rows: list[tuple[str, ...]] = [head]
    for name in STAGES:
        s: Mapping[str, Any] = stages[name]
        cells = (c.cell(s[c.key]) for c in columns)
        rows.append((name + (" *" if name == neck else ""), *cells, str(s.get("bound", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, len(head) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if neck is None:
        lines.append("bottleneck: none named (every stage is short: too little work to tell)")
    else:
        lines.append(f"bottleneck: {neck} ({stages[neck].get('evidence', 'highest utilization')})")
    if "bound" in stages[STAGES[0]]:
        lines += advice(stages, cores or os.cpu_count() or 1, machine, cluster)
    lines += queue_hints(stages)
    return "\n".join(lines)


def manifest_table(manifest: Manifest) -> str:
    """The stage table of a run's manifest, with the advice for the machine it ran on."""
    from pipeline.output.manifest import cluster

    machine = manifest.get("machine")
    cores = machine.get("cores") if machine else None
    return format_table(manifest["stages"], cores, machine, cluster(manifest))
