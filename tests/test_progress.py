"""Progress without bars: the periodic log line."""

from __future__ import annotations

import logging
import time

import pytest

from pipeline.report.progress import Progress


def test_a_waiting_run_keeps_logging_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.report.progress")
    progress = Progress(1000, bars=False, interval=0.05)
    progress.add(read_bytes=500, lines=10, rows=9)
    time.sleep(0.4)  # nothing moves meanwhile: the lines must come all the same
    progress.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) >= 3, lines
    assert lines[-1] == "progress: read 0.0 MB (50%), 10 lines parsed, 9 rows written"
    caplog.clear()
    time.sleep(0.15)
    assert not caplog.records  # closed: no more lines
    progress.close()  # twice is fine
