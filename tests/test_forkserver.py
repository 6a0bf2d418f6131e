"""The early fork-server start: which command lines it starts for, and that a wrong guess is harmless."""

from __future__ import annotations

from multiprocessing import forkserver
from pathlib import Path

import pytest

from pipeline.executors.forkserver import KERNELS, context, wants_fork_server
from tests.conftest import SAMPLE, manifest, read_output, run_cli


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run"], True),
        (["run", "--config", "configs/laptop.toml", "-o", "x"], True),
        (["run", "-c", "configs/server.toml", "--set", "parse.workers=3"], True),
        (["run", "--config=configs/cron.toml"], True),
        (["run", "--set", "parse.executor=inline"], False),
        (["run", "--set=parse.start_method='spawn'"], False),
        (["run", "--set", "parse.executor=inline", "--set", "parse.executor=process"], True),
        (["run", "--help"], False),
        (["run", "--config", "no/such.toml"], False),
        (["validate-config", "configs/laptop.toml"], False),
        (["sample"], False),
        ([], False),
    ],
)
def test_wants_fork_server(argv: list[str], expected: bool) -> None:
    assert wants_fork_server(argv) is expected


def test_config_file_decides(tmp_path: Path) -> None:
    inline = tmp_path / "inline.toml"
    inline.write_text('[parse]\nexecutor = "inline"\n')
    assert not wants_fork_server(["run", "-c", str(inline)])
    assert wants_fork_server(["run", "-c", str(inline), "--set", "parse.executor=process"])
    broken = tmp_path / "broken.toml"
    broken.write_text("parse = 3\n[[[")
    assert not wants_fork_server(["run", "-c", str(broken)])


def test_spawn_config_runs_without_the_early_server(tmp_path: Path) -> None:
    cfg = tmp_path / "spawn.toml"
    cfg.write_text(f'[run]\ninputs = ["{SAMPLE}"]\n[parse]\nworkers = 1\nstart_method = "spawn"\n')
    out = tmp_path / "out"
    proc = run_cli("run", "-c", str(cfg), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["config"]["parse"]["start_method"] == "spawn"


@pytest.mark.parametrize("compiled", [False, True])
def test_the_fork_server_loads_the_compiled_loops_before_its_warm_up_when_asked(compiled: bool) -> None:
    """The loops must be imported before the warm-up, whose first parse then loads their machine code."""

    try:
        assert context("forkserver", compiled).get_start_method() == "forkserver"
        preload = forkserver._forkserver._preload_modules  # type: ignore[attr-defined]
    finally:
        context("forkserver")  # this process's later pools: the default preload
    assert (KERNELS in preload) is compiled
    if compiled:
        assert preload.index(KERNELS) < preload.index("pipeline.executors.warmup")


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_a_run_with_the_compiled_loops_writes_what_a_run_without_them_writes(
    tmp_path: Path, executor: str
) -> None:
    tables = []
    for setting in ("on", "off"):
        out = tmp_path / setting
        proc = run_cli(
            "run", "-i", str(SAMPLE), "-o", str(out), "-q", "--set", f"parse.compiled={setting}",
            "--set", f"parse.executor={executor}", "--set", "parse.workers=2",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert manifest(out)["config"]["parse"]["compiled"] == setting
        tables.append(
            read_output(out).drop_columns(["request"]).sort_by([("ts", "ascending"), ("path", "ascending")])
        )
    assert tables[0].num_rows > 0
    assert tables[0].equals(tables[1])
