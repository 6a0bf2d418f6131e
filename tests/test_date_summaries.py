"""Date summaries kept beside the record for the history report (pipeline.report.date_summaries).

The reference is the history read without summaries: with them, in every order of runs, appends,
compactions, refreshes and damaged or stale summaries, the panels must be the same, and the summaries
must be used only while the files they cover are there unchanged.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.output.compact import Sizes, compact
from pipeline.output.layout import Layout
from pipeline.report.date_summaries import GRACE_S, SUMMARIES, DateSummaries
from pipeline.report.history import DateRange, dataset_files, history_data, history_panels
from pipeline.runner import run_pipeline
from pipeline.synthetic import generate

FIRST = date(2026, 11, 1)
ALL = DateRange()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("logs")
    generate(src, files=3, lines=2000, seed=5)
    return src


def _run(inputs: Path, out: Path, full_refresh: bool = False, **run: Any) -> None:
    cfg = {"run": {"inputs": [str(inputs)], "output": str(out), "progress": "off"} | run}
    result = run_pipeline(validate(cfg | {"parse": {"executor": "inline"}}), full_refresh)
    assert result.exit_code == ExitCode.OK, result.error


def _read(out: Path, span: DateRange = ALL) -> tuple[dict[str, Any], dict[str, Any]]:
    """The history's panels (without ``covers``) and its ``covers``."""
    panels = dict(history_data(out, span)["panels"])
    return panels, panels.pop("covers")


def _scanned(out: Path, span: DateRange = ALL) -> dict[str, Any]:
    """The reference: every file read, no summary used or written."""
    panels = dict(history_panels(out, dataset_files(out), span))
    panels.pop("covers")
    return panels


def _summaries(out: Path) -> Path:
    return Layout.of(out).meta / SUMMARIES


def test_a_second_report_reads_the_summaries_and_draws_the_same(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(logs, out)
    want = _scanned(out)
    first, covers = _read(out)
    assert first == want and covers["dates_summarized"] == covers["dates_added_to"] == 0
    assert sorted(p.name for p in _summaries(out).iterdir()) == [
        f"date={d.isoformat()}.lps" for d in sorted(dataset_files(out))
    ]
    again, covers = _read(out)
    assert again == want and covers["dates_summarized"] == covers["dates"] > 1
    # a sub-range from the same summaries
    span = DateRange(FIRST + timedelta(days=1), FIRST + timedelta(days=1))
    part, covers = _read(out, span)
    assert part == _scanned(out, span) and covers["dates_summarized"] == 1


def test_appends_compaction_and_refresh_keep_the_report_true(logs: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for log in sorted(logs.iterdir()):
        shutil.copy(log, src / log.name)
        _run(src, out, incremental=True, panels=True, report_days=2)
        panels, covers = _read(out)
        assert panels == _scanned(out)
    assert covers["dates_summarized"] + covers["dates_added_to"] == covers["dates"]
    assert covers["dates_added_to"] >= 1  # a date a later run appended to: its summary grew by the file
    assert compact(Layout.of(out), Sizes(65536, 1_000_000), 2).status == "compacted"
    panels, covers = _read(out)  # the summaries moved to the compacted files: nothing read again
    assert panels == _scanned(out) and covers["dates_summarized"] == covers["dates"]
    _run(src, out, incremental=True, report_days=0, full_refresh=True)
    panels, covers = _read(out)
    assert panels == _scanned(out) and covers["dates_summarized"] == 0


def test_a_compaction_moves_only_a_summary_that_covers_every_file_it_merged(
    logs: Path, tmp_path: Path
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    first, *rest = sorted(logs.iterdir())
    shutil.copy(first, src / first.name)
    _run(src, out, incremental=True)
    _read(out)  # every date summarized
    for log in rest:  # each spills into the date before it: dates with files no summary covers
        shutil.copy(log, src / log.name)
        _run(src, out, incremental=True)
    appended = {d for d, rels in dataset_files(out).items() if len(rels) > 1}
    assert appended
    assert compact(Layout.of(out), Sizes(65536, 1_000_000), 2).status == "compacted"
    panels, covers = _read(out)
    assert panels == _scanned(out)
    assert covers["dates_summarized"] == covers["dates_added_to"] == 0  # read again, not trusted


def test_a_summary_is_used_only_while_its_files_are_unchanged(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(logs, out)
    want, _ = _read(out)
    rel = dataset_files(out)[FIRST][0]
    st = (out / rel).stat()
    os.utime(out / rel, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # the same name, but not the same file
    panels, covers = _read(out)
    assert panels == want and covers["dates_summarized"] == covers["dates"] - 1


@pytest.mark.parametrize("damage", [b"", b"LPSD", b"garbage" * 40, "truncated"])
def test_a_damaged_summary_is_not_used(logs: Path, tmp_path: Path, damage: bytes | str) -> None:
    out = tmp_path / "out"
    _run(logs, out)
    want, _ = _read(out)
    path = _summaries(out) / f"date={FIRST.isoformat()}.lps"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncated" else damage)  # type: ignore[arg-type]
    panels, covers = _read(out)
    assert panels == want and covers["dates_summarized"] == covers["dates"] - 1
    assert path.read_bytes() == blob  # rewritten whole


def test_without_a_record_or_one_to_write_in_the_report_still_reads(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(logs, out)
    want, _ = _read(out)
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    shutil.copytree(out, moved)  # a dataset without its record
    panels, covers = _read(moved)
    assert panels == want and covers["dates_summarized"] == 0
    assert not (tmp_path / "elsewhere" / "data.meta").exists()  # nothing created beside it
    summaries = _summaries(out)
    shutil.rmtree(summaries)
    summaries.write_bytes(b"in the way")  # nothing can be written there, even by root
    panels, covers = _read(out)
    assert panels == want and covers["dates_summarized"] == 0
    assert summaries.read_bytes() == b"in the way"


def test_the_sweep_removes_only_old_summaries_of_dates_without_files(tmp_path: Path) -> None:
    root = tmp_path / SUMMARIES
    root.mkdir()
    names = [
        "date=2026-11-01.lps",  # the date still has files: kept
        "date=2026-11-02.lps",  # no files, in the range, old: removed
        "date=2026-11-03.lps",  # no files, in the range, recent (a run about to commit): kept
        "date=2026-12-01.lps",  # no files, outside the range: kept
        ".tmp-123-date=2026-11-01.lps",  # a crashed writer's, old: removed
        "notes.txt",  # not ours: kept
    ]
    old = time.time() - GRACE_S - 10
    for name in names:
        (root / name).write_bytes(b"x")
        if name != "date=2026-11-03.lps":
            os.utime(root / name, (old, old))
    span = DateRange(date(2026, 11, 1), date(2026, 11, 30))
    assert DateSummaries(root).sweep([date(2026, 11, 1)], span.covers) == 2
    assert sorted(p.name for p in root.iterdir()) == sorted(
        n for n in names if n not in ("date=2026-11-02.lps", ".tmp-123-date=2026-11-01.lps")
    )
