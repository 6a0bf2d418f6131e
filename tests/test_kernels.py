"""The engine's compiled loops (pipeline/formats/kernels.py, pipeline/formats/compiled.py): they run
bounds-checked here, give what the numpy engine gives, and only load where a warm-up asks for them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bench.cli import FORMAT_SETTINGS
from pipeline.formats import compiled, engine, kernels
from pipeline.formats.spec import builtin, plan_for
from tests.conftest import ROOT, batch_rows, generated, reject_list


def test_the_tests_run_the_loops_with_bounds_checks() -> None:
    """A chunk without its final newline sends the line-end search past the array: with Numba's bounds
    checks on (tests/conftest.py) that is an IndexError, not a read of whatever memory follows."""
    t = compiled.split_tables(builtin("combined"))
    a = np.frombuffer(b"no newline at the end", dtype=np.uint8)
    out = [
        np.zeros((len(t.width), 2, 1), np.int64),
        np.zeros(1, np.int8),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
    ]
    with pytest.raises(IndexError):
        kernels.split_lines(
            a,
            100,
            False,
            t.quick,
            t.lits,
            t.lit_lo,
            t.lit_hi,
            t.width,
            t.to_end,
            t.listy,
            t.seek,
            t.classes,
            *out,
        )


def test_split_refuses_a_chunk_that_does_not_end_a_line() -> None:
    with pytest.raises(ValueError, match="complete lines"):
        compiled.split(builtin("combined"), np.frombuffer(b"a\nb", dtype=np.uint8), 100)


@pytest.mark.parametrize("fmt", ["combined", "upstream", "json"])
def test_scan_gives_the_same_rows_with_and_without_the_loops(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The yardstick's lines (its malformed ones among them), CRLF ends, junk and an over-long line."""
    plan = plan_for(tomllib.loads("f = " + FORMAT_SETTINGS[fmt])["f"])
    data = generated(tmp_path, fmt) + b"\r\n".join([b"", b"junk line", b"\x00\x01", b"x" * 300, b""]) + b"\n"
    with_loops = engine.scan(plan, data, 1, 2000, 64)
    monkeypatch.setattr(compiled, "loaded", lambda: False)
    without = engine.scan(plan, data, 1, 2000, 64)
    assert compiled.KERNELS in sys.modules
    assert batch_rows(with_loops.build(None)) == batch_rows(without.build(None))
    assert reject_list(with_loops.rejects) == reject_list(without.rejects)


def test_importing_the_engine_does_not_import_numba() -> None:
    """A small run's processes never pay for Numba: only a warm-up imports the loops."""
    code = "import sys, pipeline.formats, pipeline.stages.parse; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
