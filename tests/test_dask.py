"""``parse.executor = "dask"`` (``pipeline/executors/dask.py``): a real scheduler and workers on
127.0.0.1, a LocalCluster of our own, an unreachable scheduler, a worker killed mid-run.

Every run is compared with the serial reference (``parse.executor = "inline"``) on the same input:
rows, rejects and counts must be equal. The clusters are ``dask scheduler`` / ``dask worker``
subprocesses on random free ports, stopped afterwards with timeouts so that nothing can hang.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, validate
from pipeline.errors import ExitCode, StageError
from pipeline.runner import RunResult, run_pipeline
from pipeline.synthetic import generate
from tests.conftest import ROOT, SAMPLE, manifest, read_output, rejects_dir, run_cli

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 60  # for the scheduler and each worker to come up on a busy 2-core machine
STOP_TIMEOUT_S = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A ``dask scheduler`` and its ``dask worker`` processes (one process, one thread each)."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dask scheduler exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(f"dask scheduler not listening after {START_TIMEOUT_S} s")


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2) -> Iterator[Cluster]:
    """Start a scheduler and ``workers`` workers (no nanny: each worker is the process we can kill)."""
    from distributed import Client

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the workers import pipeline and tests' transforms
    log = folder / "scheduler.log"
    scheduler = subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        cwd=ROOT,
        env=env,
    )
    cluster = Cluster(f"tcp://127.0.0.1:{port}", scheduler)
    try:
        _wait_for_port(port, scheduler, log)
        for k in range(workers):
            cmd = [str(DASK), "worker", cluster.address, "--nworkers", "1", "--nthreads", "1"]
            cmd += ["--no-dashboard", "--no-nanny", "--host", "127.0.0.1", "--name", f"w{k}"]
            stderr = (folder / f"worker-{k}.log").open("wb")
            cluster.workers.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT, env=env)
            )
        # distributed's Client is untyped for mypy strict
        with Client(cluster.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with dask_cluster(tmp_path_factory.mktemp("dask")) as running:
        yield running


def run(src: Path, out: Path, **parse: Any) -> RunResult:
    data: dict[str, Any] = {
        "run": {"inputs": [str(src)], "output": str(out), "progress": "off"},
        "read": {"chunk_bytes": "64KiB"},
        "parse": {"workers": 2, **parse},
    }
    return run_pipeline(validate(data))


def outcome(out: Path) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """What a run wrote: its rows, its rejects (in a canonical order) and its counts."""
    rejects = pq.read_table(rejects_dir(out)).sort_by([("file", "ascending"), ("line", "ascending")])
    m = manifest(out)
    counts = {k: m[k] for k in ("lines", "rows", "rejected", "filtered", "reject_reasons")}
    return read_output(out), rejects, counts


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    out = tmp_path_factory.mktemp("serial") / "out"
    result = run(SAMPLE, out, executor="inline")
    assert result.exit_code == ExitCode.OK, result.error
    return outcome(out)


@pytest.mark.timeout(120)
def test_local_cluster_equals_inline(
    tmp_path: Path, serial: tuple[pa.Table, pa.Table, dict[str, Any]]
) -> None:
    out = tmp_path / "out"
    environ = dict(os.environ)
    result = run(SAMPLE, out, executor="dask")  # no address: a LocalCluster of parse.workers processes
    assert result.exit_code == ExitCode.OK, result.error
    assert dict(os.environ) == environ  # the nannies' environment for their workers is not left behind
    assert outcome(out) == serial
    parse = result.manifest["stages"]["parse"]
    assert parse["executor"] == "dask" and parse["workers"] == 2
    lanes = (result.extras or {})["timeline"]["lanes"]
    parse_lanes = [lane for lane in lanes if lane["stage"] == "parse" and lane["worker"].startswith("dask ")]
    assert parse_lanes and all(lane["worker"].startswith("dask tcp://127.0.0.1:") for lane in parse_lanes)
    # the workers' start times came back to this process's clock: inside the run, not off the chart
    wall = result.manifest["wall_s"]
    assert all(0 <= a <= b <= wall for lane in parse_lanes for a, b, _ in lane["intervals"])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cluster_equals_inline(
    cluster: Cluster, tmp_path: Path, serial: tuple[pa.Table, pa.Table, dict[str, Any]]
) -> None:
    out = tmp_path / "out"
    result = run(SAMPLE, out, executor="dask", address=cluster.address)
    assert result.exit_code == ExitCode.OK, result.error
    assert outcome(out) == serial
    lanes = {
        lane["worker"] for lane in (result.extras or {})["timeline"]["lanes"] if lane["stage"] == "parse"
    }
    workers = {name for name in lanes if name.startswith("dask ")}
    assert workers and workers <= {"dask w0", "dask w1"}  # the workers' names, as the timeline shows them


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_cli_on_a_cluster_with_a_transform(cluster: Cluster, tmp_path: Path) -> None:
    # the CLI in a subprocess, a transform imported on the workers: same output as inline
    outs = {}
    for executor in ("inline", "dask"):
        out = tmp_path / executor
        args = ["run", "-i", str(SAMPLE), "-o", str(out), "--set", f"parse.executor={executor}"]
        args += ["--set", "run.transforms=['tests.transform_examples:depth_and_errors']"]
        if executor == "dask":
            args += ["--set", f"parse.address={cluster.address}"]
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        outs[executor] = outcome(out)
    assert outs["dask"] == outs["inline"]


@pytest.mark.timeout(60)
def test_unreachable_scheduler_is_a_clear_error_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.executors import dask_cluster as cluster_setup

    monkeypatch.setattr(cluster_setup, "CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{_free_port()}"  # nobody listens there
    started = time.monotonic()
    result = run(SAMPLE, tmp_path / "out", executor="dask", address=address)
    assert time.monotonic() - started < 10
    assert result.exit_code == ExitCode.FAILURE
    assert isinstance(result.error, StageError)
    assert f"cannot reach the Dask scheduler at {address} within 1 s" in str(result.error)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("date=*"))


@contextlib.contextmanager
def _listener(answer: bytes | None) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and then sends ``answer`` (an HTTP
    server's reply) or, with None, nothing at all; its address."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed by the test
            while True:
                conn, _ = server.accept()
                held.append(conn)
                if answer is not None:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (None, "within 1 s: no answer to distributed's handshake"),
        (
            b"HTTP/1.0 400 Bad Request\r\nServer: x\r\n\r\n<html>bad</html>\n",
            "does not answer as a Dask scheduler",
        ),
    ],
    ids=["silent", "http"],
)
def test_a_scheduler_address_that_is_not_one_fails_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: bytes | None, message: str
) -> None:
    from pipeline.executors import dask_cluster as cluster_setup

    monkeypatch.setattr(cluster_setup, "CONNECT_TIMEOUT_S", 1.0)
    with _listener(answer) as address:
        started = time.monotonic()
        result = run(SAMPLE, tmp_path / "out", executor="dask", address=address)
        took = time.monotonic() - started
    assert took < 10
    assert result.exit_code == ExitCode.FAILURE
    assert isinstance(result.error, StageError)
    assert address in str(result.error) and message in str(result.error), result.error


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_unreachable_scheduler_exits_1(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    args = ["run", "-i", str(SAMPLE), "-o", str(tmp_path / "out"), "--set", "parse.executor=dask"]
    done = run_cli(*args, "--set", f"parse.address={address}", timeout=40)
    assert time.monotonic() - started < 20  # the 5 s connect timeout, plus start-up
    assert done.returncode == 1
    assert f"cannot reach the Dask scheduler at {address}" in done.stderr


def _wait_until_each_worker_parsed(address: str, chunks: int) -> None:
    """Until every worker of the scheduler at ``address`` has parsed ``chunks`` chunks (the earlier
    ones' results fetched by then): on a loaded machine the run's start takes longer than any fixed
    wait, and a worker killed before its first result leaves no trace in the run's timeline."""
    from distributed import Client

    def executed(dask_worker: Any) -> int:
        return int(dask_worker.state.executed_count)

    deadline = time.monotonic() + START_TIMEOUT_S
    # distributed's Client is untyped for mypy strict
    with Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        while min((counts := client.run(executed)).values(), default=0) < chunks:
            assert time.monotonic() < deadline, f"the workers did not parse {chunks} chunks each: {counts}"
            time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_worker_chunks_are_retried_exactly_once(tmp_path: Path) -> None:
    src = tmp_path / "logs"
    generate(src, files=2, lines=6000, bad=0.01, seed=5)  # ~30 chunks of 64 KiB, 0.3 s each
    transforms = {"run": {"transforms": ["tests.transform_examples:slow"]}}
    with dask_cluster(tmp_path) as own:
        out = tmp_path / "out"
        data: dict[str, Any] = {
            "run": {"inputs": [str(src)], "output": str(out), "progress": "off", **transforms["run"]},
            "read": {"chunk_bytes": "64KiB"},
            "parse": {"executor": "dask", "address": own.address},
        }
        results: list[RunResult] = []
        runner = threading.Thread(target=lambda: results.append(run_pipeline(validate(data))))
        runner.start()
        _wait_until_each_worker_parsed(own.address, 2)  # and is busy with the next slow chunk
        os.kill(own.workers[0].pid, signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive(), "the run did not finish after a worker was killed"
    [result] = results
    assert result.exit_code == ExitCode.OK, result.error
    serial = tmp_path / "serial-transformed"
    reference = run_pipeline(
        validate(
            {
                "run": {"inputs": [str(src)], "output": str(serial), "progress": "off", **transforms["run"]},
                "read": {"chunk_bytes": "64KiB"},
                "parse": {"executor": "inline"},
            }
        )
    )
    assert reference.exit_code == ExitCode.OK
    assert outcome(out) == outcome(serial)  # no chunk lost, none counted twice
    assert result.manifest["lines"] == 12000
    # the killed worker had been parsing (its chunks in flight went to the other one)
    lanes = {lane["worker"] for lane in (result.extras or {})["timeline"]["lanes"]}
    assert {"dask w0", "dask w1"} <= lanes


def test_dask_is_imported_only_when_chosen() -> None:
    # `logpipe run` with another executor must not pay ~0.3 s for importing distributed
    code = (
        "import sys, pipeline.commands, pipeline.runner, pipeline.executors;"
        "from pipeline.config import validate;"
        "from pipeline.executors import make_executor;"
        "cfg = validate({'parse': {'executor': 'inline', 'workers': 1}}).resolved();"
        "make_executor(cfg.parse, 1 << 20).shutdown();"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        ({"executor": "dask", "address": "nope"}, "parse.address: a Dask scheduler address such as"),
        ({"address": "tcp://10.0.0.5:8786"}, "parse.address is only used with parse.executor = 'dask'"),
    ],
)
def test_address_is_validated(parse: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate({"parse": parse})
    ok = validate({"parse": {"executor": "dask", "address": "tcp://10.0.0.5:8786"}})
    assert ok.parse.address == "tcp://10.0.0.5:8786"


@pytest.mark.timeout(120)
def test_origin_columns_on_a_local_cluster_equal_inline(tmp_path: Path) -> None:
    outs = {}
    for executor in ("inline", "dask"):
        out = tmp_path / executor
        data: dict[str, Any] = {
            "run": {
                "output": str(out),
                "progress": "off",
                "file_column": "file",
                "sources": [{"name": "sample", "inputs": [str(SAMPLE)]}],
            },
            "read": {"chunk_bytes": "64KiB"},
            "parse": {"workers": 2, "executor": executor},
        }
        result = run_pipeline(validate(data))
        assert result.exit_code == ExitCode.OK, result.error
        outs[executor] = read_output(out).to_pylist()
    assert outs["dask"] == outs["inline"]
    files = {row["file"] for row in outs["dask"]}
    assert {row["source"] for row in outs["dask"]} == {"sample"} and files == {
        str(p) for p in SAMPLE.iterdir() if not p.name.startswith(".")
    }
