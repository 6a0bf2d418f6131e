"""Per-stage timing: the summary numbers, the bottleneck and the queue hints under the table."""

from __future__ import annotations

import time
from typing import Any

from pipeline.stats import RunStats, StageStats, bottleneck, format_table, queue_hints


def stage(workers: int, wall: float, busy: float, wait_in: float, blocked: float) -> dict[str, Any]:
    """A stage's summary as the manifest stores it (the counters a hint looks at, the rest filled)."""
    return {
        "workers": workers,
        "items_in": 120,
        "items_out": 120,
        "lines": 1_000_000,
        "bytes": 179_000_000,
        "wall_s": wall,
        "busy_s": busy,
        "wait_in_s": wait_in,
        "blocked_out_s": blocked,
        "cpu_s": busy * 0.7,
        "utilization": busy / (workers * wall),
        "lines_per_s": int(1_000_000 / wall),
        "mb_per_s": 179 / wall,
    }


Counters = tuple[int, float, float, float, float]


def run(read: Counters, parse: Counters, write: Counters) -> dict[str, dict[str, Any]]:
    """A run's stages from (workers, wall, busy, wait in, blocked) of each."""
    return {"read": stage(*read), "parse": stage(*parse), "write": stage(*write)}


# Stage tables of real 1M-line runs of laptop.toml on 2 cores (BENCHMARKS.md): with
# parse.queue_depth = 2 the workers stopped whenever the writer encoded a row group...
SHALLOW = run((2, 0.92, 0.20, 0.00, 1.62), (2, 0.95, 1.52, 0.01, 0.32), (1, 0.96, 0.67, 0.31, 0.00))
# ... and with 8 they did not.
DEEP = run((2, 0.84, 0.16, 0.00, 1.52), (2, 0.88, 1.56, 0.00, 0.05), (1, 0.87, 0.75, 0.14, 0.00))


def test_hint_for_a_queue_that_fills_and_empties() -> None:
    hints = queue_hints(SHALLOW)
    assert len(hints) == 1
    assert "parse.queue_depth" in hints[0]
    assert "0.32 s" in hints[0] and "0.31 s" in hints[0]
    assert hints[0] in format_table(SHALLOW).splitlines()


def test_no_hint_when_the_queue_is_deep_enough() -> None:
    assert queue_hints(DEEP) == []
    assert "hint" not in format_table(DEEP)


def test_a_faster_stage_that_blocks_gets_no_hint() -> None:
    # the readers block 1.6 s on a full chunk queue in both runs, but parse never waits for chunks:
    # reading is simply faster than parsing, and a deeper read queue would change nothing
    assert not any("read.queue_depth" in h for h in queue_hints(SHALLOW))
    starved = SHALLOW | {"parse": stage(2, 0.95, 1.20, 0.30, 0.32)}
    assert any("read.queue_depth" in h for h in queue_hints(starved))


def test_no_hint_for_a_little_blocking() -> None:
    # cron.toml on 2 cores (4 MiB chunks, a queue of 4): parse blocked 7% of its time; twice the
    # queue made no measurable difference (1244 against 1243 ms)
    little = run((2, 0.78, 0.30, 0.00, 1.15), (2, 0.90, 1.60, 0.01, 0.13), (1, 0.87, 0.68, 0.28, 0.00))
    assert queue_hints(little) == []


def test_no_hint_for_start_and_end_effects_of_a_short_run() -> None:
    # a tiny input: the writer waits for the first batch for most of its short life
    tiny = run((2, 0.03, 0.05, 0.00, 0.00), (2, 0.04, 0.03, 0.01, 0.02), (1, 0.02, 0.01, 0.04, 0.00))
    assert queue_hints(tiny) == []


def test_bottleneck_is_the_busiest_stage_for_its_workers() -> None:
    assert bottleneck(SHALLOW) == "parse"
    assert bottleneck(SHALLOW | {"write": stage(1, 0.96, 0.95, 0.0, 0.0)}) == "write"


def test_summary_of_counted_stages() -> None:
    stats = RunStats()
    parse: StageStats = stats.stage("parse")
    parse.workers = 2
    parse.start()
    parse.add(busy_s=1.0, cpu_s=0.8, blocked_out_s=0.25, items_in=3, items_out=3, lines=300, bytes=600)
    time.sleep(0.01)
    parse.finish()
    s = stats.summary(run_wall_s=1.0)["parse"]
    assert (s["items_in"], s["items_out"], s["busy_s"], s["cpu_s"], s["blocked_out_s"]) == (
        3,
        3,
        1.0,
        0.8,
        0.25,
    )
    assert s["utilization"] == 0.5  # busy / (workers x run wall)
    assert s["wall_s"] >= 0.01
    assert abs(s["lines_per_s"] - 300 / s["wall_s"]) < 0.01 * s["lines_per_s"]  # wall_s is rounded
