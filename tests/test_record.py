"""The run's record: the commit that publishes dataset and record together, crash recovery, the reject
guard, and what readers of the dataset see."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pytest

from pipeline.errors import FormatMismatch, PipelineError
from pipeline.output.dataset import Contents, DataFile, dir_id
from pipeline.output.layout import Layout
from pipeline.output.record import Committer, RejectGuard
from tests.conftest import ROOT, committed_manifest, layout, manifest, read_output, run_cli

RUN1, RUN2, RUN3 = (f"20261201T000000-00000{n}" for n in (1, 2, 3))
NOTHING = Contents({})  # the staged datasets below hold no data file, only data.txt


def stage(layout: Layout, run_id: str) -> Committer:
    """A committer whose staged dataset holds one file naming ``run_id``."""
    c = Committer(layout, run_id)
    data, meta = c.prepare()
    (data / "data.txt").write_text(run_id)
    (meta / "rejects").mkdir()
    return c


def published(lay: Layout) -> str | None:
    """The run whose record is published, after checking it describes the dataset that is there."""
    if not lay.manifest.exists():
        return None
    m = json.loads(lay.manifest.read_text())
    assert m["dataset_id"] == dir_id(lay.output), "the manifest describes another dataset"
    assert (lay.output / "data.txt").read_text() == m["run_id"]
    return str(m["run_id"])


def leftovers(lay: Layout) -> list[str]:
    return sorted(
        p.name for root in (lay.output.parent, lay.meta) for p in root.iterdir() if ".staging-" in p.name
    ) + sorted(p.name for p in lay.meta.iterdir() if p.name.startswith(("staging-", "retired-")))


def test_commit_publishes_dataset_and_record_together(tmp_path: Path) -> None:
    lay = Layout.of(tmp_path / "out")
    stage(lay, RUN1).commit({"run_id": RUN1}, NOTHING)
    assert published(lay) == RUN1
    stage(lay, RUN2).commit({"run_id": RUN2}, NOTHING)
    assert published(lay) == RUN2
    assert sorted(p.name for p in lay.output.iterdir()) == ["data.txt"]
    stage(lay, RUN3).discard()
    assert published(lay) == RUN2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.meta"]
    assert sorted(p.name for p in lay.meta.iterdir()) == ["current"]


# A commit in a child process that dies (os._exit, as a SIGKILL or power loss would) at one point.
_CRASHING_COMMIT = """
import os, sys
from pathlib import Path
from pipeline.output import record
from pipeline.output.dataset import Contents
from pipeline.output.layout import Layout

where = sys.argv[2]
calls = {"rename": 0}
real_rename = os.rename

def rename(a, b):
    calls["rename"] += 1
    if (where, calls["rename"]) in (("before-retire", 1), ("before-publish", 2)):
        os._exit(9)
    real_rename(a, b)

def exchange(a, b):
    if where == "before-swap":
        os._exit(9)
    return real_exchange(a, b)

real_exchange = record._exchange
record.os.rename = rename
record._exchange = exchange
lay = Layout.of(Path(sys.argv[1]))
c = record.Committer(lay, sys.argv[3])
data, meta = c.prepare()
(data / "data.txt").write_text(sys.argv[3])
c.commit({"run_id": sys.argv[3]}, Contents({}))
"""


@pytest.mark.parametrize("where", ["before-retire", "before-swap", "before-publish"])
def test_a_crash_anywhere_in_the_commit_is_completed_or_undone(tmp_path: Path, where: str) -> None:
    lay = Layout.of(tmp_path / "out")
    stage(lay, RUN1).commit({"run_id": RUN1}, NOTHING)
    script = textwrap.dedent(_CRASHING_COMMIT)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(lay.output), where, RUN2], cwd=ROOT, timeout=60, check=False
    )
    assert proc.returncode == 9
    # right after the crash: either no published record, or one that describes the dataset there
    published(lay)
    Committer(lay, RUN3).recover()  # what the next run does first, under the lock
    expected = RUN2 if where == "before-publish" else RUN1
    assert published(lay) == expected
    assert leftovers(lay) == []


# A commit in a child process that sends itself SIGTERM just before or just after one of its system
# calls, with the run's signal handling: it prints whether it committed, as the runner would report it.
_SIGNALLED_COMMIT = """
import json, os, signal, sys
from pathlib import Path
from pipeline.output import record
from pipeline.output.dataset import Contents
from pipeline.errors import Interrupted
from pipeline.output.layout import Layout
from pipeline.output.signals import signals_raise

out, step, when, run_id = sys.argv[1:5]
count = {}

def wrap(names, fn):
    def call(*args, **kw):
        n = count[fn] = count.get(fn, 0) + 1
        name = names[n - 1] if n <= len(names) else ""
        if name == step and when == "before":
            os.kill(os.getpid(), signal.SIGTERM)
        result = fn(*args, **kw)
        if name == step and when == "after":
            os.kill(os.getpid(), signal.SIGTERM)
        return result
    return call

record.write_json = wrap(["manifest", "dataset"], record.write_json)
record.os.rename = wrap(["retire", "publish"], os.rename)
record._exchange = wrap(["exchange"], record._exchange)
record._fsync_dir = wrap(["fsync-staging", "fsync-meta", "fsync-parent"], record._fsync_dir)
record.shutil.rmtree = wrap(["cleanup-data", "cleanup-record"], record.shutil.rmtree)
lay = Layout.of(Path(out))
c = record.Committer(lay, run_id)
data, meta = c.prepare()
(data / "data.txt").write_text(run_id)
with signals_raise():
    try:
        m = c.commit({"run_id": run_id}, Contents({}))
        print(json.dumps({"committed": True, "signal": m.get("signal")}))
    except Interrupted as exc:
        if c.done is None:
            c.discard()
        print(json.dumps({"committed": c.done is not None, "signal": exc.signum}))
"""

STEPS = ["manifest", "dataset", "fsync-staging", "retire", "exchange", "publish", "fsync-meta"]
STEPS += ["fsync-parent", "cleanup-data", "cleanup-record"]


QUICK = {("manifest", "after"), ("retire", "before"), ("exchange", "after"), ("cleanup-data", "before")}


@pytest.mark.parametrize(
    ("step", "when"),
    [
        (s, w) if (s, w) in QUICK else pytest.param(s, w, marks=pytest.mark.slow)
        for s in STEPS
        for w in ("before", "after")
    ],
)
def test_a_signal_at_any_step_of_the_commit_leaves_old_or_new_and_says_which(
    tmp_path: Path, step: str, when: str
) -> None:
    lay = Layout.of(tmp_path / "out")
    stage(lay, RUN1).commit({"run_id": RUN1}, NOTHING)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SIGNALLED_COMMIT), str(lay.output), step, when, RUN2],
        cwd=ROOT,
        timeout=60,
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["signal"] == 15  # never lost
    # what the run says is what is there, at once: the new dataset with its record, or the old ones
    assert published(lay) == (RUN2 if outcome["committed"] else RUN1)
    # from its first rename on, the commit is completed whatever arrives; before it, nothing changed
    assert outcome["committed"] == (STEPS.index(step) >= STEPS.index("retire"))
    Committer(lay, RUN3).recover()
    assert published(lay) == (RUN2 if outcome["committed"] else RUN1)
    assert leftovers(lay) == []


def test_the_commit_checks_that_every_staged_file_is_still_there(tmp_path: Path) -> None:
    lay = Layout.of(tmp_path / "out")
    stage(lay, RUN1).commit({"run_id": RUN1}, NOTHING)
    c = stage(lay, RUN2)
    staged = c.data_staging / "date=2026-11-01" / f"part-{RUN2}-w0-00000.parquet"
    staged.parent.mkdir()
    staged.write_bytes(b"rows")
    contents = Contents({"date=2026-11-01/" + staged.name: DataFile("date=2026-11-01/" + staged.name, 1, 4)})
    staged.unlink()  # another process removed it during the run
    with pytest.raises(PipelineError, match="1 missing: date=2026-11-01/part-"):
        c.commit({"run_id": RUN2}, contents)
    c.discard()
    assert published(lay) == RUN1 and leftovers(lay) == []


def test_reject_guard_judges_each_input_early_and_the_run_at_the_end() -> None:
    guard = RejectGuard(0.5, "'combined'", early_lines=100)

    def examples() -> list[tuple[int, str, bytes]]:
        return [
            (1, "no match", b"a \x1b[2J line"),
            (2, "no match", b"b"),
            (3, "no match", b"c"),
            (4, "x", b""),
        ]

    guard.add("good.log", 90, 80, examples)  # not judged yet: too few lines
    with pytest.raises(FormatMismatch) as err:
        guard.add("good.log", 20, 20, examples)
    text = str(err.value)
    assert "100 of the first 110 lines of good.log" in text and "'combined'" in text
    assert text.count("\n  line ") == 3 and "a \\x1b[2J line" in text  # three examples, escaped
    guard = RejectGuard(0.5, "'combined'", early_lines=100)
    guard.add("a.log", 150, 10, examples)
    guard.add("b.log", 50, 20, examples)  # small: judged at the end, over all its lines
    guard.check_total(200, 30)
    with pytest.raises(FormatMismatch, match="120 of 200 lines"):
        guard.check_total(200, 120)
    guard.add("c.log", 50, 30, examples)  # 30 of its 50 lines: as a large input would be judged
    with pytest.raises(FormatMismatch, match=r"30 of the 50 lines of c\.log") as err:
        guard.check_total(250, 60)
    assert "leave it out with a glob" in str(err.value)


@pytest.mark.parametrize("files", [1, 2])
def test_the_guard_names_a_stray_file_among_others_whichever_is_seen_first(files: int) -> None:
    """A run of several inputs: the file over the ratio is one among others even when its lines come
    back before any other input's (a chunk finishing first, or the first file of a pack)."""
    guard = RejectGuard(0.5, "'combined'", early_lines=100)
    guard.expect(files)
    with pytest.raises(FormatMismatch) as err:
        guard.add("error.log", 200, 200, list)
    assert ("leave it out with a glob" in str(err.value)) is (files > 1)


def test_the_dataset_holds_only_rows_for_every_reader(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", "-c", "configs/laptop.toml", "-o", str(out), "--set", "parse.workers=1", "-q")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["rejected"] > 0 and m == committed_manifest(out)
    rows = m["rows"]
    expected = read_output(out).drop_columns(["date"]).to_pandas()
    assert len(pd.read_parquet(out)) == rows
    assert pl.read_parquet(out).height == rows
    assert pl.scan_parquet(f"{out}/**/*.parquet").collect().height == rows
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)")
    assert relation is not None
    got = relation.df()
    assert len(got) == rows and set(got.columns) == {*expected.columns, "date"}
    assert sorted(p.name for p in out.iterdir()) == sorted({f"date={d}" for d in got["date"].astype(str)})


def test_a_run_over_a_dataset_without_its_record_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "date=2020-01-01").mkdir(parents=True)
    (out / "date=2020-01-01" / f"part-{RUN1}-w0-00000.parquet").write_bytes(b"PAR1 old data")
    proc = run_cli("run", "-i", "data/sample/access-000.log", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "date=2020-01-01").exists()
    assert read_output(out).num_rows == manifest(out)["rows"] > 0
    assert layout(out).rejects.is_dir()


def test_a_record_file_that_cannot_be_written_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from pipeline.output import record

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device \(writing the record's .*manifest\.json\)"):
        record.write_json(tmp_path / "manifest.json", {"a": 1})
    assert os.listdir(tmp_path) == []  # no temporary file left


def test_recovery_removes_temporary_files_of_processes_that_are_gone(tmp_path: Path) -> None:
    import os

    lay = Layout.of(tmp_path / "out")
    stage(lay, RUN1).commit({"run_id": RUN1}, NOTHING)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    gone = lay.meta / f".last-run.json.tmp-{int(dead.stdout)}"  # a run killed before its last rename
    alive = lay.meta / f".last-run.json.tmp-{os.getpid()}"  # a run writing it now
    mine = lay.meta / "notes.json.tmp-1"  # not a name logpipe writes
    for p in (gone, alive, mine):
        p.write_text("{")
    Committer(lay, RUN2).recover()
    assert not gone.exists() and alive.exists() and mine.exists()
