"""Memory stays within the documented formula whatever the lines: blank lines, one-byte lines, CRLF-only
lines, a flood of newlines after good lines in a .gz. Each case runs the real CLI and samples the whole
process tree (main process, fork server, workers, resource tracker); every line must still be a row or
a reject with its reason."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.errors import ExitCode
from tests.conftest import MB, ROOT, documented_memory_bound, manifest, rejects_dir, run_cli_peak

log = logging.getLogger(__name__)

GOOD = 2000  # good lines before a flood


def good_lines(n: int) -> bytes:
    return b"".join(
        b'10.0.%d.%d - - [01/Nov/2026:10:%02d:%02d +0000] "GET /p/%d HTTP/1.1" 200 %d "-" "curl/8.0"\n'
        % (i // 250 % 250, i % 250, i // 60 % 60, i % 60, i, i)
        for i in range(n)
    )


def write_plain(body: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "in.log"
        path.write_bytes(body)
        return path

    return make


def write_flood(newlines: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "in.log.gz"
        with gzip.open(path, "wb", compresslevel=1) as out:
            out.write(good_lines(GOOD))
            step = 1 << 20
            for done in range(0, newlines, step):
                out.write(b"\n" * min(step, newlines - done))
        return path

    return make


# name: (the input, lines, rows, rejects by reason, the first rejected line)
def shapes(n: int) -> dict[str, tuple[Callable[[Path], Path], int, int, dict[str, int], int]]:
    return {
        "empty": (write_plain(b"\n" * n), n, 0, {"empty line": n}, 1),
        "one-byte": (write_plain(b"x\n" * n), n, 0, {"no match": n}, 1),
        "crlf-only": (write_plain(b"\r\n" * n), n, 0, {"empty line": n}, 1),
        "gz-flood": (write_flood(n), GOOD + n, GOOD, {"empty line": n}, GOOD + 1),
    }


def check_run(tmp_path: Path, config: str, shape: str, n: int, extra: tuple[str, ...] = ()) -> None:
    make, lines, rows, reasons, first_reject = shapes(n)[shape]
    path = make(tmp_path)
    out = tmp_path / "out"
    cfg = ROOT / "configs" / config
    sets = ["run.max_reject_ratio=1", "run.progress=off", *extra]
    args = ["run", "-c", str(cfg), "-i", str(path), "-o", str(out)]
    for item in sets:
        args += ["--set", item]
    proc, tree = run_cli_peak(*args, timeout=300)
    bound = documented_memory_bound(cfg, sets)
    log.info(
        "%s %s %s lines: peak %.0f MB (bound %.0f MB) %s",
        config,
        shape,
        n,
        tree.peak / MB,
        bound / MB,
        tree.peak_procs,
    )
    assert proc.returncode == ExitCode.OK, proc.stderr[-2000:]
    assert tree.peak < bound, (
        f"peak {tree.peak / MB:.0f} MB over the documented {bound / MB:.0f} MB: {tree.peak_procs}"
    )
    m = manifest(out)
    assert (m["lines"], m["rows"], m["rejected"]) == (lines, rows, lines - rows)
    assert m["reject_reasons"] == reasons
    rejects = ds.dataset(rejects_dir(out), format="parquet").to_table(columns=["line", "reason", "raw_bytes"])
    assert rejects.num_rows == lines - rows
    got = rejects.sort_by("line")
    assert got.column("line").to_pylist() == list(range(first_reject, lines + 1))
    assert sorted(set(got.column("reason").to_pylist())) == sorted(reasons)
    assert set(got.column("raw_bytes").to_pylist()) == {1 if shape == "one-byte" else 0}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("shape", "n"), [("empty", 2_000_000), ("gz-flood", 2_000_000)])
def test_memory_bounded_laptop(tmp_path: Path, shape: str, n: int) -> None:
    # 2M blank lines: one chunk of laptop.toml's 1.5 MiB could hold 1.5M of them (CRLF-only and one-byte
    # lines are in the slow set)
    check_run(tmp_path, "laptop.toml", shape, n)


@pytest.mark.timeout(300)
def test_flood_stopped_by_the_reject_guard_within_bounds(tmp_path: Path) -> None:
    path = write_flood(2_000_000)(tmp_path)
    cfg = ROOT / "configs" / "laptop.toml"
    args = ["run", "-c", str(cfg), "-i", str(path), "-o", str(tmp_path / "out"), "--set", "run.progress=off"]
    proc, tree = run_cli_peak(*args, timeout=300)
    assert proc.returncode == ExitCode.FORMAT_MISMATCH, proc.stderr[-2000:]
    assert "empty line" in proc.stderr
    assert tree.peak < documented_memory_bound(cfg), tree.peak_procs


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("shape", ["empty", "one-byte", "crlf-only", "gz-flood"])
@pytest.mark.parametrize(
    ("config", "extra"),
    [
        ("laptop.toml", ()),
        ("cron.toml", ()),
        ("server.toml", ()),
        ("server.toml", ("parse.workers=1",)),
    ],
)
def test_memory_bounded_every_config(tmp_path: Path, config: str, extra: tuple[str, ...], shape: str) -> None:
    # 10M lines: a whole 8 MiB chunk of server.toml's could hold 8M of them; one-byte lines go through
    # the regex (a few us each), so fewer
    check_run(tmp_path, config, shape, 2_000_000 if shape == "one-byte" else 10_000_000, extra)
