"""What a run may touch: outputs that are not logpipe's are refused before anything is created, and
only names with a run id in them are ever removed (real CLI runs in subprocesses)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.errors import ExitCode, PathConflict, Refused
from pipeline.output.layout import Layout
from pipeline.output.lock import OutputLock
from pipeline.output.safety import check_paths, foreign_entries, input_base
from tests.conftest import SAMPLE, committed_manifest, read_output, run_cli, tree

LOG = str(SAMPLE / "access-000.log")
RUN = "20261201T000000-abcdef"


def test_a_folder_of_the_users_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    docs = tmp_path / "mydocs"
    (docs / "sub").mkdir(parents=True)
    (docs / "thesis.txt").write_text("three years of work")
    (docs / "sub" / "notes.md").write_text("x")
    before = tree(tmp_path)
    proc = run_cli("run", "-i", LOG, "-o", str(docs))
    assert proc.returncode == ExitCode.REFUSED, proc.stderr
    assert "holds files logpipe did not write (sub, thesis.txt)" in proc.stderr
    assert "Traceback" not in proc.stderr and "run record" not in proc.stdout  # none was written
    assert tree(tmp_path) == before  # nothing created beside it either: no record, no lock file


def test_an_output_holding_a_run_record_inside_it_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "date=2026-11-01").mkdir(parents=True)
    (out / "date=2026-11-01" / f"part-{RUN}-w0-00000.parquet").write_bytes(b"PAR1 data")
    (out / "_rejects").mkdir()
    (out / "_rejects" / f"part-{RUN}-w0.parquet").write_bytes(b"PAR1 rejects")
    (out / "_manifest.json").write_text("{}")
    (out / "_state.json").write_text('{"version": 1, "files": {}}')
    before = tree(tmp_path)
    for extra in ((), ("--set", "run.incremental=true")):
        proc = run_cli("run", "-i", LOG, "-o", str(out), *extra)
        assert proc.returncode == ExitCode.REFUSED, proc.stderr
        assert (
            f"the output {out} holds files logpipe did not write (_manifest.json, _rejects, _state.json)"
            in proc.stderr
        )
        assert "Traceback" not in proc.stderr
        assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "case",
    [
        "output-holds-input",
        "config-folder",
        "dot",
        *(
            pytest.param(c, marks=pytest.mark.slow)
            for c in ("input-is-output", "dotdot", "root", "input-file")
        ),
    ],
)
def test_outputs_that_hold_what_logpipe_must_not_replace_are_refused(tmp_path: Path, case: str) -> None:
    proj = tmp_path / "proj"
    (proj / "logs").mkdir(parents=True)
    shutil.copy(LOG, proj / "logs" / "access.log")
    (proj / "src").mkdir()
    (proj / "src" / "main.py").write_text("print('mine')\n")
    args: tuple[str, ...]
    cwd = tmp_path
    if case == "input-is-output":
        args = ("-i", "proj/logs", "-o", "proj/logs")
    elif case == "output-holds-input":
        args = ("-i", "proj/logs/*.log", "-o", "proj")
    elif case == "config-folder":
        (proj / "logpipe.toml").write_text('[run]\ninputs = ["logs"]\noutput = "."\n')
        args = ("-c", str(proj / "logpipe.toml"))
    elif case == "dot":
        cwd = proj / "src"
        args = ("-i", "../logs", "-o", ".")
    elif case == "dotdot":
        cwd = proj / "src"
        args = ("-i", "../logs", "-o", "..")
    elif case == "root":
        args = ("-i", "proj/logs", "-o", "/")
    else:
        args = ("-i", "proj/logs/access.log", "-o", "proj/logs/access.log")
    before = tree(tmp_path)
    proc = run_cli("run", *args, cwd=cwd)
    assert proc.returncode == ExitCode.REFUSED, proc.stderr
    assert "Traceback" not in proc.stderr and "the output" in proc.stderr
    assert tree(tmp_path) == before


def test_an_empty_output_setting_is_a_config_error(tmp_path: Path) -> None:
    proc = run_cli("run", "-i", LOG, "--set", "run.output=", cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE and "run.output" in proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_the_default_output_leaves_the_shipped_configs_outputs_alone(tmp_path: Path) -> None:
    laptop = tmp_path / "out" / "laptop"
    assert run_cli("run", "-i", LOG, "-o", str(laptop), "-q").returncode == 0
    before = tree(tmp_path / "out")
    proc = run_cli("run", "-i", LOG, "-q", cwd=tmp_path)  # no config, no --output
    assert proc.returncode == 0, proc.stderr
    assert read_output(tmp_path / "out" / "default").num_rows > 0
    assert {k: v for k, v in tree(tmp_path / "out").items() if k.startswith("laptop")} == before


@pytest.mark.parametrize(
    "where",
    [
        "meta-inside-output",
        *(pytest.param(w, marks=pytest.mark.slow) for w in ("meta-is-output", "report-inside")),
    ],
)
def test_paths_that_collide_are_config_errors_and_touch_nothing(tmp_path: Path, where: str) -> None:
    out = tmp_path / "out"
    assert run_cli("run", "-i", LOG, "-o", str(out), "-q").returncode == 0
    before = tree(tmp_path)
    extra = {
        "meta-is-output": ("--set", f"run.meta_dir={out}"),
        "meta-inside-output": ("--set", f"run.meta_dir={out}/meta"),
        "report-inside": ("--report", str(out / "r.html")),
    }[where]
    proc = run_cli("run", "-i", LOG, "-o", str(out), *extra)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert tree(tmp_path) == before


def test_two_outputs_cannot_share_one_record(tmp_path: Path) -> None:
    meta = f"run.meta_dir={tmp_path / 'shared.meta'}"
    assert run_cli("run", "-i", LOG, "-o", str(tmp_path / "out1"), "--set", meta, "-q").returncode == 0
    before = tree(tmp_path)
    proc = run_cli("run", "-i", LOG, "-o", str(tmp_path / "out2"), "--set", meta)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "holds the record of another output" in proc.stderr
    assert tree(tmp_path) == before


def test_a_symlinked_output_is_written_behind_the_link(tmp_path: Path) -> None:
    target = tmp_path / "disk" / "dataset"
    target.mkdir(parents=True)
    link = tmp_path / "out"
    link.symlink_to(target)
    for _ in range(2):
        proc = run_cli("run", "-i", LOG, "-o", str(link))
        assert proc.returncode == 0, proc.stderr
        assert "left behind" not in proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert read_output(link).num_rows == read_output(target).num_rows > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "out"]  # nothing beside the link
    assert sorted(p.name for p in target.parent.iterdir()) == ["dataset", "dataset.meta"]


def test_an_output_inside_an_input_folder_is_skipped_by_the_walk(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(LOG, logs / "access.log")
    for _ in range(2):
        proc = run_cli("run", "-i", str(logs), "-o", str(logs / "parquet"))
        assert proc.returncode == 0, proc.stderr
    m = committed_manifest(logs / "parquet")
    assert [Path(i["path"]).name for i in m["inputs"]] == ["access.log"]
    assert "skipped" in proc.stderr and "files of the output" in proc.stderr


def test_recovery_removes_only_what_a_run_of_this_output_left(tmp_path: Path) -> None:
    """Another output's work folder (``out?`` is a glob that matches ``outA``), names without a run
    id, and the user's own hidden folders are never removed."""
    keep = [
        tmp_path / f".outA.staging-{RUN}",  # a run on outA, working
        tmp_path / ".out?.staging-mine",  # no run id
        tmp_path / ".out?.staging-backup",
    ]
    for p in keep:
        p.mkdir()
        (p / "f").write_text("x")
    left = tmp_path / f".out?.staging-{RUN}"  # left by a killed run of this output
    left.mkdir()
    proc = run_cli("run", "-i", LOG, "-o", str(tmp_path / "out?"))
    assert proc.returncode == 0, proc.stderr
    assert all((p / "f").exists() for p in keep) and not left.exists()


def test_check_paths_unit(tmp_path: Path) -> None:
    lay = Layout.of(tmp_path / "out")
    check_paths(lay, [str(tmp_path / "logs" / "*.log")], [tmp_path / "etc"], str(tmp_path / "r.html"))
    with pytest.raises(Refused, match="holds the input"):
        check_paths(lay, [str(tmp_path / "out" / "**" / "*.log")], [], "")
    with pytest.raises(PathConflict):
        check_paths(Layout.of(tmp_path / "out", tmp_path / "out" / "m"), [], [], "")
    assert input_base("s3://bucket/x/*.gz") is None
    assert input_base(str(tmp_path / "a" / "b*" / "c")) == tmp_path / "a"


def test_foreign_entries_accept_only_the_datasets_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    part = out / "date=2026-11-01"
    part.mkdir(parents=True)
    (part / f"part-{RUN}-w0-00000.parquet").write_bytes(b"")
    assert foreign_entries(out) == []
    (part / "part-00000-1b2c.snappy.parquet").write_bytes(b"")  # another tool's file
    (out / ".DS_Store").write_bytes(b"")
    assert foreign_entries(out) == [".DS_Store", "date=2026-11-01/part-00000-1b2c.snappy.parquet"]
    assert foreign_entries(tmp_path / "nothing") == []


def test_two_runs_sharing_a_record_folder_exclude_each_other(tmp_path: Path) -> None:
    meta = tmp_path / "shared.meta"
    with OutputLock(Layout.of(tmp_path / "out1", meta).meta, RUN):  # a run of out1, working
        proc = run_cli("run", "-i", LOG, "-o", str(tmp_path / "out2"), "--set", f"run.meta_dir={meta}")
    assert proc.returncode == ExitCode.LOCKED, proc.stderr
    assert not (tmp_path / "out2").exists()


def test_a_record_folder_holding_someone_elses_current_is_refused(tmp_path: Path) -> None:
    meta = tmp_path / "notes"
    (meta / "current").mkdir(parents=True)
    (meta / "current" / "todo.txt").write_text("mine")
    before = tree(tmp_path)
    proc = run_cli("run", "-i", LOG, "-o", str(tmp_path / "out"), "--set", f"run.meta_dir={meta}")
    assert proc.returncode == ExitCode.REFUSED, proc.stderr
    assert "is not a logpipe record" in proc.stderr and tree(tmp_path) == before
