"""Byte-range reads of remote inputs by the Dask workers (``pipeline/inputs/ranges.py``).

The line alignment is checked against the file split on its newlines, for many range sizes (a range
owns the lines that start in it); a LocalCluster run over an HTTP server is compared with the inline
executor on the same URLs (rows, rejects with their line numbers, counts), and the server's request log
shows that the driver fetched only the head of an uncompressed object, and a gzip object whole.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.remote_server import Faults, serve
from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.inputs import ranges, remote
from pipeline.runner import run_pipeline
from pipeline.stages.parse import ParseTask, from_ipc
from tests.conftest import SAMPLE, manifest, read_output, rejects_dir

MAX_LINE = 8 * 1024


def _odd_log(path: Path) -> None:
    """Sample lines with bad ones, empty ones, over-long ones (inside a range, across range boundaries,
    at the end of a range) and no final newline."""
    good = (SAMPLE / "access-000.log").read_bytes().split(b"\n")[:1500]
    out: list[bytes] = []
    for k, line in enumerate(good):
        out.append(line)
        if k % 97 == 5:
            out.append(b"this is not a log line")
        if k % 211 == 7:
            out.append(b"")
        if k in (100, 700, 1200):
            out.append(b"x" * (30_000 + k))  # longer than MAX_LINE: a reject
        if k == 400:
            out.append(b"y" * 200_000)  # spans several 64 KiB ranges
    path.write_bytes(b"\n".join(out) + b"\nlast line without newline " + b"z" * 100)


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(SAMPLE / "access-000.log", root)
    shutil.copy(SAMPLE / "access-001.log.gz", root)
    _odd_log(root / "odd.log")
    return root


@pytest.fixture
def http(www: Path) -> Iterator[tuple[str, Faults]]:
    with serve(www) as (base, faults):
        yield base, faults


def _expected(data: bytes) -> list[Any]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line if len(line) <= MAX_LINE else ("too long", len(line)) for line in lines]


def _by_ranges(url: str, chunk_bytes: int) -> list[Any]:
    whole = ranges.probe(url)
    assert whole is not None
    numbered: dict[int, Any] = {}
    before = 0
    for chunk in ranges.chunks(0, whole, chunk_bytes):
        assert chunk.source is not None
        data, n, rejects = ranges.read_range(chunk.source, MAX_LINE, 64)
        kept = data.split(b"\n")[:-1]
        assert data.endswith(b"\n") or not data
        assert len(kept) + len(rejects) == n
        for n_line, length in zip(rejects.lines, rejects.raw_len, strict=True):
            numbered[before + n_line] = ("too long", length)
        k = 1
        for line in kept:
            while before + k in numbered:
                k += 1
            numbered[before + k] = line if len(line) <= MAX_LINE else ("too long", len(line))
            k += 1
        before += n
    assert sorted(numbered) == list(range(1, before + 1))
    return [numbered[i] for i in range(1, before + 1)]


@pytest.mark.parametrize("chunk_bytes", [64 << 10, 9_999])
def test_ranges_own_the_lines_that_start_in_them(
    http: tuple[str, Faults], www: Path, chunk_bytes: int
) -> None:
    base, _ = http
    for name in ("odd.log", "access-000.log"):
        assert _by_ranges(f"{base}/{name}", chunk_bytes) == _expected((www / name).read_bytes())


@pytest.mark.slow
def test_range_boundaries_on_newlines(tmp_path: Path) -> None:
    """Ranges that start right after a newline, or on one; a file of one line; one newline."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.log").write_bytes(b"aaaa\nbbbb\ncccc\n")
    (root / "b.log").write_bytes(b"abc")
    (root / "c.log").write_bytes(b"\n")
    with serve(root) as (base, _):
        for chunk_bytes in (1, 2, 4, 5, 6, 9, 10, 11, 16):
            assert _by_ranges(f"{base}/a.log", chunk_bytes) == [b"aaaa", b"bbbb", b"cccc"]
            assert _by_ranges(f"{base}/b.log", chunk_bytes) == [b"abc"]
            assert _by_ranges(f"{base}/c.log", chunk_bytes) == [b""]


def test_compressed_objects_are_not_cut(http: tuple[str, Faults]) -> None:
    base, faults = http
    assert ranges.probe(f"{base}/access-001.log.gz") is None
    assert ranges.probe(f"{base}/nothing-here.log") is None
    assert ranges.probe(f"{base}/access-000.log") is not None
    # the probe's GETs are all small (a missing object's is fsspec's info(), after its HEAD)
    gets = [rng for m, path, rng in faults.requests if m == "GET" and path != "/nothing-here.log"]
    assert len(gets) == 2 and all(_span(rng, 1 << 30) <= ranges.HEAD_BYTES for rng in gets)


def test_objects_of_a_server_that_ignores_range_are_not_cut(http: tuple[str, Faults]) -> None:
    base, faults = http
    faults.ignore_range = True  # each range would read the object from its start: read once instead
    assert ranges.probe(f"{base}/access-000.log") is None


def test_renumbered_rejects_are_in_line_order(http: tuple[str, Faults]) -> None:
    base, _ = http
    whole = ranges.probe(f"{base}/odd.log")
    assert whole is not None
    todo = ranges.chunks(0, whole, 64 << 10)
    results = [ranges.parse_range(ParseTask(c, max_line_bytes=MAX_LINE)) for c in todo]
    renumber = ranges.Renumber()
    renumber.expect(0, todo)
    out = []
    report = None
    for r in reversed(results):  # the last range first: everything is held until the first is in
        ready, dropped, report = renumber.take(r)
        out += ready
        assert dropped == 0
    assert [r.seq for r in out] == list(range(len(todo))) and report is not None
    assert report.lines == sum(r.lines for r in out) and report.bytes_read == whole.size
    lines = [n for r in out for n in from_ipc(r.rejects).column("line").to_pylist()]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)


def _span(rng: str, size: int) -> int:
    """Bytes a GET with this Range header asks for."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng)
    if not m:
        return size
    start = int(m.group(1) or 0)
    end = int(m.group(2)) + 1 if m.group(2) else size
    return min(end, size) - start


def _run(urls: list[str], out: Path, **parse: Any) -> Any:
    data: dict[str, Any] = {
        "run": {"inputs": urls, "output": str(out), "progress": "off", "format": "combined"},
        "read": {"chunk_bytes": "64KiB", "max_line_bytes": MAX_LINE},
        "parse": {"workers": 2, **parse},
    }
    return run_pipeline(validate(data))


def _outcome(out: Path) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    rejects = pq.read_table(rejects_dir(out)).sort_by([("file", "ascending"), ("line", "ascending")])
    m = manifest(out)
    counts = {k: m[k] for k in ("lines", "rows", "rejected", "filtered", "reject_reasons")}
    files = sorted(
        tuple(f[k] for k in ("path", "lines", "rows", "rejected", "filtered", "bytes_read", "size"))
        + tuple(f[k] for k in ("compression", "error", "end_offset"))
        for f in m["inputs"]
    )
    return read_output(out), rejects, {**counts, "files": files}


@pytest.mark.timeout(180)
def test_local_cluster_reads_ranges_like_the_driver(
    www: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["access-000.log", "access-001.log.gz", "odd.log"]
    sizes = {name: (www / name).stat().st_size for name in names}
    with serve(www) as (base, faults):
        urls = [f"{base}/{name}" for name in names]
        inline = _run(urls, tmp_path / "inline", executor="inline")
        assert inline.exit_code == ExitCode.OK, inline.error
        # what this process (the driver) fetches; the workers are other processes (a fork server)
        fetched: dict[str, int] = dict.fromkeys(names, 0)
        read = remote._HTTPBody.read

        def counted(body: remote._HTTPBody, n: int) -> bytes:
            data = read(body, n)
            fetched[body._e.name.rsplit("/", 1)[-1]] += len(data)
            return data

        monkeypatch.setattr(remote._HTTPBody, "read", counted)
        faults.requests.clear()
        dask = _run(urls, tmp_path / "dask", executor="dask")
        assert dask.exit_code == ExitCode.OK, dask.error
        requests = list(faults.requests)
    assert _outcome(tmp_path / "dask") == _outcome(tmp_path / "inline")
    # the driver: only the head of each plain object; the gzip object (it cannot be cut), no larger
    # than a chunk, is not probed: the driver's reader reads it whole, once
    head = ranges.HEAD_BYTES
    assert sizes["access-001.log.gz"] <= 64 << 10
    gz = sizes["access-001.log.gz"]
    assert fetched == {"access-000.log": head, "odd.log": head, "access-001.log.gz": gz}
    # the server: every byte of the plain objects was fetched (by the workers), each range once plus
    # the byte before it and its last line's tail
    served: dict[str, int] = dict.fromkeys(names, 0)
    for method, path, rng in requests:
        if method == "GET":
            name = path.lstrip("/")
            served[name] += _span(rng, sizes[name])
    for name in ("access-000.log", "odd.log"):
        ranges_n = -(-sizes[name] // (64 << 10))
        tail = ranges_n * (1 + ranges.TAIL_MAX_BYTES)
        assert sizes[name] + ranges.HEAD_BYTES <= served[name] <= sizes[name] + ranges.HEAD_BYTES + tail
    parse = dask.manifest["stages"]["parse"]
    assert parse["executor"] == "dask"


def test_a_failed_range_fails_its_file_from_there(http: tuple[str, Faults]) -> None:
    base, _ = http
    whole = ranges.probe(f"{base}/odd.log")
    assert whole is not None
    todo = ranges.chunks(0, whole, 64 << 10)
    results = [ranges.parse_range(ParseTask(c, max_line_bytes=MAX_LINE)) for c in todo]
    renumber = ranges.Renumber()
    renumber.expect(0, todo)
    assert renumber.take(results[3]) == ([], 0, None)  # held
    assert renumber.take(results[1])[:2] == ([], 0)
    ready, dropped, report = renumber.fail(0, 2, "RemoteReadError: gone")
    assert ready == [] and dropped == 2 and report is None  # range 2 itself and the held range 3
    assert renumber.take(results[4]) == ([], 1, None)  # after the failure: dropped
    ready, dropped, report = renumber.take(results[0])
    assert [r.seq for r in ready] == [0, 1] and dropped == 0 and report is not None
    assert (report.lines, report.error) == (results[0].lines + results[1].lines, "RemoteReadError: gone")
    assert report.bytes_read == report.end_offset == todo[2].source.start  # type: ignore[union-attr]


@pytest.mark.timeout(180)
def test_local_cluster_range_that_cannot_be_read(www: Path, tmp_path: Path) -> None:
    """Every ranged GET of odd.log but the driver's head answers 500: the file fails as a failed read
    on the driver would (exit INPUTS_FAILED, its error in the manifest), the other one is whole."""
    faults = Faults(fail_500={"/odd.log": 1000}, pass_first=1)
    with serve(www, faults) as (base, _):
        urls = [f"{base}/access-000.log", f"{base}/odd.log"]
        run = {"inputs": urls, "output": str(tmp_path / "out"), "progress": "off", "format": "combined"}
        data: dict[str, Any] = {
            "run": run,
            "read": {"chunk_bytes": "64KiB", "max_line_bytes": MAX_LINE, "max_retries": 0},
            "parse": {"workers": 2, "executor": "dask"},
        }
        result = run_pipeline(validate(data))
    assert result.exit_code == ExitCode.INPUTS_FAILED, result.error
    inputs = {f["path"].rsplit("/", 1)[-1]: f for f in result.manifest["inputs"]}
    assert inputs["odd.log"]["lines"] == 0 and "RemoteReadError" in inputs["odd.log"]["error"]
    assert inputs["access-000.log"]["error"] is None
    assert inputs["access-000.log"]["lines"] == (SAMPLE / "access-000.log").read_bytes().count(b"\n")
