"""Incremental runs: only new or grown input is read, nothing is duplicated, --full-refresh rebuilds."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.inputs import incremental
from pipeline.runner import run_pipeline
from pipeline.stages.read import Source
from pipeline.synthetic import generate, line
from tests.conftest import layout, manifest, read_output, rejects_dir, run_cli


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    """An empty input directory and the output directory (not yet there) of a test's runs."""
    src = tmp_path / "in"
    src.mkdir()
    return src, tmp_path / "out"


def run(
    src: Path,
    out: Path,
    full_refresh: bool = False,
    *,
    expect: ExitCode = ExitCode.OK,
    allow_shrink: bool = False,
    **run_keys: Any,
) -> dict[str, Any]:
    cfg = validate(
        {
            "run": {
                "inputs": [str(src)],
                "output": str(out),
                "progress": "off",
                "incremental": True,
                **run_keys,
            },
            "parse": {"executor": "inline"},
        }
    )
    result = run_pipeline(cfg, full_refresh, allow_shrink=allow_shrink)
    assert result.exit_code == expect, result.error
    return result.manifest


def modes(m: dict[str, Any]) -> dict[str, str]:
    return {Path(i["path"]).name: i["mode"] for i in m["inputs"]}


def valid_lines(n: int, seed: int) -> bytes:
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(seed)
    start = datetime(2026, 11, 3, tzinfo=UTC)
    return b"".join(line(rng, start + timedelta(seconds=i)) + b"\n" for i in range(n))


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    generate(root, files=3, lines=1500, bad=0.01, seed=11)
    return root


def test_three_reruns_each_with_one_more_file_leave_no_duplicates(pool: Path, tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    names = sorted(p.name for p in pool.iterdir())
    assert len(names) == 3
    for name in names:
        shutil.copy2(pool / name, src / name)
        m = run(src, out)
        assert modes(m)[name] == "new"
        assert all(mode == "unchanged" for n, mode in modes(m).items() if n != name)
        assert m["lines"] == 1500, "only the new file is read"
        assert len(read_output(out)) + sum(1 for _ in rejects_dir(out).iterdir()) > 0
    full = tmp_path / "full"
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(full), "progress": "off"},
            "parse": {"executor": "inline"},
        }
    )
    assert run_pipeline(cfg).exit_code == ExitCode.OK
    assert read_output(out).equals(read_output(full))
    rejects = pq.read_table(rejects_dir(out)).num_rows
    assert rejects == manifest(full)["rejected"]


def test_grown_file_is_read_from_its_old_end(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    log.write_bytes(valid_lines(100, 1) + b"garbage one\n")
    m1 = run(src, out)
    assert (m1["lines"], m1["rows"]) == (101, 100)
    with log.open("ab") as fh:
        fh.write(valid_lines(50, 2) + b"garbage two\n")
    m2 = run(src, out)
    assert modes(m2) == {"a.log": "grown"}
    assert (m2["lines"], m2["rows"], m2["rejected"]) == (51, 50, 1)
    assert m2["inputs"][0]["first_line"] == 102
    rejects = pq.read_table(rejects_dir(out)).sort_by("line")
    assert rejects.column("line").to_pylist() == [101, 152]  # numbering continues across runs
    assert read_output(out).num_rows == 150
    m3 = run(src, out)
    assert modes(m3) == {"a.log": "unchanged"} and m3["lines"] == 0
    assert read_output(out).num_rows == 150


def test_unterminated_last_line_waits_for_the_next_run(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    whole = valid_lines(3, 3)
    cut = whole.rindex(b"\n", 0, len(whole) - 1) + 1 + 20  # 20 bytes into the last line
    log.write_bytes(whole[:cut])
    m1 = run(src, out)
    assert (m1["lines"], m1["rows"], m1["inputs"][0]["held_bytes"]) == (2, 2, 20)
    log.write_bytes(whole)
    m2 = run(src, out)
    assert (m2["lines"], m2["rows"], m2["rejected"]) == (1, 1, 0)
    assert read_output(out).num_rows == 3


def test_grown_gzip_file(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log.gz"
    log.write_bytes(gzip.compress(valid_lines(40, 4)))
    run(src, out)
    with log.open("ab") as fh:
        fh.write(gzip.compress(valid_lines(10, 5)))  # a second gzip member, as `gzip >>` appends
    m2 = run(src, out)
    assert modes(m2) == {"a.log.gz": "grown"} and m2["lines"] == 10
    assert read_output(out).num_rows == 50


def test_new_content_under_the_same_name_is_read_whole_and_old_rows_stay(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    log.write_bytes(valid_lines(30, 6))
    run(src, out)
    log.write_bytes(valid_lines(20, 7))  # rotated away: new content under the same name
    m2 = run(src, out)
    assert modes(m2) == {"a.log": "new"} and m2["lines"] == 20
    assert read_output(out).num_rows == 50


def test_full_refresh_rebuilds(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    (src / "a.log").write_bytes(valid_lines(30, 8))
    run(src, out)
    (src / "a.log").write_bytes(valid_lines(20, 9))
    run(src, out)
    assert read_output(out).num_rows == 50
    # the first content of a.log is gone: a rebuild from what is there would drop its 30 rows
    m = run(src, out, full_refresh=True, expect=ExitCode.SHRINK)
    assert "30 would be dropped" in m["error"] and "a.log (30 lines)" in m["error"]
    assert read_output(out).num_rows == 50
    m = run(src, out, full_refresh=True, allow_shrink=True)
    assert modes(m) == {"a.log": "new"}
    assert read_output(out).num_rows == 20
    assert layout(out).state.exists()


def test_failed_run_keeps_state_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = _dirs(tmp_path)
    log = src / "a.log"
    log.write_bytes(valid_lines(30, 10))
    run(src, out)
    state_before = layout(out).state.read_bytes()
    with log.open("ab") as fh:
        fh.write(valid_lines(5, 11))
    from pipeline.stages import write

    def broken(self: object, *args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write.PartitionWriter, "_flush", broken)
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off", "incremental": True},
            "parse": {"executor": "inline"},
        }
    )
    assert run_pipeline(cfg).exit_code == ExitCode.FAILURE
    assert layout(out).state.read_bytes() == state_before
    monkeypatch.undo()
    m = run(src, out)
    assert modes(m) == {"a.log": "grown"} and m["lines"] == 5
    assert read_output(out).num_rows == 35


def test_cli_full_refresh_flag(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "-c",
        "configs/cron.toml",
        "-i",
        "data/sample/access-000.log",
        "-o",
        str(out),
        "--set",
        "run.incremental=true",
        "--set",
        "parse.executor=inline",
        "-q",
    ]
    assert run_cli(*args).returncode == 0
    assert run_cli(*args).returncode == 0
    assert manifest(out)["lines"] == 0
    assert run_cli(*args, "--full-refresh").returncode == 0
    assert manifest(out)["lines"] == 2000


# ------------------------------------------------------------------------------------ logrotate modes
#
# Each test writes lines into logs, rotates them as logrotate would and runs incrementally in between;
# every line ever written must then be in the output exactly once: the output equals a full run over
# one file holding all those lines.


class Logs:
    """Writes new lines into the logs of one directory and remembers every line written."""

    def __init__(self, src: Path):
        self.src = src
        self.written: list[bytes] = []
        self.seed = 100  # every append writes lines no other append writes

    def append(self, name: str, n: int) -> None:
        data = valid_lines(n, self.seed)
        self.seed += 1
        with (self.src / name).open("ab") as fh:
            fh.write(data)
        self.written.append(data)

    @property
    def lines(self) -> int:
        return sum(d.count(b"\n") for d in self.written)

    def rename(self, old: str, new: str) -> None:
        os.rename(self.src / old, self.src / new)

    def compress(self, old: str, new: str) -> None:
        """``gzip``: a new file holding the compressed bytes, with the old one's mtime; the old one goes."""
        (self.src / new).write_bytes(gzip.compress((self.src / old).read_bytes()))
        shutil.copystat(self.src / old, self.src / new)
        (self.src / old).unlink()

    def copytruncate(self, old: str, new: str) -> None:
        shutil.copyfile(self.src / old, self.src / new)
        os.truncate(self.src / old, 0)


def full_output(tmp_path: Path, logs: Logs) -> Path:
    """The output of a full (not incremental) run over one file holding every line written."""
    src = tmp_path / "full-in"
    src.mkdir()
    (src / "all.log").write_bytes(b"".join(logs.written))
    out = tmp_path / "full-out"
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off"},
            "parse": {"executor": "inline"},
        }
    )
    assert run_pipeline(cfg).exit_code == ExitCode.OK
    return out


def assert_read_once(tmp_path: Path, out: Path, logs: Logs, runs: list[dict[str, Any]]) -> None:
    """Every line written was read by exactly one run, and the output is that of a full run."""
    for m in runs:
        assert m["rows"] + m["rejected"] == m["lines"]
    assert sum(m["lines"] for m in runs) == logs.lines
    assert read_output(out).num_rows == logs.lines
    assert read_output(out).equals(read_output(full_output(tmp_path, logs)))


def test_logrotate_rename(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 500)
    runs = [run(src, out)]
    logs.append("a.log", 40)  # appended after the last run, before the rotation: read from a.log.1
    logs.rename("a.log", "a.log.1")
    logs.append("a.log", 30)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "rotated", "a.log": "new"}
    assert runs[-1]["lines"] == 70
    logs.append("a.log", 20)
    logs.rename("a.log.1", "a.log.2")
    logs.rename("a.log", "a.log.1")
    logs.append("a.log", 10)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.2": "unchanged", "a.log.1": "rotated", "a.log": "new"}
    runs.append(run(src, out))
    assert set(modes(runs[-1]).values()) == {"unchanged"} and runs[-1]["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


def test_logrotate_rename_then_compress(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 500)
    runs = [run(src, out)]
    logs.append("a.log", 40)  # never read from a.log: must come from the compressed file
    logs.rename("a.log", "a.log.1")
    logs.compress("a.log.1", "a.log.1.gz")
    logs.append("a.log", 30)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1.gz": "rotated", "a.log": "new"}
    assert runs[-1]["lines"] == 70
    logs.append("a.log", 20)
    logs.rename("a.log.1.gz", "a.log.2.gz")
    logs.rename("a.log", "a.log.1")
    logs.compress("a.log.1", "a.log.1.gz")
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.2.gz": "unchanged", "a.log.1.gz": "rotated"}
    assert runs[-1]["lines"] == 20
    assert_read_once(tmp_path, out, logs, runs)


def test_logrotate_delaycompress(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 300)
    runs = [run(src, out)]
    logs.append("a.log", 200)  # a.log.1 outgrows the fingerprint: its .gz size is not known from its head
    logs.rename("a.log", "a.log.1")  # delaycompress: stays plain for one cycle
    logs.append("a.log", 30)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "rotated", "a.log": "new"}
    logs.append("a.log", 20)
    logs.compress("a.log.1", "a.log.2.gz")
    logs.rename("a.log", "a.log.1")
    logs.append("a.log", 10)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.2.gz": "unchanged", "a.log.1": "rotated", "a.log": "new"}
    gz = next(i for i in runs[-1]["inputs"] if i["path"].endswith("a.log.2.gz"))
    assert gz["lines"] == 0  # decompressed once, to skip what a.log.1 gave: nothing follows
    runs.append(run(src, out))
    assert set(modes(runs[-1]).values()) == {"unchanged"} and runs[-1]["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


def test_logrotate_copytruncate(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 20)  # short: the fingerprint covers the whole file
    runs = [run(src, out)]
    logs.append("a.log", 5)
    logs.copytruncate("a.log", "a.log.1")
    logs.append("a.log", 3)  # shorter than the old fingerprint: cannot match it, new content
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "rotated", "a.log": "new"}
    assert runs[-1]["lines"] == 8
    logs.append("a.log", 600)  # now longer than the old fingerprint, but not the old content
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "unchanged", "a.log": "grown"}
    assert runs[-1]["lines"] == 600
    logs.append("a.log", 7)
    logs.compress("a.log.1", "a.log.2.gz")
    logs.copytruncate("a.log", "a.log.1")
    logs.append("a.log", 9)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.2.gz": "unchanged", "a.log.1": "rotated", "a.log": "new"}
    assert runs[-1]["lines"] == 16
    assert_read_once(tmp_path, out, logs, runs)


def test_logrotate_copytruncate_run_between_copy_and_truncate(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 50)
    runs = [run(src, out)]
    logs.append("a.log", 5)
    shutil.copyfile(src / "a.log", src / "a.log.1")  # the run comes before logrotate truncates
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log": "grown", "a.log.1": "duplicate"}
    assert runs[-1]["lines"] == 5
    os.truncate(src / "a.log", 0)
    logs.append("a.log", 3)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "unchanged", "a.log": "new"}
    assert_read_once(tmp_path, out, logs, runs)


def test_logrotate_dateext(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("access.log", 200)
    runs = [run(src, out)]
    logs.append("access.log", 25)
    logs.rename("access.log", "access.log-20261201")
    logs.append("access.log", 15)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"access.log-20261201": "rotated", "access.log": "new"}
    logs.append("access.log", 12)
    logs.compress("access.log-20261201", "access.log-20261201.gz")
    logs.rename("access.log", "access.log-20261202")
    logs.append("access.log", 8)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {
        "access.log-20261201.gz": "unchanged",  # shorter than the head: its size is known, all read
        "access.log-20261202": "rotated",
        "access.log": "new",
    }
    assert_read_once(tmp_path, out, logs, runs)


def test_logrotate_file_deleted_after_rotation(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 60)
    runs = [run(src, out)]
    logs.append("a.log", 6)
    logs.rename("a.log", "a.log.1")
    logs.append("a.log", 4)
    runs.append(run(src, out))
    (src / "a.log.1").rename(tmp_path / "a.log.1")  # rotate 1: the oldest goes (kept aside here)
    logs.append("a.log", 3)
    logs.rename("a.log", "a.log.1")
    logs.append("a.log", 2)
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "rotated", "a.log": "new"}
    assert runs[-1]["lines"] == 5
    # the deleted file's entry stays: if it comes back (restored from a backup), it is not read again
    (tmp_path / "a.log.1").rename(src / "a.log.0")
    runs.append(run(src, out))
    assert modes(runs[-1])["a.log.0"] == "unchanged" and runs[-1]["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


# ------------------------------------------------------------------------------------ identity


class CountingSource(Source):
    """A :class:`pipeline.stages.read.Source` that counts the decompressed bytes read through it."""

    total = 0

    def read(self, n: int) -> bytes:
        data = super().read(n)
        CountingSource.total += len(data)
        return data

    def skip(self, n: int) -> int:
        done = super().skip(n)
        if self.compression != "none":  # decompressed to be skipped
            CountingSource.total += done
        return done


def test_compressed_file_already_read_is_not_decompressed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 3000)  # about 500 KB: far more than a head
    runs = [run(src, out)]
    logs.compress("a.log", "a.log.1.gz")
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1.gz": "unchanged"} and runs[-1]["lines"] == 0
    from pipeline.stages import read

    monkeypatch.setattr(read, "Source", CountingSource)
    monkeypatch.setattr(incremental, "Source", CountingSource)
    CountingSource.total = 0
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1.gz": "unchanged"} and runs[-1]["lines"] == 0
    assert runs[-1]["inputs"][0]["bytes_read"] == 0
    assert 0 < CountingSource.total <= incremental.FINGERPRINT_BYTES  # its head, nothing more
    monkeypatch.undo()
    assert_read_once(tmp_path, out, logs, runs)


def test_copies_of_one_content_are_read_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 40)
    shutil.copyfile(src / "a.log", src / "b.log")
    with caplog.at_level(logging.WARNING, logger="pipeline.inputs.incremental"):
        m = run(src, out)
    assert sorted(modes(m).values()) == ["duplicate", "new"] and m["lines"] == 40
    assert "same content" in caplog.text
    assert_read_once(tmp_path, out, logs, [m])


def test_short_content_keeps_matching_as_it_grows(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 3)  # a few hundred bytes: the fingerprint covers them all
    runs = [run(src, out)]
    logs.append("a.log", 700)  # past the head size: re-recorded over the full head
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log": "grown"} and runs[-1]["lines"] == 700
    state = json.loads(layout(out).state.read_text())
    assert [e["fp_len"] for e in state["files"]] == [incremental.FINGERPRINT_BYTES]
    logs.append("a.log", 1)
    logs.rename("a.log", "a.log.1")
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "rotated"} and runs[-1]["lines"] == 1
    assert_read_once(tmp_path, out, logs, runs)


def test_state_is_version_2_keyed_by_content(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    data = valid_lines(10, 12)
    (src / "a.log").write_bytes(data)
    run(src, out)
    state = json.loads(layout(out).state.read_text())
    assert state["version"] == 2
    [entry] = state["files"]
    assert entry["fp_len"] == len(data)
    assert entry["fingerprint"] == hashlib.sha256(data).hexdigest()
    assert (entry["offset"], entry["lines"]) == (len(data), 10)
    assert entry["path"] == str((src / "a.log").resolve())
    assert entry["last_seen"]


def test_updated_leaves_the_loaded_state_alone(tmp_path: Path) -> None:
    log_path = tmp_path / "a.log"
    log_path.write_bytes(valid_lines(10, 13))
    known = incremental.load_state(tmp_path / "none.json")
    [p] = incremental.plan([str(log_path)], known)
    first = incremental.updated(known, [p], [log_path.stat().st_size], [10])
    (tmp_path / "state.json").write_text(json.dumps(first))
    known = incremental.load_state(tmp_path / "state.json")
    before = {k: asdict(e) for k, e in known.items()}
    with log_path.open("ab") as fh:
        fh.write(valid_lines(5, 14))
    [p] = incremental.plan([str(log_path)], known)
    assert (p.mode, p.first_line) == ("grown", 11)
    incremental.updated(known, [p], [log_path.stat().st_size], [15])
    assert {k: asdict(e) for k, e in known.items()} == before


@pytest.mark.parametrize("version", [1, 3])
def test_a_state_of_another_version_is_unreadable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, version: int
) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps({"version": version, "files": {}}))
    with pytest.raises(ValueError, match=f"unknown state version {version}"):
        incremental.load_state(state_file, strict=True)
    with caplog.at_level(logging.WARNING, logger="pipeline.inputs.incremental"):
        assert incremental.load_state(state_file) == {}
    assert "ignoring unreadable" in caplog.text and "processing every input" in caplog.text


def test_failed_input_keeps_its_entry_and_is_looked_at_again(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(valid_lines(10, 19))
    known: dict[str, incremental.FileState] = {}
    plans = incremental.plan([str(a)], known)
    (tmp_path / "state.json").write_text(
        json.dumps(incremental.updated(known, plans, [a.stat().st_size], [10]))
    )
    known = incremental.load_state(tmp_path / "state.json")
    with a.open("ab") as fh:
        fh.write(valid_lines(5, 20))
    b.write_bytes(valid_lines(3, 21))
    plans = incremental.plan([str(a), str(b)], known)
    assert [p.mode for p in plans] == ["grown", "new"]
    assert incremental.needs_saving(known, plans)
    # both fail before anything is taken: a's entry stays as it was, b gets none
    state = incremental.updated(known, plans, [p.start_offset for p in plans], [10, 0], ["EIO", "EIO"])
    [entry] = state["files"]
    assert asdict(known[next(iter(known))]) == entry
    # a fails half-way: what was taken is kept, and the file is checked again next run
    state = incremental.updated(known, plans, [a.stat().st_size, 0], [15, 0], ["EIO", None])
    [entry] = state["files"]
    assert (entry["offset"], entry["lines"], entry["size"]) == (a.stat().st_size, 15, -1)
    assert not incremental.needs_saving(known, incremental.plan([], known))


def test_cli_logrotate_with_compression_reads_every_line_once(tmp_path: Path) -> None:
    """The real command, as cron runs it: rename, compress, a fresh log; then nothing new."""
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    args = ("run", "-i", str(src), "-o", str(out), "--set", "run.incremental=true", "-q")

    def cli_run(code: int = 0) -> dict[str, Any]:
        proc = run_cli(*args)
        assert proc.returncode == code, proc.stderr
        assert (proc.stdout, proc.stderr) == ("", "")  # --quiet: nothing when all is well
        return manifest(out)

    logs.append("a.log", 500)
    runs = [cli_run()]
    logs.append("a.log", 40)
    logs.rename("a.log", "a.log.1")
    logs.compress("a.log.1", "a.log.1.gz")
    logs.append("a.log", 30)
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log.1.gz": "rotated", "a.log": "new"}
    nothing_new = cli_run()
    assert nothing_new["status"] == "unchanged" and nothing_new["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


def test_a_column_added_in_a_later_run_reads_together_with_the_earlier_rows(tmp_path: Path) -> None:
    """Schema evolution: a transform adds a column; every reader sees it, null in the earlier rows."""
    import duckdb
    import pandas as pd
    import polars as pl

    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 300)
    first = run(src, out)
    logs.append("a.log", 200)
    second = run(src, out, transforms=["tests.transform_examples:tag"])
    assert (first["rows"], second["rows"]) == (300, 200)
    table = read_output(out)
    assert table.num_rows == 500
    sources = table.column("source").to_pylist()
    assert (sources.count("new"), sources.count(None)) == (200, 300)
    assert len(pd.read_parquet(out)) == 500 and pd.read_parquet(out)["source"].notna().sum() == 200
    assert pl.read_parquet(out)["source"].null_count() == 300
    assert pl.scan_parquet(f"{out}/**/*.parquet").collect().height == 500
    got = duckdb.sql(f"SELECT count(source) FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true)")
    assert got is not None and got.fetchall() == [(200,)]
    # and a third run without the transform keeps the column (null in its rows)
    logs.append("a.log", 100)
    run(src, out)
    assert read_output(out).column("source").null_count == 400


# Inputs that share a start, cut last lines, replaced files: each through the real command.


def cli_runner(src: Path, out: Path) -> Any:
    args = ("run", "-i", str(src), "-o", str(out), "--set", "run.incremental=true", "-q")

    def cli_run(code: int = 0) -> dict[str, Any]:
        proc = run_cli(*args)
        assert proc.returncode == code, proc.stderr
        return manifest(out)

    return cli_run


def longer_copy(logs: Logs, short: str, long: str, extra: int) -> None:
    """``long``: ``short``'s content and ``extra`` lines more, compressed (a longer copy)."""
    shutil.copyfile(logs.src / short, logs.src / "longer.tmp")
    logs.append("longer.tmp", extra)
    logs.compress("longer.tmp", long)


def test_cli_a_longer_copy_is_read_to_its_end_in_the_same_run(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    cli_run = cli_runner(src, out)
    logs.append("x.log", 1000)  # far more than a head: both start with the same 64 KiB
    longer_copy(logs, "x.log", "partial.log.1.gz", 4000)
    runs = [cli_run()]
    assert modes(runs[-1]) == {"partial.log.1.gz": "new", "x.log": "duplicate"}
    assert runs[-1]["lines"] == 5000
    logs.append("x.log", 30)  # the shorter copy goes on differently: its own lines
    runs.append(cli_run())
    assert modes(runs[-1]) == {"partial.log.1.gz": "unchanged", "x.log": "grown"}
    assert runs[-1]["lines"] == 30
    runs.append(cli_run())
    assert runs[-1]["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


@pytest.mark.slow
def test_cli_a_longer_copy_appearing_later_is_read_past_the_shorter(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    cli_run = cli_runner(src, out)
    logs.append("x.log", 1000)
    runs = [cli_run()]
    longer_copy(logs, "x.log", "partial.log.1.gz", 4000)
    runs.append(cli_run())
    assert modes(runs[-1]) == {"partial.log.1.gz": "diverged", "x.log": "unchanged"}
    assert runs[-1]["lines"] == 4000, "the longer copy's lines past the shorter one are new"
    logs.append("x.log", 25)
    runs.append(cli_run())
    assert runs[-1]["lines"] == 25
    runs.append(cli_run())
    assert runs[-1]["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


@pytest.mark.slow
def test_cli_copies_that_go_on_differently_are_both_read(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    cli_run = cli_runner(src, out)
    logs.append("a.log", 800)
    runs = [cli_run()]
    shutil.copyfile(src / "a.log", src / "b.log")  # a hard copy, then each written on its own
    logs.append("a.log", 20)
    logs.append("b.log", 30)
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log": "grown", "b.log": "diverged"}
    assert runs[-1]["lines"] == 50
    logs.append("b.log", 5)
    logs.append("a.log", 7)
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log": "grown", "b.log": "grown"} and runs[-1]["lines"] == 12
    assert_read_once(tmp_path, out, logs, runs)


def test_cli_a_cut_last_line_is_taken_once_its_file_is_rotated(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    cli_run = cli_runner(src, out)
    logs.append("a.log", 10)
    last = valid_lines(1, 9999)
    logs.written.append(last)
    with (src / "a.log").open("ab") as fh:
        fh.write(last[:-1])  # a writer stopped mid-line (or the disk filled): no final newline
    runs = [cli_run()]
    assert runs[-1]["lines"] == 10 and runs[-1]["inputs"][0]["held_bytes"] == len(last) - 1
    logs.rename("a.log", "a.log.1")
    logs.compress("a.log.1", "a.log.1.gz")
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log.1.gz": "rotated"} and runs[-1]["lines"] == 1
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log.1.gz": "unchanged"} and runs[-1]["lines"] == 0
    assert_read_once(tmp_path, out, logs, runs)


@pytest.mark.slow
def test_cli_a_cut_line_taken_from_a_renamed_file_is_not_taken_again(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    cli_run = cli_runner(src, out)
    logs.append("a.log", 10)
    last = valid_lines(1, 9998)
    logs.written.append(last)
    with (src / "a.log").open("ab") as fh:
        fh.write(last[:-1])
    runs = [cli_run()]
    logs.rename("a.log", "a.log.1")
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log.1": "rotated"} and runs[-1]["lines"] == 1
    # the writer, still holding the renamed file open, ends that line and writes another
    with (src / "a.log.1").open("ab") as fh:
        fh.write(b"\n")
    logs.append("a.log.1", 3)
    runs.append(cli_run())
    assert modes(runs[-1]) == {"a.log.1": "grown"} and runs[-1]["lines"] == 3
    assert_read_once(tmp_path, out, logs, runs)


def test_cli_an_offset_past_the_end_reads_the_file_from_its_start(tmp_path: Path) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    cli_run = cli_runner(src, out)
    logs.append("a.log", 40)
    cli_run()
    path = layout(out).state
    state = json.loads(path.read_text())
    state["files"][0]["offset"] += 10_000  # hand-edited, or the file truncated and written again
    state["files"][0]["size"] = -1
    path.write_text(json.dumps(state))
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "run.incremental=true")
    assert proc.returncode == 0, proc.stderr
    assert "shorter than what was already read" in proc.stderr
    m = manifest(out)
    assert modes(m) == {"a.log": "new"} and m["lines"] == 40


def test_reader_does_not_skip_into_a_file_replaced_after_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = _dirs(tmp_path)
    logs = Logs(src)
    logs.append("a.log", 300)
    runs = [run(src, out)]
    logs.append("a.log", 20)
    planned = incremental.plan

    def plan_then_rotate(files: list[str], state: dict[str, incremental.FileState]) -> list[incremental.Plan]:
        plans = planned(files, state)
        logs.rename("a.log", "a.log.1")  # logrotate, between the plan and the read
        logs.append("a.log", 500)
        return plans

    monkeypatch.setattr(incremental, "plan", plan_then_rotate)
    cfg = validate(
        {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off", "incremental": True},
            "parse": {"executor": "inline"},
        }
    )
    result = run_pipeline(cfg)
    assert result.exit_code == ExitCode.INPUTS_FAILED
    assert "changed since it was planned" in result.manifest["inputs"][0]["error"]
    runs.append(result.manifest)
    monkeypatch.undo()
    runs.append(run(src, out))
    assert modes(runs[-1]) == {"a.log.1": "rotated", "a.log": "new"} and runs[-1]["lines"] == 520
    assert_read_once(tmp_path, out, logs, runs)


def test_prefix_digests_stream_across_blocks(tmp_path: Path) -> None:
    """Identities past the head are hashed block by block, compressed or not, never held whole."""
    data = valid_lines(20_000, 77)  # a few MB: several read blocks
    (tmp_path / "a.log").write_bytes(data)
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(data))
    lengths = {1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, len(data), len(data) + 1}
    for name in ("a.log", "a.log.gz"):
        got = incremental._prefix_digests(str(tmp_path / name), lengths)
        assert got == {n: hashlib.sha256(data[:n]).hexdigest() for n in lengths if n <= len(data)}


# Generative: random orders of what writers, logrotate and people do to a log directory, with
# incremental runs in between. Lines carry their number in the request path, so the output says
# which lines were taken. A line cut short (an append without its final newline) is completed by the
# next append to the same live file; taken cut short, it is a reject (its user agent's quote is open).

LIVE = ("a.log", "b.log")
_LINE_ID = re.compile(rb"/p/(\d+) ")


def gen_line(n: int) -> bytes:
    return (
        f"10.0.{n // 250 % 250}.{n % 250 + 1} - - [03/Nov/2026:10:{n // 60 % 60:02d}:{n % 60:02d} +0000]"
        f' "GET /p/{n} HTTP/1.1" 200 {n} "-" "agent-{n}-{"x" * 24}"\n'
    ).encode()


def gen_cut(n: int) -> int:
    return gen_line(n).index(b'"agent-') + 8


class Directory:
    """A log directory changed by random events; remembers what the runs had to take."""

    def __init__(self, src: Path):
        self.src = src
        self.next = 1
        self.pending: dict[str, int] = {}  # live file -> the line its end cuts short
        self.k = 0  # for the names of rotated files and copies
        self.complete: set[int] = set()  # lines some run saw whole
        self.cut: set[int] = set()  # lines some run saw cut short
        self.final: set[int] = set()  # lines some run saw cut short where they cannot grow any more

    def files(self) -> list[str]:
        return sorted(p.name for p in self.src.iterdir())

    def content(self, name: str) -> bytes:
        data = (self.src / name).read_bytes()
        return gzip.decompress(data) if name.endswith(".gz") else data

    def fresh(self, suffix: str = ".log") -> str:
        self.k += 1
        return f"r{self.k}{suffix}"

    def append(self, live: str, n: int, newline: bool) -> None:
        data = b""
        if live in self.pending:
            number = self.pending.pop(live)
            data += gen_line(number)[gen_cut(number) :]
        for _ in range(n):
            data += gen_line(self.next)
            self.next += 1
        if not newline:
            data += gen_line(self.next)[: gen_cut(self.next)]
            self.pending[live] = self.next
            self.next += 1
        with (self.src / live).open("ab") as fh:
            fh.write(data)

    def _moved(self, old: str, new: str) -> None:
        if old in self.pending:
            self.pending[new] = self.pending.pop(old)

    def rename(self, live: str) -> None:
        if (self.src / live).exists():
            new = self.fresh()
            os.rename(self.src / live, self.src / new)
            self._moved(live, new)

    def compress(self, pick: int) -> None:
        plain = [n for n in self.files() if not n.endswith(".gz") and n not in LIVE]
        if plain:
            name = plain[pick % len(plain)]
            gz = self.src / (name + ".gz")
            gz.write_bytes(gzip.compress((self.src / name).read_bytes(), mtime=0))
            shutil.copystat(self.src / name, gz)
            (self.src / name).unlink()
            self._moved(name, gz.name)

    def copy(self, pick: int, to_live: bool) -> None:
        names = self.files()
        if not names:
            return
        name = names[pick % len(names)]
        free = [n for n in LIVE if not (self.src / n).exists()]
        # a copy written to after is told from another log only when they share a head
        whole_head = len(self.content(name)) >= incremental.FINGERPRINT_BYTES
        if to_live and free and not name.endswith(".gz") and whole_head:
            new = free[0]
        else:
            new = self.fresh(".log.gz" if name.endswith(".gz") else ".log")
        shutil.copyfile(self.src / name, self.src / new)
        if name in self.pending:
            self.pending[new] = self.pending[name]

    def copytruncate(self, live: str) -> None:
        if (self.src / live).exists():
            new = self.fresh()
            shutil.copyfile(self.src / live, self.src / new)
            os.truncate(self.src / live, 0)
            self._moved(live, new)

    def delete(self, pick: int) -> None:
        names = self.files()
        if names:
            name = names[pick % len(names)]
            (self.src / name).unlink()
            self.pending.pop(name, None)

    def look(self) -> None:
        """What a run now sees: whole lines, lines cut short, and those that cannot grow any more
        (cut short in a compressed file that no plain file starts with)."""
        contents = {n: self.content(n) for n in self.files()}
        for name, data in contents.items():
            whole, _, rest = data.rpartition(b"\n")
            self.complete.update(int(m) for m in _LINE_ID.findall(whole))
            if rest:
                number = int(_LINE_ID.findall(rest)[0])
                self.cut.add(number)
                grows = any(
                    other != name and not other.endswith(".gz") and more.startswith(data)
                    for other, more in contents.items()
                )
                if name.endswith(".gz") and not grows:
                    self.final.add(number)


def taken(out: Path) -> tuple[list[int], list[int]]:
    """The line numbers of the output's rows, and of its rejects."""
    if not out.exists():
        return [], []
    rows = [int(p.split("/")[-1]) for p in read_output(out).column("path").to_pylist()]
    rejects = []
    if rejects_dir(out).exists():
        for raw in pq.read_table(rejects_dir(out)).column("raw").to_pylist():
            rejects.append(int(_LINE_ID.findall(raw)[0]))
    return rows, rejects


def check_taken(d: Directory, out: Path) -> None:
    """Every line taken once at most (whole or, if seen so, cut short), every line seen whole taken,
    every line seen cut short where it cannot grow taken."""
    rows, rejects = taken(out)
    assert len(set(rows)) == len(rows), "a line taken twice"
    assert not set(rows) & set(rejects), "a line taken whole and cut short"
    assert len(set(rejects)) == len(rejects), "a cut line taken twice"
    assert set(rows) <= d.complete
    assert set(rejects) <= d.cut
    assert d.complete <= set(rows) | set(rejects), "a line seen whole was not taken"
    assert d.final <= set(rows) | set(rejects), "a line cut short in a rotated file was not taken"


EVENT = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(LIVE), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("rename"), st.sampled_from(LIVE)),
    st.tuples(st.just("compress"), st.integers(0, 50)),
    st.tuples(st.just("copy"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("copytruncate"), st.sampled_from(LIVE)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("run")),
)


def replay(events: list[tuple[Any, ...]]) -> None:
    """Apply ``events``, run after each ``run`` event and at the end, check the output after each run;
    then let every file become final (renamed, compressed) and check that nothing cut short is left."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = _dirs(Path(tmp))
        d = Directory(src)

        def run_and_check() -> None:
            d.look()
            cfg = validate(
                {
                    "run": {
                        "inputs": [str(src)],
                        "output": str(out),
                        "progress": "off",
                        "incremental": True,
                        "max_reject_ratio": 1.0,  # a run may see only cut lines
                    },
                    "parse": {"executor": "inline"},
                }
            )
            result = run_pipeline(cfg)
            if not d.files():  # an empty directory: an input that failed
                assert result.exit_code in (ExitCode.INPUTS_FAILED, ExitCode.NO_INPUT), result.error
            elif result.exit_code == ExitCode.NO_INPUT:  # only empty files, and no run before
                assert not any(d.content(n) for n in d.files())
            else:
                assert result.exit_code == ExitCode.OK, result.error
                m = result.manifest
                assert m["rows"] + m["rejected"] == m["lines"]
            check_taken(d, out)

        for event in events:
            if event[0] == "run":
                run_and_check()
            else:
                getattr(d, event[0])(*event[1:])
        run_and_check()
        for live in LIVE:
            d.rename(live)
        for _ in range(len(d.files())):
            d.compress(0)
        run_and_check()
        rows, rejects = taken(out)
        assert d.complete <= set(rows) | set(rejects)
        if rows:  # the rows are those of a full run over the same lines
            full_in = Path(tmp) / "full-in"
            full_in.mkdir()
            (full_in / "all.log").write_bytes(b"".join(gen_line(n) for n in sorted(rows)))
            full_out = Path(tmp) / "full-out"
            cfg = validate(
                {
                    "run": {"inputs": [str(full_in)], "output": str(full_out), "progress": "off"},
                    "parse": {"executor": "inline"},
                }
            )
            assert run_pipeline(cfg).exit_code == ExitCode.OK
            assert read_output(out).equals(read_output(full_out))


@pytest.fixture
def small_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heads of a few lines, so that a few appends take contents past them."""
    monkeypatch.setattr(incremental, "FINGERPRINT_BYTES", 600)
    monkeypatch.setattr(incremental, "ANCHOR_BYTES", 150)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT, max_size=10))
def test_random_events_take_every_line_once(small_heads: None, events: list[tuple[Any, ...]]) -> None:
    replay(events)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(EVENT, max_size=25))
def test_random_events_take_every_line_once_many(small_heads: None, events: list[tuple[Any, ...]]) -> None:
    replay(events)
