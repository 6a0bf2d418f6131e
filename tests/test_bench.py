"""The benchmark scripts still run (on the small sample data, not timed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import parse_scaling  # noqa: E402
import run_bench  # noqa: E402

from pipeline.parse import ParseTask  # noqa: E402
from pipeline.stats import STAGES  # noqa: E402


@pytest.mark.timeout(120)
def test_parse_scaling_feeds_every_line_through_the_parse_stage() -> None:
    files = sorted((REPO / "data" / "sample").glob("*.log"))
    chunks = parse_scaling.read_chunks(files, 64 * 1024, 1 << 20, 4096)
    tasks = [ParseTask(c) for c in chunks]
    rounds = [parse_scaling.one_round(w, tasks, "forkserver", 1 << 20) for w in (1, 2)]
    lines = sum(1 for f in files for _ in f.open("rb"))
    assert [r.lines for r in rounds] == [lines, lines]
    assert all(r.seconds > 0 and r.worker_cpu_s > 0 for r in rounds)
    assert "1.00x" in parse_scaling.report(rounds)


def test_stage_table_shows_the_runs_queue_hints() -> None:
    stage = {"workers": 1, "wall_s": 1.0, "busy_s": 0.5, "utilization": 0.5}
    manifest = {"stages": dict.fromkeys(STAGES, stage), "bottleneck": "parse", "status": "ok"}
    assert "hint" not in run_bench.stage_table(manifest)
    hint = "hint: parse was blocked 0.32 s on a full queue to write, and ..."
    assert run_bench.stage_table(manifest | {"queue_hints": [hint]}).endswith("status: ok\n" + hint)
