"""Per-stage timing: a product feature, reported as a table and kept in the manifest.

For every stage: workers, items in/out, wall, busy, waiting-for-input, blocked-on-output and CPU
seconds, lines/s, MB/s and utilization (busy / (workers x run wall)). The stage with the highest
utilization is the bottleneck: it is the one whose workers were busy while the others waited.

How each number is measured:

* **read** (threads): busy = time reading, decompressing and cutting; blocked_out = time waiting for
  room in the chunk queue; CPU = the threads' own CPU time (``time.thread_time``).
* **parse** (processes): busy and CPU are reported by the worker for each chunk (its wall and its
  process CPU time); wait_in = time the dispatcher had a free worker but no chunk to give it;
  blocked_out = time finished batches waited for room in the write queue.
* **write** (threads): busy = time encoding and writing Parquet; wait_in = time waiting for batches.

Below the table, :func:`queue_hints` points at a queue that looks too shallow: the stage before it
blocked on it full while the stage after it waited on it empty.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

STAGES = ("read", "parse", "write")
_MB = 1_000_000

# The queue after each stage but the last, by the setting that sizes it.
QUEUE_SETTINGS = {"read": "read.queue_depth", "parse": "parse.queue_depth"}
# Blocking or waiting worth a hint: at least this long and this share of the stage's worker time.
# Shorter spells are the start and the end of a run (the writer waits for the first batch); smaller
# shares cost nothing measurable (cron.toml on 2 cores: parse blocked 7% of its time, and twice the
# queue ran 1244 against 1243 ms; laptop.toml with a queue of 2: 15-20%, and 8 ran 2-6% faster).
HINT_MIN_S = 0.1
HINT_MIN_SHARE = 0.10


@dataclass
class StageStats:
    """Counters of one stage; every ``add`` is thread-safe."""

    name: str
    workers: int = 1
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
        """Add the wall time of the ``with`` body to ``counter`` (e.g. ``"wait_in_s"``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(**{counter: time.perf_counter() - t0})

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Add the wall and thread CPU time of the ``with`` body to busy and CPU seconds."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(busy_s=time.perf_counter() - t0, cpu_s=time.thread_time() - c0)

    @property
    def wall_s(self) -> float:
        """Seconds from the stage's first work to its end."""
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    def summary(self, run_wall_s: float) -> dict[str, Any]:
        """The stage's numbers, as stored in the manifest."""
        wall = self.wall_s
        capacity = self.workers * run_wall_s
        return {
            "workers": self.workers,
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


@dataclass
class RunStats:
    """The three stages of a run."""

    read: StageStats = field(default_factory=lambda: StageStats("read"))
    parse: StageStats = field(default_factory=lambda: StageStats("parse"))
    write: StageStats = field(default_factory=lambda: StageStats("write"))
    started: float = field(default_factory=time.perf_counter)

    def stage(self, name: str) -> StageStats:
        """The stats of stage ``name``."""
        stats: StageStats = getattr(self, name)
        return stats

    def summary(self, run_wall_s: float) -> dict[str, dict[str, Any]]:
        """Every stage's summary."""
        return {name: self.stage(name).summary(run_wall_s) for name in STAGES}


def bottleneck(stages: dict[str, dict[str, Any]]) -> str:
    """The stage whose workers were busiest relative to their number."""
    return max(STAGES, key=lambda name: stages[name]["utilization"])


def queue_hints(stages: dict[str, dict[str, Any]]) -> list[str]:
    """Queues that look too shallow, as lines of advice.

    When the stage before a queue spent a noticeable share of its time blocked on it full and the
    stage after it a noticeable share waiting on it empty, the queue went from full to empty and back:
    one side works in bursts (the writer encoding a row group while the parse workers keep finishing
    chunks) that the queue is too short to even out, and a core idles in between. A deeper queue keeps
    both sides working (measured: README, "Performance notes"). A stage that is merely faster than
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


def _noticeable(seconds: float, stage: dict[str, Any]) -> bool:
    return seconds >= HINT_MIN_S and seconds >= HINT_MIN_SHARE * stage["workers"] * stage["wall_s"]


def format_table(stages: dict[str, dict[str, Any]]) -> str:
    """The stage table printed after a run."""
    neck = bottleneck(stages)
    head: tuple[str, ...] = (
        "stage",
        "workers",
        "items in",
        "items out",
        "wall s",
        "busy s",
        "wait in s",
        "blocked s",
    )
    head += ("cpu s", "util", "lines/s", "MB/s")
    rows: list[tuple[str, ...]] = [head]
    for name in STAGES:
        s = stages[name]
        rows.append(
            (
                name + (" *" if name == neck else ""),
                str(s["workers"]),
                str(s["items_in"]),
                str(s["items_out"]),
                f"{s['wall_s']:.2f}",
                f"{s['busy_s']:.2f}",
                f"{s['wait_in_s']:.2f}",
                f"{s['blocked_out_s']:.2f}",
                f"{s['cpu_s']:.2f}",
                f"{s['utilization']:.0%}",
                f"{s['lines_per_s']:,}",
                f"{s['mb_per_s']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"bottleneck: {neck} (* = highest utilization: busy / (workers x run wall))")
    lines += queue_hints(stages)
    return "\n".join(lines)
