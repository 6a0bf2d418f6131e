"""The output lock: one run per output directory; a lock left by a dead process is taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.errors import ExitCode, LockedError, PipelineError
from pipeline.output.lock import OutputLock, lock_path_for, read_lock_info
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(60)

_WAIT_S = 20  # how long a helper process may take to start and lock


@contextmanager
def held_elsewhere(output: Path, run_id: str = "other-run") -> Iterator[subprocess.Popen[bytes]]:
    """A second Python process that holds the lock of ``output`` (sleeping) until the block ends."""
    code = (
        "import sys, time\n"
        "from pipeline.output.lock import OutputLock\n"
        f"with OutputLock(sys.argv[1], {run_id!r}):\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(output)], cwd=ROOT)
    try:
        deadline = time.monotonic() + _WAIT_S
        while (read_lock_info(output) or {}).get("pid") != proc.pid:
            assert proc.poll() is None, f"lock holder exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "lock holder did not take the lock in time"
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=_WAIT_S)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=_WAIT_S)
    return proc.pid


def test_lock_file_is_a_hidden_sibling(tmp_path: Path) -> None:
    assert lock_path_for(tmp_path / "out") == tmp_path / ".out.lock"
    assert lock_path_for(str(tmp_path / "a" / "out")) == tmp_path / "a" / ".out.lock"


def test_acquire_writes_holder_info_and_release_removes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"  # the parent is created
    lock = OutputLock(out, "run-1")
    assert lock.path == tmp_path / "deep" / ".out.lock"
    with lock as entered:
        assert entered is lock and entered.held
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()
        assert info["run_id"] == "run-1"
        assert info["started_at"].endswith("+00:00")
        assert read_lock_info(out) == info
        assert not out.exists()  # the lock never creates the output itself
    assert not lock.held
    assert not lock.path.exists()
    assert read_lock_info(out) is None
    lock.release()  # releasing twice is harmless
    with OutputLock(out):  # and the output can be locked again
        pass


def test_released_on_exception(tmp_path: Path) -> None:
    lock = OutputLock(tmp_path / "out")
    with pytest.raises(ValueError, match="boom"), lock:
        raise ValueError("boom")
    assert not lock.held and not lock.path.exists()


def test_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with OutputLock(tmp_path / "out", "first"), pytest.raises(LockedError) as err:
        OutputLock(tmp_path / "out").acquire()
    assert err.value.pid == os.getpid() and err.value.run_id == "first"
    other = OutputLock(tmp_path / "other")  # a different output is independent
    other.acquire()
    other.release()


def test_a_run_holding_the_lock_in_another_process_blocks_a_second(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with held_elsewhere(out, "cron-0800") as holder:
        lock = OutputLock(out, "cron-0805")
        t0 = time.monotonic()
        with pytest.raises(LockedError) as err:
            lock.acquire()
        assert time.monotonic() - t0 < 5  # refused at once, never waits for the holder
        assert not lock.held
        exc = err.value
        assert exc.exit_code == ExitCode.LOCKED and int(exc.exit_code) == 4
        assert isinstance(exc, PipelineError)
        assert exc.pid == holder.pid and exc.host == socket.gethostname() and exc.run_id == "cron-0800"
        assert exc.started_at is not None
        message = str(exc)
        for part in (f"pid {holder.pid}", socket.gethostname(), exc.started_at, str(lock.path)):
            assert part in message
        # the refused run leaves the holder's lock file alone
        assert (read_lock_info(out) or {}).get("pid") == holder.pid


def test_lock_of_a_killed_holder_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    with held_elsewhere(out) as holder:
        holder.send_signal(signal.SIGKILL)  # the kernel drops its flock; the file stays behind
        holder.wait(timeout=_WAIT_S)
        assert lock_path_for(out).exists()
        with caplog.at_level(logging.WARNING, logger="pipeline.output.lock"), OutputLock(out, "next") as lock:
            assert lock.info["pid"] == os.getpid()
            assert lock.previous is not None and lock.previous["pid"] == holder.pid
    assert f"taking over stale lock of pid {holder.pid} (not running)" in caplog.text
    assert not lock_path_for(out).exists()


def test_stale_lock_file_of_a_dead_pid_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    pid = dead_pid()
    stale = {"pid": pid, "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00"}
    lock_path_for(out).write_text(json.dumps(stale))  # no flock held on it
    with caplog.at_level(logging.WARNING, logger="pipeline.output.lock"), OutputLock(out, "new") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert lock.previous == stale
    assert f"taking over stale lock of pid {pid} (not running)" in caplog.text
    assert not lock_path_for(out).exists()


def test_stale_lock_file_of_another_host_or_garbage_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    path = lock_path_for(out)
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started_at": "x"}))
    with caplog.at_level(logging.WARNING, logger="pipeline.output.lock"), OutputLock(out):
        pass
    assert "taking over stale lock of pid 1 on host elsewhere.example" in caplog.text
    caplog.clear()
    path.write_bytes(b"\x00not json\xff")  # a torn or foreign file: nothing to say, still taken
    with caplog.at_level(logging.WARNING, logger="pipeline.output.lock"), OutputLock(out) as lock:
        assert lock.previous is None
    assert not path.exists()


def test_release_keeps_a_lock_file_that_is_no_longer_ours(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lock = OutputLock(out)
    lock.acquire()
    # Someone removed the file by hand and another run made a new one: it must not be deleted by us.
    lock.path.unlink()
    lock.path.write_text(json.dumps({"pid": 12345, "host": socket.gethostname()}))
    lock.release()
    assert json.loads(lock.path.read_text())["pid"] == 12345


def test_unusable_parent_is_a_clear_pipeline_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file where a directory should be")
    with pytest.raises(PipelineError, match="cannot create the lock file") as err:
        OutputLock(blocker / "out").acquire()
    assert not isinstance(err.value, LockedError)
