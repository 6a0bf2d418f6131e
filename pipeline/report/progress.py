"""Progress: tqdm bars for people at a terminal, a periodic log line for cron and CI.

``progress = "auto"`` shows bars only when stderr is a TTY; without one (cron, pipes) a plain
``progress:`` log line is written every ``interval`` seconds instead, so logs stay readable. The line
comes from a timer thread, not from the stages' counting: a run that waits (a slow transform, a stalled
remote read) keeps logging, with the same numbers, instead of going silent.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)


def use_bars(mode: str) -> bool:
    """Whether to draw bars for the ``run.progress`` setting."""
    return mode == "on" or (mode == "auto" and sys.stderr.isatty())


class Progress:
    """Counts bytes read, lines parsed and rows written; thread-safe."""

    def __init__(self, total_bytes: int, bars: bool, interval: float = 10.0):
        self.total_bytes = total_bytes
        self.read_bytes = 0
        self.lines = 0
        self.rows = 0
        self._lock = threading.Lock()
        self._interval = interval
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None
        self._bars: list[tqdm[Any]] = []
        if bars:
            self._bars = [
                tqdm(
                    total=total_bytes if i == 0 else None,
                    desc=desc,
                    unit=unit,
                    unit_scale=True,
                    position=i,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    mininterval=0.2,
                )
                for i, (desc, unit) in enumerate((("read  ", "B"), ("parsed", " lines"), ("rows  ", " rows")))
            ]
        else:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def add(self, read_bytes: int = 0, lines: int = 0, rows: int = 0) -> None:
        """Count progress of any stage."""
        with self._lock:
            self.read_bytes += read_bytes
            self.lines += lines
            self.rows += rows
            if self._bars:
                for bar, n in zip(self._bars, (read_bytes, lines, rows), strict=True):
                    if n:
                        bar.update(n)

    def _tick(self) -> None:
        """The ``progress`` thread: a log line every ``interval`` seconds until :meth:`close`."""
        while not self._stopped.wait(self._interval):
            with self._lock:
                self._log()

    def _log(self) -> None:
        pct = f" ({self.read_bytes / self.total_bytes:.0%})" if self.total_bytes else ""
        log.info(
            "progress: read %.1f MB%s, %d lines parsed, %d rows written",
            self.read_bytes / 1e6,
            pct,
            self.lines,
            self.rows,
        )

    def close(self) -> None:
        """Remove the bars, or stop the log lines. Safe to call twice."""
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            for bar in self._bars:
                bar.close()
            self._bars = []
