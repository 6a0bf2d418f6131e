"""The generative format checks of tests/fuzz_formats.py, each batch in a child process: a crash in native
code (a segfault, an abort) fails the test with the child's output instead of killing pytest."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.fuzz_formats import PROPERTIES


def fuzz(*args: str, timeout: float) -> str:
    """Run tests.fuzz_formats with ``args`` in a child; its log, or a failure with its output."""
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-m", "tests.fuzz_formats", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        pytest.fail(f"tests.fuzz_formats {' '.join(args)}: {how}\n{proc.stderr[-8000:]}", pytrace=False)
    return proc.stderr


@pytest.mark.timeout(120)
def test_formats_and_junk_lines_agree_with_the_reference() -> None:
    """A few examples of every property (derandomized: the same ones every run)."""
    log = fuzz("--examples", "20", timeout=110)
    for name in PROPERTIES:
        assert f"property {name}: 20 examples passed" in log


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_formats_and_junk_lines_agree_with_the_reference_at_length(name: str) -> None:
    seed = random.randrange(1 << 30)
    fuzz("--only", name, "--examples", "1500", "--seed", str(seed), timeout=1700)
