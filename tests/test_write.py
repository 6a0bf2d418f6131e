"""Write stage: partition files, row groups, bounded open files, atomic commit."""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import WriteSection
from pipeline.formats.spec import builtin
from pipeline.stages.write import PartitionWriter, WriteError

SCHEMA = builtin("combined").schema()


def batch(n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [
            {
                "ip": "1.1.1.1",
                "ts": 0,
                "method": "GET",
                "path": "/",
                "protocol": "HTTP/1.1",
                "status": 200,
                "user_agent": "x",
                "is_bot": False,
            }
            for _ in range(n)
        ],
        schema=SCHEMA,
    )


def writer(root: Path, **settings: Any) -> PartitionWriter:
    """A writer with the ``[write]`` defaults, ``settings`` changed."""
    keys = {"row_group_rows", "max_rows_per_file", "max_open_files", "compression", "compression_level"}
    return PartitionWriter(root, "r-w0", SCHEMA, **(WriteSection().model_dump(include=keys) | settings))


def test_row_groups_are_filled_across_small_batches(tmp_path: Path) -> None:
    w = writer(tmp_path, row_group_rows=1024)
    for _ in range(10):
        w.add("2026-11-01", batch(300))
    w.close()
    files = list((tmp_path / "date=2026-11-01").glob("*.parquet"))
    assert len(files) == 1
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.num_rows == 3000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1024, 1024, 952]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert w.rows == 3000


def test_open_files_and_buffers_are_bounded(tmp_path: Path) -> None:
    w = writer(tmp_path, row_group_rows=1024, max_open_files=2)
    for day in range(1, 8):
        for _ in range(3):
            w.add(f"2026-11-{day:02d}", batch(400))
        assert len(w._open) <= 2
        assert sum(w._buffered.values()) <= 2 * 1024
    w.close()
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in tmp_path.rglob("*.parquet"))
    assert total == 7 * 3 * 400 == w.rows
    # a date whose file is closed to make room takes its buffered rows along: one file per date
    for day in range(1, 8):
        files = list((tmp_path / f"date=2026-11-{day:02d}").glob("*.parquet"))
        assert len(files) == 1
        assert pq.ParquetFile(files[0]).metadata.num_rows == 3 * 400


def test_rejects_file(tmp_path: Path) -> None:
    from pipeline.stages.parse import REJECT_SCHEMA

    w = writer(tmp_path)
    w.add_rejects(
        "in.log",
        pa.RecordBatch.from_pylist(
            [{"line": 3, "reason": "no match", "raw": b"x\x00", "raw_bytes": 2}], schema=REJECT_SCHEMA
        ),
    )
    w.close()
    table = pq.read_table(tmp_path / "rejects" / "part-r-w0.parquet")
    assert table.to_pylist() == [
        {"file": "in.log", "line": 3, "reason": "no match", "raw": b"x\x00", "raw_bytes": 2}
    ]


def test_rejects_are_batched_into_few_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.stages import write
    from pipeline.stages.parse import REJECT_SCHEMA

    def rejects(first: int) -> pa.RecordBatch:
        rows = [
            {"line": first + i, "reason": "no match", "raw": b"y" * 100, "raw_bytes": 100} for i in range(5)
        ]
        return pa.RecordBatch.from_pylist(rows, schema=REJECT_SCHEMA)

    w = writer(tmp_path)
    for k in range(40):  # 40 chunks with 5 rejects each: one row group, not 40
        w.add_rejects(f"f{k % 2}.log", rejects(10 * k))
    w.close()
    path = tmp_path / "rejects" / "part-r-w0.parquet"
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    table = pq.read_table(path)
    assert table["line"].to_pylist() == [10 * k + i for k in range(40) for i in range(5)]
    assert table["file"].to_pylist()[:10] == ["f0.log"] * 5 + ["f1.log"] * 5

    monkeypatch.setattr(write, "REJECT_BUFFER_BYTES", 2000)  # the buffer is bounded by bytes
    w = writer(tmp_path / "small")
    for k in range(40):
        w.add_rejects("f.log", rejects(10 * k))
    w.close()
    small = tmp_path / "small" / "rejects" / "part-r-w0.parquet"
    assert pq.ParquetFile(small).metadata.num_row_groups > 5
    assert pq.read_table(small).num_rows == 200

    w = writer(tmp_path / "aborted")
    w.add_rejects("f.log", rejects(0))
    w.abort()  # buffered rejects are dropped with the staging directory, never written
    assert not (tmp_path / "aborted" / "rejects").exists()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only: skipped where mount is not permitted)."""
    where = tmp_path / "tiny"
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.decode(errors='replace')}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=False)


def _random_rejects(n: int) -> pa.RecordBatch:
    from pipeline.stages.parse import REJECT_SCHEMA

    rows = [{"line": i, "reason": "no match", "raw": os.urandom(200), "raw_bytes": 200} for i in range(n)]
    return pa.RecordBatch.from_pylist(rows, schema=REJECT_SCHEMA)


def test_a_full_disk_names_the_data_file(tiny_fs: Path) -> None:
    w = writer(tiny_fs, row_group_rows=1024, compression="none")
    columns = batch(1024).to_pydict() | {"path": [os.urandom(100).hex() for _ in range(1024)]}
    big = pa.RecordBatch.from_pydict(columns, schema=SCHEMA)
    with pytest.raises(WriteError) as info:
        for _ in range(10):
            w.add("2026-11-01", big)
        w.close()
    w.abort()  # the runner's clean-up after the error: quiet
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert re.match(
        rf"cannot (write|close) {re.escape(str(tiny_fs))}/date=2026-11-01/part-r-w0-\d+\.parquet: ", message
    )
    assert isinstance(info.value.__cause__, OSError)


def test_a_full_disk_under_the_record_names_the_rejects_file(tmp_path: Path, tiny_fs: Path) -> None:
    w = writer(tmp_path / "data", rejects_dir=tiny_fs / "rejects")
    with pytest.raises(WriteError) as info:
        for _ in range(5):
            w.add_rejects("in.log", _random_rejects(100))
        w.close()
    w.abort()
    assert info.value.errno == errno.ENOSPC
    assert re.match(
        rf"cannot (write|close) {re.escape(str(tiny_fs))}/rejects/part-r-w0\.parquet: ", str(info.value)
    )


def test_a_file_in_the_way_names_the_directory(tmp_path: Path) -> None:
    (tmp_path / "date=2026-11-01").write_bytes(b"in the way")
    w = writer(tmp_path, row_group_rows=1024)
    w.add("2026-11-01", batch(10))
    with pytest.raises(
        WriteError, match=f"cannot create the directory {re.escape(str(tmp_path))}/date=2026-11-01: "
    ):
        w.close()
