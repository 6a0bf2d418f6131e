"""The early fork-server start: which command lines it starts for, and that a wrong guess is harmless."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.executors.forkserver import wants_fork_server
from tests.conftest import SAMPLE, manifest, run_cli


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
