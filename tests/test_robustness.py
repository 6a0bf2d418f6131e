"""Safe for cron: the real CLI in a subprocess, attacked from outside while it runs.

Killed workers, SIGINT/SIGTERM, hostile input files, untrusted text on the terminal, unwritable output.
Every run has a deadline (and pytest-timeout backs it up), and every process a test starts, with its
descendants, is killed when the test ends, so a regression fails the test instead of hanging CI.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.synthetic import generate
from tests.conftest import ROOT, layout, manifest, read_output, rejects_dir, run_cli

pytestmark = pytest.mark.timeout(120)

FILES, BLOCK_LINES, REPEAT = 4, 12_500, 12
LINES = FILES * BLOCK_LINES * REPEAT  # 600,000 lines: a run of a few seconds on 2 cores
# Many small chunks, two workers: there is always work in flight when a test strikes.
RUN_SETS = ("--set", "parse.workers=2", "--set", "read.chunk_bytes=65536", "--set", "run.progress=off")
RUN_DEADLINE_S = 60  # a whole run, also on a loaded 2-core machine
SIGNAL_DEADLINE_S = 15  # from SIGINT/SIGTERM to exit
REAP_S = 3  # for descendants to go after the main process exited


# ---------------------------------------------------------------------------------------------- helpers


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def gone(p: psutil.Process) -> bool:
    """The process has exited (a zombie left for init to reap counts as exited)."""
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _is_tracker(p: psutil.Process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def _kill(p: psutil.Process) -> None:
    try:
        if not gone(p):
            p.kill()
    except psutil.Error:
        pass


class Running:
    """``logpipe ARGS`` started in the background, stdout and stderr to files (no pipe can fill up).

    As a context manager it kills the run and every descendant it ever saw when the block ends, so a
    failing or hanging test leaves no processes behind.
    """

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self._stdout, self._stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self._stdout.open("wb") as out, self._stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", *args], stdout=out, stderr=err, cwd=ROOT, env=env
            )
        self.main = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {}

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.descendants()
        # The resource tracker is spared at first: once every other process of the run is gone it
        # unlinks the run's shared memory and semaphores; killing it too would leak them in /dev/shm.
        trackers = [p for p in self.seen.values() if _is_tracker(p)]
        for p in [self.main, *(p for p in self.seen.values() if p not in trackers)]:
            _kill(p)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not all(gone(p) for p in trackers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in trackers:
            _kill(p)

    @property
    def stdout(self) -> str:
        return self._stdout.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._stderr.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        """The run's live descendants now (fork server, resource tracker, parse workers)."""
        try:
            found = self.main.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in found:
            self.seen.setdefault(p.pid, p)
        return found

    def workers(self) -> list[psutil.Process]:
        """Parse workers: the children of the fork server (itself a child of the main process)."""
        try:
            servers = [
                c for c in self.main.children() if "multiprocessing.forkserver" in " ".join(c.cmdline())
            ]
            return [w for s in servers for w in s.children()]
        except psutil.NoSuchProcess:
            return []

    def wait_mid_run(self) -> list[psutil.Process]:
        """Wait until the workers are busy parsing; their list. Fails if the run ends first."""

        def busy() -> bool:
            assert self.proc.poll() is None, f"the run ended before the test could strike:\n{self.stderr}"
            try:
                return sum(w.cpu_times().user for w in self.workers()) >= 0.3
            except psutil.NoSuchProcess:
                return False

        wait_until(busy, RUN_DEADLINE_S, "parse workers to be busy")
        self.descendants()
        return self.workers()

    def parsing_worker(self) -> psutil.Process:
        """A parse worker that is on the CPU now, not asleep on its pipe between chunks: one killed
        while idle had no chunk, so no chunk could say how its worker ended. On a loaded machine the
        main process feeds the workers slowly, and both can be idle at a given moment."""
        found: list[psutil.Process] = []

        def running() -> bool:
            assert self.proc.poll() is None, f"the run ended before the test could strike:\n{self.stderr}"
            for w in self.workers():
                with contextlib.suppress(psutil.Error):
                    if w.status() == psutil.STATUS_RUNNING:
                        found.append(w)
                        return True
            return False

        wait_until(running, RUN_DEADLINE_S, "a parse worker to be parsing")
        return found[0]

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (the process is killed on leaving the block) after ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"logpipe did not exit within {timeout} s; stderr so far:\n{self.stderr}")


def staging_dirs(out: Path) -> list[Path]:
    """Staging directories of ``out`` left on disk (hidden siblings ``.NAME.staging-RUN``)."""
    return sorted(out.parent.glob(f".{out.name}.staging-*"))


def tree_digest(out: Path) -> dict[str, str]:
    """Every file of the dataset ``out`` and of its published record, with the sha256 of its bytes
    (``last-run.json`` is left out: every run, failed or not, writes it)."""
    return {
        str(p.relative_to(out.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in (out, layout(out).current)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "leaked" not in stderr, stderr  # e.g. resource_tracker: leaked shared_memory objects


@dataclass
class CleanRun:
    """An undisturbed run over the big input: the reference for every disturbed one."""

    out: Path
    manifest: dict[str, Any]
    table: pa.Table


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 files of 150,000 lines (generated once, then repeated: generating every line is slow)."""
    root = tmp_path_factory.mktemp("big")
    seeds = generate(root / "seed", files=FILES, lines=BLOCK_LINES, seed=11)
    src = root / "in"
    src.mkdir()
    for k, path in enumerate(sorted(seeds)):
        (src / f"access-{k}.log").write_bytes(Path(path).read_bytes() * REPEAT)
    shutil.rmtree(root / "seed")
    return src


@pytest.fixture(scope="module")
def clean(big_input: Path, tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    out = tmp_path_factory.mktemp("clean") / "out"
    proc = run_cli("run", "-i", str(big_input), "-o", str(out), *RUN_SETS, "--quiet", timeout=RUN_DEADLINE_S)
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["lines"] == LINES and m["rows"] + m["rejected"] == LINES and m["rejected"] > 0
    return CleanRun(out, m, read_output(out))


def previous_output(clean: CleanRun, tmp_path: Path) -> Path:
    """A copy of the clean run's output: the "previous output" a disturbed run must leave alone."""
    out = tmp_path / "out"
    shutil.copytree(clean.out, out)
    shutil.copytree(layout(clean.out).meta, layout(out).meta)
    return out


# ------------------------------------------------------------------------------- a. killed parse worker


@pytest.mark.slow
def test_parse_worker_killed_mid_run_is_retried(big_input: Path, clean: CleanRun, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Running(tmp_path, "run", "-i", str(big_input), "-o", str(out), *RUN_SETS) as run:
        run.wait_mid_run()
        run.parsing_worker().send_signal(signal.SIGKILL)  # as the OOM killer would, mid-chunk
        code = run.wait(RUN_DEADLINE_S)
    assert code == 0, run.stderr
    # the worker killed had its chunk (its death described), or had just handed it back (a worker on
    # the CPU may be between chunks): then only the chunks the broken pool held are retried
    killed = r"(worker \d+ was killed by SIGKILL \(e\.g\. by the OOM killer\)"
    killed += r"|the pool broke \(another worker died\) before this chunk started)"
    assert re.search(killed + r"; retrying \S+access-\d\.log lines \d+-\d+ \(retry 1 of 2\)", run.stderr)
    assert_no_traceback(run.stderr)
    m = manifest(out)
    assert m["status"] == "ok" and m["committed"]
    assert m["lines"] == LINES
    assert m["rows"] + m["rejected"] == m["lines"]
    assert (m["rows"], m["rejected"]) == (clean.manifest["rows"], clean.manifest["rejected"])
    assert m["reject_reasons"] == clean.manifest["reject_reasons"]
    assert read_output(out).equals(clean.table)  # the same rows, none twice, none lost
    assert not staging_dirs(out)


def test_parse_worker_killed_without_retries_fails_cleanly(
    big_input: Path, clean: CleanRun, tmp_path: Path
) -> None:
    out = previous_output(clean, tmp_path)
    before = tree_digest(out)
    args = ("run", "-i", str(big_input), "-o", str(out), *RUN_SETS, "--set", "parse.max_retries=0")
    with Running(tmp_path, *args) as run:
        run.wait_mid_run()[0].send_signal(signal.SIGKILL)
        code = run.wait(RUN_DEADLINE_S)
    assert code == 1, run.stderr
    # the error names the chunk that was lost: its file and line range
    assert re.search(r"file \S+access-\d\.log, chunk lines \d+-\d+\]", run.stderr), run.stderr
    assert "parse.max_retries=0" in run.stderr
    assert_no_traceback(run.stderr)
    assert tree_digest(out) == before  # the previous data is untouched ...
    m = manifest(out)  # ... and only the manifest is rewritten, saying so (documented)
    assert m["status"] == "failed" and not m["committed"] and m["outputs"] == []
    assert "access-" in m["error"]
    assert m["previous_run"]["run_id"] == clean.manifest["run_id"]
    assert not staging_dirs(out)


# ------------------------------------------------------------------------------------ b. SIGINT/SIGTERM


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_signal_mid_run_stops_cleanly(
    big_input: Path, clean: CleanRun, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    out = previous_output(clean, tmp_path)
    before = tree_digest(out)
    with Running(tmp_path, "run", "-i", str(big_input), "-o", str(out), *RUN_SETS) as run:
        run.wait_mid_run()
        family = run.descendants()
        assert len(family) >= 3  # fork server, resource tracker, workers
        run.proc.send_signal(signum)
        assert run.wait(SIGNAL_DEADLINE_S) == code, run.stderr
        wait_until(lambda: all(gone(p) for p in family), REAP_S, "the run's descendants to exit")
    assert f"interrupted by signal {int(signum)}" in run.stderr
    # the summary does not claim rows that were parsed but never committed
    assert "interrupted; nothing committed, the previous output is kept" in run.stdout
    assert "nothing written" in run.stdout and "rows written" not in run.stdout
    assert_no_traceback(run.stderr)
    assert not staging_dirs(out)
    assert tree_digest(out) == before
    m = manifest(out)
    assert m["status"] == "interrupted" and not m["committed"]
    assert m["previous_run"]["run_id"] == clean.manifest["run_id"]
    # nothing in the way of the next run
    proc = run_cli("run", "-i", str(big_input), "-o", str(out), *RUN_SETS, "--quiet", timeout=RUN_DEADLINE_S)
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["status"] == "ok" and m["rows"] == clean.manifest["rows"]


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["stopped", "ignores-sigterm"])
def test_sigterm_ends_a_run_whose_worker_does_not_stop(big_input: Path, tmp_path: Path, worker: str) -> None:
    # a stopped worker (SIGSTOP), or one whose code ignores SIGTERM, is only ended by a SIGKILL
    out = tmp_path / "out"
    ignore = ("--set", 'run.transforms=["tests.transform_examples:ignore_sigterm"]')
    sets = ignore if worker == "ignores-sigterm" else ()
    with Running(tmp_path, "run", "-i", str(big_input), "-o", str(out), *RUN_SETS, *sets) as run:
        first = run.wait_mid_run()[0]
        if worker == "stopped":
            first.send_signal(signal.SIGSTOP)
        family = run.descendants()
        time.sleep(0.3)
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(SIGNAL_DEADLINE_S) == 143, run.stderr
        took = time.monotonic() - t0
        wait_until(lambda: all(gone(p) for p in family), REAP_S, "the run's descendants to exit")
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert re.search(r"worker \d+ did not stop on SIGTERM within 0\.5 s: killing it", run.stderr), run.stderr
    assert_no_traceback(run.stderr)
    assert not staging_dirs(out)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_sigterm_ends_a_run_whose_chunk_is_stuck_in_a_thread(tmp_path: Path, executor: str) -> None:
    """A thread cannot be killed: the run leaves it behind and ends all the same."""
    out = tmp_path / "out"
    hang = '["tests.transform_examples:hang"]'
    args = ("run", "-i", "data/sample/access-000.log", "-o", str(out), "--set", f"run.transforms={hang}")
    with Running(tmp_path, *args, "--set", f"parse.executor={executor}") as run:
        time.sleep(2.0)  # the chunk is in the transform by now
        assert run.proc.poll() is None, run.stderr
        t0 = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(SIGNAL_DEADLINE_S) == 143, run.stderr
        took = time.monotonic() - t0
    assert took < 2.5, f"SIGTERM took {took:.1f} s"
    assert not staging_dirs(out)
    if executor == "inline":  # the dispatch thread itself is in the transform
        assert "dispatch thread did not stop within 0.8 s; leaving it behind" in run.stderr


@pytest.mark.slow
def test_chunk_over_the_time_limit_fails_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hang = '["tests.transform_examples:hang"]'
    args = ("run", "-i", "data/sample/access-000.log", "-o", str(out), "--set", f"run.transforms={hang}")
    with Running(tmp_path, *args, "--set", "parse.chunk_timeout_s=1", "--set", "run.progress=off") as run:
        t0 = time.monotonic()
        code = run.wait(RUN_DEADLINE_S)
        took = time.monotonic() - t0
        family = run.descendants()
        wait_until(lambda: all(gone(p) for p in family), REAP_S, "the run's descendants to exit")
    assert code == 1, run.stderr
    assert took < 15, f"the run took {took:.1f} s"
    error = (
        r"\[parse, file data/sample/access-000\.log, chunk lines \d+-\d+\] chunk not parsed within "
        r"parse\.chunk_timeout_s = 1 s \(transforms: tests\.transform_examples:hang\); "
        r"its worker process \(pid \d+\) was killed"
    )
    assert re.search(error, run.stderr), run.stderr
    assert_no_traceback(run.stderr)
    assert manifest(out)["status"] == "failed"


@pytest.mark.slow
def test_worker_that_exits_on_its_own_is_not_blamed_on_the_oom_killer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    exits = '["tests.transform_examples:exit_3"]'
    proc = run_cli(
        "run", "-i", "data/sample/access-000.log", "-o", str(out), "--set", f"run.transforms={exits}",
        "--set", "parse.workers=1", "--set", "run.progress=off", timeout=RUN_DEADLINE_S,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "OOM" not in proc.stderr
    assert re.search(
        r"\[parse, file data/sample/access-000\.log, chunk lines 1-\d+\] a worker process died 3 time\(s\) "
        r"on this chunk \(the last time: worker \d+ exited with code 3 ",
        proc.stderr,
    ), proc.stderr
    assert_no_traceback(proc.stderr)


def test_main_process_killed_leaves_nothing_running(big_input: Path, clean: CleanRun, tmp_path: Path) -> None:
    out = previous_output(clean, tmp_path)
    before = tree_digest(out)
    with Running(tmp_path, "run", "-i", str(big_input), "-o", str(out), *RUN_SETS) as run:
        run.wait_mid_run()
        family = run.descendants()
        run.proc.send_signal(signal.SIGKILL)
        assert run.wait(SIGNAL_DEADLINE_S) == -signal.SIGKILL
        assert tree_digest(out) == before  # nothing was committed
        # within a few seconds nothing of the run may be left running (and holding shared memory)
        deadline = time.monotonic() + 5
        while not all(gone(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = [p.pid for p in family if not gone(p)]
    assert alive == [], f"still running after the main process was killed: {alive}"


def _shm_blocks(pid: int) -> list[Path]:
    return sorted(Path("/dev/shm").glob(f"logpipe-{pid}-*"))


@pytest.mark.slow
def test_next_run_removes_the_shared_memory_of_a_killed_process_group(
    big_input: Path, tmp_path: Path
) -> None:
    # systemd's KillMode=control-group, or a cgroup's OOM kill: every process of the run at once,
    # the resource tracker included, so nobody is left to unlink the slots
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "-i",
        str(big_input),
        "-o",
        str(tmp_path / "out"),
        *RUN_SETS,
    ]
    live = Path("/dev/shm", f"logpipe-{os.getpid()}-0123abcd")  # a live process's: must stay
    foreign = Path("/dev/shm", "logpipe-test-not-ours")  # not a name logpipe makes: must stay
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_until(lambda: proc.poll() is None and len(_shm_blocks(proc.pid)) >= 2, RUN_DEADLINE_S, "slots")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = _shm_blocks(proc.pid)
        assert left, "the killed run's blocks were expected to be left behind"
        live.write_bytes(b"x")
        foreign.write_bytes(b"x")
        small = run_cli(
            "run", "-i", "data/sample/access-000.log", "-o", str(tmp_path / "next"), timeout=RUN_DEADLINE_S
        )
        assert small.returncode == 0, small.stderr
        assert _shm_blocks(proc.pid) == []
        removed = rf"removed {len(left)} shared-memory block\(s\) \(\S+ MiB\) that killed runs \(pid "
        assert re.search(removed + rf"[\d, ]*{proc.pid}", small.stderr), small.stderr
        assert live.exists() and foreign.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for path in (live, foreign, *_shm_blocks(proc.pid)):
            path.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_killed_resource_tracker_costs_one_warning(big_input: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Running(tmp_path, "run", "-i", str(big_input), "-o", str(out), *RUN_SETS) as run:
        run.wait_mid_run()
        trackers = [p for p in run.descendants() if _is_tracker(p)]
        assert trackers
        for p in trackers:
            p.kill()
        assert run.wait(RUN_DEADLINE_S) == 0, run.stderr
    assert "Traceback" not in run.stderr and "KeyError" not in run.stderr, run.stderr
    assert run.stderr.count("resource tracker") + run.stderr.count("resource_tracker") <= 1, run.stderr
    assert manifest(out)["status"] == "ok"


def test_next_run_removes_stale_staging_of_a_killed_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = tmp_path / ".out.staging-20260101T000000-dead00"  # what a SIGKILLed run leaves behind
    (stale / "date=2026-01-01").mkdir(parents=True)
    (stale / "date=2026-01-01" / "part-x.parquet").write_bytes(b"PAR1 half a file")
    proc = run_cli(
        "run", "-i", "data/sample/access-000.log", "-o", str(out), "--quiet", timeout=RUN_DEADLINE_S
    )
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["status"] == "ok"
    assert not staging_dirs(out)


# ----------------------------------------------------------------------------------- c. hostile input

GOOD = b'10.0.0.1 - - [01/Nov/2026:10:00:00 +0000] "GET /good HTTP/1.1" 200 5 "-" "ua"'


def _line(ip: str, stamp: str, path: str, size: str = "5", agent: str = "ua", request: str = "") -> bytes:
    req = request or f"GET {path} HTTP/1.1"
    return f'{ip} - - [{stamp}] "{req}" 200 {size} "-" "{agent}"'.encode()


# Valid but unusual lines: every one must become a row (some values are checked in the output).
ODD_LINES = [
    _line("10.0.0.2", "01/Nov/2026:10:00:00 +0000", "/escaped", agent='agent \\"quoted\\" v1'),
    _line("2001:db8::7", "01/Nov/2026:10:00:00 +0000", "/ipv6-full"),
    _line("::1", "01/Nov/2026:10:00:00 +0000", "/ipv6-loopback"),
    _line("::ffff:10.0.0.3", "01/Nov/2026:10:00:00 +0000", "/ipv6-mapped"),
    _line("10.0.0.4", "01/Nov/2026:10:00:00 -0800", "", request="-"),
    _line("10.0.0.5", "01/Nov/2026:23:59:59 -1200", "/minus-12"),
    _line("10.0.0.6", "01/Nov/2026:00:00:00 +1400", "/plus-14"),
    _line("10.0.0.7", "29/Feb/2024:00:00:00 +0000", "/leap-day"),
    _line("10.0.0.8", "01/Nov/2026:10:00:00 +0000", "/max-int64", size=str(2**63 - 1)),
]
# Lines that must be rejected, with the reason.
BAD_LINES = [
    (_line("10.0.1.1", "30/Feb/2024:00:00:00 +0000", "/feb-30"), "bad timestamp"),
    (_line("10.0.1.2", "29/Feb/2023:00:00:00 +0000", "/feb-29-2023"), "bad timestamp"),
    (_line("10.0.1.3", "31/Apr/2026:00:00:00 +0000", "/apr-31"), "bad timestamp"),
    (_line("10.0.1.4", "01/Nov/2026:00:00:00 +0000", "/2-63", size=str(2**63)), "out-of-range number"),
    (_line("10.0.1.5", "01/Nov/2026:00:00:00 +0000", "/2-64", size=str(2**64)), "out-of-range number"),
]


def _truncated_gzip(lines: int, keep: float) -> tuple[bytes, int]:
    """Varied lines gzipped, cut at ``keep`` of the compressed size; and the complete lines before the cut."""
    rng = random.Random(5)
    text = b"".join(
        _line(
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.1",
            "01/Nov/2026:10:00:00 +0000",
            f"/p{rng.random()}",
        )
        + b"\n"
        for _ in range(lines)
    )
    data = gzip.compress(text)
    cut = data[: int(len(data) * keep)]
    prefix = zlib.decompressobj(wbits=31).decompress(cut)  # what can be decompressed before the cut
    return cut, prefix.count(b"\n")


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A directory of hostile files, and what the manifest must say about each (None: not checked)."""
    src = tmp_path / "hostile"
    (src / "nested" / "empty-dir").mkdir(parents=True)
    expect: dict[str, dict[str, Any]] = {}

    def put(name: str, data: bytes, rows: int | None, reasons: set[str], error: bool = False) -> None:
        (src / name).write_bytes(data)
        expect[name] = {"rows": rows, "reasons": reasons, "error": error}

    cut, complete = _truncated_gzip(20_000, 0.5)
    assert complete > 3 * 65536 // 80  # several 64 KiB chunks (lines of ~80 bytes) before the cut
    put("truncated.log.gz", cut, None, {"truncated input"}, error=True)
    not_utf8 = [GOOD, GOOD.replace(b"/good", b"/\xff\xfe"), b"\xc3\x28 broken"]
    put("not-utf8.log", b"\n".join(not_utf8) + b"\n", 1, {"invalid UTF-8"})
    put("nul.log", GOOD + b"\n" + GOOD.replace(b"/good", b"/nul\x00") + b"\n\x00\x00\x00\n", 1, {"NUL byte"})
    put("crlf.log", (GOOD + b"\r\n") * 3, 3, set())
    put("no-final-newline.log", GOOD + b"\n" + GOOD, 2, set())
    put("empty.log", b"", 0, set())
    put("long-line.log", GOOD + b"\n" + b"x" * (3 << 20) + b"\n" + GOOD + b"\n", 2, {"line too long"})
    binary = random.Random(1).randbytes(200_000)
    put("binary.bin", binary, None, set())
    put("odd.log", b"\n".join(ODD_LINES) + b"\n", len(ODD_LINES), set())
    put("bad.log", b"\n".join(line for line, _ in BAD_LINES) + b"\n", 0, {r for _, r in BAD_LINES})
    put("nested/inner.log", GOOD + b"\n", 1, set())
    (src / "dangling.log").symlink_to(src / "no-such-target")
    expect["dangling.log"] = {"rows": 0, "reasons": set(), "error": True}
    if os.geteuid() != 0:  # root reads a chmod-000 file anyway
        put("unreadable.log", GOOD + b"\n", 0, set(), error=True)
        (src / "unreadable.log").chmod(0)
    return src, expect


def test_hostile_inputs_are_rejected_never_crash(
    tmp_path: Path, hostile: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    src, expect = hostile
    out = tmp_path / "out"
    # bad.log and binary.bin hold nothing but hostile lines: judged alone, each would stop the run as
    # a file of another format (tests/test_cli.py); here every line must come through as a reject
    sets = ("--set", "read.max_line_bytes=65536", "--set", "run.max_reject_ratio=1")
    proc = run_cli("run", "-i", str(src), "-o", str(out), *RUN_SETS, *sets, timeout=RUN_DEADLINE_S)
    assert proc.returncode == 3, proc.stderr  # committed, but some inputs broke
    assert_no_traceback(proc.stderr)
    m = manifest(out)
    assert m["status"] == "ok" and m["committed"]
    assert m["rows"] + m["rejected"] == m["lines"]
    inputs = {str(Path(i["path"]).relative_to(src)): i for i in m["inputs"]}
    assert set(inputs) == set(expect)  # every file, recursively; the directories are walked, not read
    assert {str(Path(p).relative_to(src)) for p in m["failed_inputs"]} == {
        n for n, e in expect.items() if e["error"]
    }
    rejects = ds.dataset(rejects_dir(out), format="parquet").to_table().to_pylist()
    for name, e in expect.items():
        got = inputs[name]
        assert got["rows"] + got["rejected"] == got["lines"], (name, got)
        assert (got["error"] is not None) == e["error"], (name, got)
        if e["rows"] is not None:
            assert got["rows"] == e["rows"], (name, got)
        reasons = {r["reason"] for r in rejects if r["file"] == str(src / name)}
        assert reasons == e["reasons"] or (e["rows"] is None and e["reasons"] <= reasons), (name, reasons)
    binary = inputs["binary.bin"]
    raw = (src / "binary.bin").read_bytes()
    assert binary["lines"] == raw.count(b"\n") + (not raw.endswith(b"\n"))
    assert binary["rejected"] == binary["lines"]
    assert inputs["truncated.log.gz"]["rows"] > 0  # the lines before the break are kept
    long_reject = next(r for r in rejects if r["reason"] == "line too long")
    assert long_reject["raw_bytes"] == 3 << 20 and len(long_reject["raw"]) <= 4096
    # the odd-but-valid lines came through with the right values
    table = read_output(out)
    rows = {r["path"]: r for r in table.to_pylist() if r["path"] and r["path"] != "/good"}
    assert rows["/escaped"]["user_agent"] == 'agent \\"quoted\\" v1'
    assert rows["/ipv6-full"]["ip"] == "2001:db8::7" and rows["/ipv6-mapped"]["ip"] == "::ffff:10.0.0.3"
    assert str(rows["/minus-12"]["ts"]) == "2026-11-02 11:59:59+00:00"
    assert rows["/minus-12"]["date"] == "2026-11-02"
    assert str(rows["/plus-14"]["ts"]) == "2026-10-31 10:00:00+00:00"
    assert rows["/max-int64"]["bytes"] == 2**63 - 1
    dash = [r for r in table.to_pylist() if r["ip"] == "10.0.0.4"]
    assert len(dash) == 1 and dash[0]["method"] is None and dash[0]["path"] is None


def test_truncated_gzip_keeps_every_complete_line(tmp_path: Path) -> None:
    data, complete = _truncated_gzip(5_000, 0.6)
    src = tmp_path / "in"
    src.mkdir()
    (src / "cut.log.gz").write_bytes(data)
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "parse.workers=1", timeout=RUN_DEADLINE_S)
    assert proc.returncode == 3, proc.stderr
    m = manifest(out)
    assert m["inputs"][0]["error"]
    # every complete line before the break, plus the torn last one as "truncated input"
    assert m["rows"] == complete, m["inputs"]
    assert m["reject_reasons"] == {"truncated input": 1}


def test_fifo_input_neither_hangs_nor_ignores_sigterm(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    good = tmp_path / "good.log"
    good.write_bytes(GOOD + b"\n")
    out = tmp_path / "out"
    with Running(
        tmp_path, "run", "-i", str(fifo), "-i", str(good), "-o", str(out), "--set", "run.progress=off"
    ) as run:
        try:
            code: int | None = run.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(timeout=4)
            except subprocess.TimeoutExpired:
                pytest.fail("hung on a FIFO input, and SIGTERM did not stop it")
            pytest.fail("hung on a FIFO input (SIGTERM stopped it)")
    assert code == 3, run.stderr  # the FIFO is a failed input, the regular file is read
    assert manifest(out)["failed_inputs"] == [str(fifo)]


# ------------------------------------------------------------------------- d. untrusted text on screen

ANSI = b"\x1b[2J\x1b]0;pwned\x07"


def test_escape_sequences_in_rejected_lines_are_not_printed_raw(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    lines = [
        ANSI + b" not a log line",
        GOOD.replace(b"/good", b"/" + ANSI),
        GOOD.replace(b'"ua"', b'"' + ANSI + b'"'),
    ]
    (src / "ansi.log").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "parse.workers=1", timeout=RUN_DEADLINE_S)
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["rejected"] >= 1
    for stream in (proc.stdout, proc.stderr):
        assert "\x1b" not in stream and "\x07" not in stream, stream
    assert "\\x1b[2J\\x1b]0;pwned\\x07 not a log line" in proc.stdout  # shown, escaped, in the preview


def test_escape_sequences_in_file_names_are_not_printed_raw(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "ok.log").write_bytes(GOOD + b"\n")
    (src / os.fsdecode(b"evil" + ANSI + b".log")).symlink_to(src / "missing")  # cannot be opened
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "parse.workers=1", timeout=RUN_DEADLINE_S)
    assert proc.returncode == 3, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout, proc.stdout
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------------- e. unwritable output


def _blocked_output(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """An output that cannot be created, and the path the error message must name."""
    if kind == "parent-is-a-file":
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a regular file where the output's parent should be\n")
        return blocker / "out", blocker
    if kind == "read-only-parent":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only (chmod 555) directory anyway")
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o555)
        return parent / "out", parent
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["parent-is-a-file", "read-only-parent"])
def test_unwritable_output_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    out, named = _blocked_output(tmp_path, kind)
    proc = run_cli(
        "run", "-i", "data/sample/access-000.log", "-o", str(out), "--set", "parse.workers=1",
        timeout=RUN_DEADLINE_S,
    )  # fmt: skip
    try:
        assert proc.returncode == 1, proc.stderr
        assert_no_traceback(proc.stderr)
        assert "run failed" in proc.stderr and str(named) in proc.stderr, proc.stderr
        assert "nothing committed" in proc.stdout
        assert not out.exists()
    finally:
        if named.is_dir():
            named.chmod(0o755)  # so that pytest can remove tmp_path


def test_output_that_is_a_regular_file_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("someone's file\n")
    proc = run_cli(
        "run", "-i", "data/sample/access-000.log", "-o", str(out), "--set", "parse.workers=1",
        timeout=RUN_DEADLINE_S,
    )  # fmt: skip
    assert proc.returncode in (1, 2), proc.stderr
    assert_no_traceback(proc.stderr)
    assert out.is_file() and out.read_text() == "someone's file\n"
    assert not staging_dirs(out)
    assert str(out) in proc.stderr


# --------------------------------------------------------------------------------- overlapping runs


@pytest.mark.slow
def test_second_run_on_a_locked_output_exits_4(big_input: Path, clean: CleanRun, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    with Running(first_dir, "run", "-i", str(big_input), "-o", str(out), *RUN_SETS) as first:
        first.wait_mid_run()
        second = run_cli("run", "-i", "data/sample/access-000.log", "-o", str(out), "--quiet", timeout=30)
        assert first.proc.poll() is None, "the first run ended before the second started"
        assert second.returncode == 4, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        assert_no_traceback(second.stderr)
        assert first.wait(RUN_DEADLINE_S) == 0, first.stderr
    m = manifest(out)  # the first run's manifest: the refused one wrote none
    assert m["status"] == "ok" and m["rows"] == clean.manifest["rows"]
    assert not staging_dirs(out)
    assert not (out.parent / f".{out.name}.lock").exists()
