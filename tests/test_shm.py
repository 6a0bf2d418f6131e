"""``logpipe run`` in a container-sized /dev/shm: a tmpfs of a few MB mounted in a mount namespace.

Docker and Kubernetes give containers a small /dev/shm by default. Slots sized without looking at it,
their pages allocated on first write, would hang a run (a worker dying of SIGBUS, a pool that cannot
be restarted) or kill it with SIGBUS. The slots must fit in what is free (or the chunks go through
pipes, with one warning), and a pool that cannot be made is a clear error. These tests need
``unshare -m`` and ``mount`` (root, here); elsewhere they skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CLI_TIMEOUT_S, ROOT, read_output, run_cli


@functools.cache
def _small_shm_allowed() -> bool:
    """Whether this process may mount a tmpfs of its own on /dev/shm in a new mount namespace."""
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1M tmpfs /dev/shm"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.fixture
def small_shm() -> None:
    if not _small_shm_allowed():
        pytest.skip("needs `unshare -m` and mount (root or a user namespace allowing it)")


def run_with_shm(size: str, *args: str, fill: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``logpipe`` like :func:`tests.conftest.run_cli`, with a /dev/shm of ``size`` of its own
    (``fill``: already full). The mount is private to the namespace: the host's /dev/shm is untouched."""
    setup = f"mount -t tmpfs -o size={size} tmpfs /dev/shm"
    if fill:  # dd stops at ENOSPC, which is the point
        setup += " && { dd if=/dev/zero of=/dev/shm/fill bs=4096 2>/dev/null; true; }"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", setup + ' && exec "$0" "$@"', sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,  # TimeoutExpired: the hang this file is about
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain log of a few chunks of server.toml's size: the slots in flight then write more than
    a small /dev/shm holds (the committed sample is a few small chunks, which never did)."""
    folder = tmp_path_factory.mktemp("big")
    sample = (ROOT / "data" / "sample" / "access-000.log").read_bytes()
    (folder / "access.log").write_bytes(sample * 80)
    return folder


def _run_args(config: str, inputs: Path, out: Path, *sets: str) -> list[str]:
    args = ["run", "-c", f"configs/{config}.toml", "-i", str(inputs), "-o", str(out)]
    for item in ("run.progress=off", *sets):
        args += ["--set", item]
    return args


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("config", "size", "sets", "big", "expected"),
    [
        # slots of 2.5 x (chunk_bytes + max_line_bytes) each: none fit in half of these. Slots taken
        # regardless would hang (laptop: workers dying of SIGBUS) or die of SIGBUS (server: the main
        # process writing a chunk into its slot).
        ("laptop", "8M", (), True, "too little for"),
        ("server", "16M", (), True, "too little for"),
        # small chunks (several per file): 3 of the 4 slots fit, the 4th chunk in flight uses the pipe
        ("laptop", "20M", ("read.chunk_bytes=65536", "parse.workers=2"), False, "room for 3 of 4"),
    ],
    ids=["laptop-8M", "server-16M", "laptop-20M-some-slots"],
)
@pytest.mark.usefixtures("small_shm")
@pytest.mark.slow
def test_small_shm_falls_back_to_pipes_with_one_warning(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    config: str,
    size: str,
    sets: tuple[str, ...],
    big: bool,
    expected: str,
) -> None:
    inputs: Path = request.getfixturevalue("big_input") if big else ROOT / "data" / "sample"
    ref = run_cli(*_run_args(config, inputs, tmp_path / "ref", *sets))
    assert ref.returncode == 0, ref.stderr
    proc = run_with_shm(size, *_run_args(config, inputs, tmp_path / "out", *sets))
    assert proc.returncode not in (135, -signal.SIGBUS), "died of SIGBUS"
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "shared-memory slots" in line]
    assert len(warnings) == 1, proc.stderr
    assert "WARNING" in warnings[0] and expected in warnings[0] and "through pipes" in warnings[0]
    assert "--shm-size" in warnings[0] and "read.chunk_bytes" in warnings[0]
    assert "Traceback" not in proc.stderr
    assert read_output(tmp_path / "out").equals(read_output(tmp_path / "ref"))


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("small_shm")
def test_full_shm_is_a_clear_error(tmp_path: Path) -> None:
    # not even the pool's semaphores fit: exit 1 with the cause and what to do, no traceback, no hang
    proc = run_with_shm("1M", *_run_args("laptop", ROOT / "data" / "sample", tmp_path / "out"), fill=True)
    assert proc.returncode == 1, proc.stderr
    assert "cannot start the worker pool" in proc.stderr
    assert "No space left on device" in proc.stderr and "--shm-size" in proc.stderr
    assert "Traceback" not in proc.stderr and "leaked shared_memory" not in proc.stderr
