"""Remote inputs (pipeline.inputs.remote): HTTP and S3 (moto) servers on 127.0.0.1, compared with local reads.

The HTTP server is the standard library's, with Range/HEAD/ETag and injected faults
(bench/remote_server.py); S3 is moto's server mode in a thread. Both listen on a free port and stop
when their fixture ends.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.remote import moto_s3
from bench.remote_server import Faults, serve, serve_plain
from pipeline.config import validate
from pipeline.errors import ExitCode
from pipeline.inputs import ranges, remote
from pipeline.runner import RunResult, run_pipeline
from tests.conftest import ROOT, SAMPLE, read_output, run_cli

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"  # looks like an AWS secret key: grepped for below
PASSWORD = "hunter2-Pa55w0rd-XyZ"
SIGNATURE = "d3adb33fc0ffee5ign4ture0123456789abcdef"


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BACKOFF_S", 0.05)  # retries are tested, not their waits


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A copy of the sample (every compression), served by the HTTP server."""
    root = tmp_path / "www"
    shutil.copytree(SAMPLE, root)
    return root


@pytest.fixture
def http(logs: Path) -> Iterator[tuple[str, Faults]]:
    with serve(logs) as (base, faults):
        yield base, faults


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, the one ``python -m bench remote --s3`` reads from."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of the moto server, with the environment a real run would have (AWS_*)."""
    import boto3  # type: ignore[import-untyped]

    env = {
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # fsspec keeps one S3FileSystem per set of arguments for the process: one made for another module's
    # moto server (since stopped, the endpoint coming from the environment) would be handed out again
    import s3fs  # type: ignore[import-untyped]

    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3")
    bucket = f"logs-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket  # the test's own bucket
    return client


def run(inputs: list[str], out: Path, **sections: dict[str, Any]) -> RunResult:
    data: dict[str, Any] = {
        "run": {"inputs": inputs, "output": str(out), "progress": "off", **sections.pop("run", {})},
        "parse": {"executor": "inline"},
        **sections,
    }
    return run_pipeline(validate(data))


def local_table(tmp_path: Path, files: list[Path]) -> Any:
    result = run([str(f) for f in files], tmp_path / "local")
    assert result.exit_code == ExitCode.OK
    return read_output(tmp_path / "local")


def urls(base: str, root: Path, pattern: str = "*") -> list[str]:
    return [f"{base}/{p.name}" for p in sorted(root.glob(pattern))]


# ---------------------------------------------------------------------------------------------- names


def test_redaction_hides_userinfo_signatures_and_option_values() -> None:
    url = f"https://bob:{PASSWORD}@h.example/a.log?X-Amz-Signature={SIGNATURE}&X-Amz-Date=1&part=2"
    shown = remote.redact(url)
    assert PASSWORD not in shown and SIGNATURE not in shown and "bob" not in shown
    assert shown.startswith("https://***@h.example/a.log?") and "part=2" in shown
    assert remote.redact("s3://bucket/a/b.gz") == "s3://bucket/a/b.gz"
    assert PASSWORD not in remote.redact_text(f"ClientError: 500 for url {url}, giving up")
    cfg = validate({"run": {"inputs": [url], "storage_options": {"key": "AKIA", "secret": SECRET}}})
    dumped = remote.redact_config(cfg.model_dump())
    assert dumped["run"]["storage_options"] == {"key": "***", "secret": "***"}
    assert PASSWORD not in str(dumped) and SECRET not in str(dumped)
    assert cfg.run.storage_options["secret"] == SECRET  # the config itself keeps them, to be used


def test_every_query_value_is_masked_but_harmless_ones() -> None:
    shown = remote.redact("https://h/a.log?jwt=eyJhbGc.x.y&code=4242&versionId=7&partNumber=2&Plain=z")
    assert shown == "https://h/a.log?jwt=***&code=***&versionId=7&partNumber=2&Plain=***"
    assert (
        remote.redact_text("GET https://h/x?session_code=abc failed")
        == "GET https://h/x?session_code=*** failed"
    )


def test_urls_differing_only_in_masked_values_are_distinct_inputs(
    tmp_path: Path, logs: Path, http: tuple[str, Faults]
) -> None:
    base, _ = http
    specs = [f"{base}/access-000.log?id=1", f"{base}/access-000.log?id=2", f"{base}/access-000.log?id=1"]
    result = run(specs, tmp_path / "out")
    assert result.exit_code == ExitCode.OK
    names = [i["path"] for i in result.manifest["inputs"]]
    assert names == [f"{base}/access-000.log?id=***", f"{base}/access-000.log?id=***#2"]
    assert result.manifest["lines"] == 4000


def test_query_secrets_never_in_record_report_or_rejects(tmp_path: Path, logs: Path) -> None:
    """``jwt`` and ``code`` are not secret-looking names: masked all the same, wherever a path goes."""
    jwt, code = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.Zm9v", "oauth-c0de-8f3a91"
    (logs / "bad.log").write_bytes((logs / "access-000.log").read_bytes()[:5000] + b"not a log line\n")
    with serve(logs) as (base, _):
        url = f"{base}/bad.log?jwt={jwt}&code={code}&versionId=v1"
        out, report = tmp_path / "out", tmp_path / "report.html"
        done = run_cli("run", "-i", url, "-o", str(out), "--set", f"run.report={report}")
    assert done.returncode == ExitCode.OK, done.stderr
    files = [p for p in [*tmp_path.glob("out.meta/**/*"), *out.rglob("*"), report] if p.is_file()]
    assert any("reject" in str(p) for p in files)  # the rejects carry the input's name too
    texts = {str(p): p.read_bytes().decode("latin-1") for p in files}
    texts |= {"stdout": done.stdout, "stderr": done.stderr}
    for secret in (jwt, code):
        assert not [where for where, text in texts.items() if secret in text], secret
    assert any("versionId=v1" in text for text in texts.values())


def test_config_defaults() -> None:
    cfg = validate({})
    assert (cfg.read.max_retries, cfg.read.timeout_s, cfg.run.storage_options) == (3, 30.0, {})


def test_local_runs_do_not_import_fsspec() -> None:
    code = (
        "import sys; from pipeline.stages.read import resolve_inputs, Source;"
        f"files, _ = resolve_inputs([{str(SAMPLE)!r}]); [Source(f).read(100) for f in files];"
        "assert 'fsspec' not in sys.modules, 'fsspec imported for local files'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, timeout=60, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------- HTTP


def test_http_matches_local_every_compression(tmp_path: Path, logs: Path, http: tuple[str, Faults]) -> None:
    base, faults = http
    result = run(urls(base, logs), tmp_path / "remote", read={"chunk_bytes": "64KiB", "workers": 3})
    assert result.exit_code == ExitCode.OK, result.manifest["error"]
    assert read_output(tmp_path / "remote").equals(local_table(tmp_path, sorted(logs.iterdir())))
    inputs = result.manifest["inputs"]
    assert [i["compression"] for i in inputs] == ["none", "gzip", "bz2", "xz", "zstd"]
    assert [i["size"] for i in inputs] == [p.stat().st_size for p in sorted(logs.iterdir())]
    # streamed in ranged requests of about chunk_bytes, never a whole-file GET
    gets = [(path, rng) for method, path, rng in faults.requests if method == "GET"]
    assert gets and all(rng for _, rng in gets)
    plain = [rng for path, rng in gets if path == "/access-000.log"]
    assert len(plain) >= 319267 // (64 * 1024)


def test_http_latency_and_500_then_success_and_dropped_connection(
    tmp_path: Path, logs: Path, http: tuple[str, Faults]
) -> None:
    base, faults = http
    faults.latency_s = 0.02
    faults.pass_first = 2  # mid-file: each file's first two ranged GETs are answered normally
    faults.fail_500["/access-000.log"] = 2  # two 500s, then success (max_retries is 3)
    faults.drop["/access-000.log"] = 1  # the connection drops halfway through a block
    faults.drop["/big.log.gz"] = 1
    names = ["access-000.log", "access-001.log.gz", "big.log.gz"]
    (logs / "big.log.gz").write_bytes(gzip.compress((logs / "access-000.log").read_bytes() * 8))
    result = run([f"{base}/{n}" for n in names], tmp_path / "remote", read={"chunk_bytes": "64KiB"})
    assert result.exit_code == ExitCode.OK, result.manifest["failed_inputs"]
    assert all(v == 0 for v in (*faults.fail_500.values(), *faults.drop.values()))  # every fault happened
    # the retries resumed where the reads stood: no line twice, none lost
    assert read_output(tmp_path / "remote").equals(local_table(tmp_path, [logs / n for n in names]))


def test_http_retries_give_up_then_input_failed_others_committed(
    tmp_path: Path, logs: Path, http: tuple[str, Faults]
) -> None:
    base, faults = http
    faults.fail_500["/access-000.log"] = 100
    result = run(urls(base, logs, "access-00[01]*"), tmp_path / "out", read={"max_retries": 2})
    assert result.exit_code == ExitCode.INPUTS_FAILED
    assert result.manifest["committed"] and result.manifest["rows"] > 0
    failed = {i["path"]: i["error"] for i in result.manifest["inputs"] if i["error"]}
    assert list(failed) == [f"{base}/access-000.log"]
    assert (
        "500" in failed[f"{base}/access-000.log"] and "after 3 attempts" in failed[f"{base}/access-000.log"]
    )
    assert 100 - faults.fail_500["/access-000.log"] == 3


def test_http_failure_mid_file_keeps_whole_lines_and_next_run_resumes(
    tmp_path: Path, logs: Path, http: tuple[str, Faults]
) -> None:
    """An input that fails after some blocks: the lines before are committed, the cut line is held
    (not rejected as truncated), and the next incremental run reads on from there: exact output."""
    base, faults = http
    faults.pass_first, faults.fail_500["/access-000.log"] = 2, 100
    out = tmp_path / "out"
    sets: dict[str, dict[str, Any]] = {
        "run": {"incremental": True},
        "read": {"chunk_bytes": "64KiB", "max_retries": 1},
    }
    first = run([f"{base}/access-000.log"], out, **sets)
    assert first.exit_code == ExitCode.INPUTS_FAILED and first.manifest["committed"]
    got = first.manifest["inputs"][0]
    assert 0 < got["lines"] < 2000 and got["error"]  # some blocks were read, then it failed
    faults.fail_500.clear()
    second = run([f"{base}/access-000.log"], out, **sets)
    assert second.exit_code == ExitCode.OK and second.manifest["inputs"][0]["mode"] == "grown"
    assert first.manifest["lines"] + second.manifest["lines"] == 2000
    assert read_output(out).equals(local_table(tmp_path, [logs / "access-000.log"]))


def test_http_stall_times_out(tmp_path: Path, logs: Path, http: tuple[str, Faults]) -> None:
    base, faults = http
    faults.stall["/access-000.log"] = 100  # every ranged GET stops after half its body
    t0 = time.perf_counter()
    result = run(
        urls(base, logs, "access-00[01]*"),
        tmp_path / "out",
        read={"timeout_s": 0.5, "max_retries": 1, "chunk_bytes": "64KiB"},
    )
    assert time.perf_counter() - t0 < 20
    assert result.exit_code == ExitCode.INPUTS_FAILED
    errors = {i["path"]: i["error"] for i in result.manifest["inputs"]}
    assert "Timeout" in str(errors[f"{base}/access-000.log"])
    assert errors[f"{base}/access-001.log.gz"] is None and result.manifest["committed"]


def test_http_missing_url_is_a_failed_input(tmp_path: Path, logs: Path, http: tuple[str, Faults]) -> None:
    base, _ = http
    result = run([f"{base}/access-000.log", f"{base}/nope.log"], tmp_path / "out")
    assert result.exit_code == ExitCode.INPUTS_FAILED
    assert result.manifest["failed_inputs"] == [f"{base}/nope.log"]


def test_unknown_protocol_is_a_failed_input(tmp_path: Path) -> None:
    result = run([str(SAMPLE / "access-000.log"), "nosuchproto://x/y.log"], tmp_path / "out")
    assert result.exit_code == ExitCode.INPUTS_FAILED
    assert result.manifest["failed_inputs"] == ["nosuchproto://x/y.log"]


def test_http_incremental_grown_then_unchanged(tmp_path: Path, logs: Path, http: tuple[str, Faults]) -> None:
    base, faults = http
    log_file = logs / "access-000.log"
    lines = log_file.read_bytes().splitlines(keepends=True)
    log_file.write_bytes(b"".join(lines[:1000]))
    out = tmp_path / "out"
    inc = {"run": {"incremental": True}}
    first = run([f"{base}/access-000.log"], out, **inc)
    assert first.exit_code == ExitCode.OK and first.manifest["lines"] == 1000
    log_file.write_bytes(b"".join(lines))  # the object is replaced by a longer one
    second = run([f"{base}/access-000.log"], out, **inc)
    assert second.manifest["inputs"][0]["mode"] == "grown"
    assert second.manifest["lines"] == len(lines) - 1000
    faults.requests.clear()
    third = run([f"{base}/access-000.log"], out, **inc)
    assert third.manifest["inputs"][0]["mode"] == "unchanged" and third.manifest["lines"] == 0
    # unchanged by ETag, size and mtime: only the head (the fingerprint) was read, not the whole object
    assert [m for m, _, _ in faults.requests].count("GET") == 1
    assert read_output(out).equals(local_table(tmp_path, [log_file]))


# ---------------------------------------------------------------------------------------------- S3


def test_s3_prefix_and_glob_match_local(tmp_path: Path, s3: Any) -> None:
    bucket = s3.bucket
    files = sorted(SAMPLE.iterdir())
    for p in files:
        s3.upload_file(str(p), bucket, f"2026/11/{p.name}")
    s3.put_object(Bucket=bucket, Key="2026/.hidden/skip.log", Body=b"not read\n")
    result = run([f"s3://{bucket}/2026/"], tmp_path / "prefix")
    assert result.exit_code == ExitCode.OK, result.manifest["error"]
    assert [i["path"] for i in result.manifest["inputs"]] == [
        f"s3://{bucket}/2026/11/{p.name}" for p in files
    ]
    assert read_output(tmp_path / "prefix").equals(local_table(tmp_path, files))
    globbed = run([f"s3://{bucket}/2026/**/*.gz"], tmp_path / "glob")
    assert [i["path"] for i in globbed.manifest["inputs"]] == [f"s3://{bucket}/2026/11/access-001.log.gz"]
    missing = run([f"s3://{bucket}/2025/"], tmp_path / "missing")
    assert missing.manifest["failed_inputs"] == [f"s3://{bucket}/2025/"]


def test_s3_incremental_object_replaced_by_longer(tmp_path: Path, s3: Any) -> None:
    bucket, key = s3.bucket, "app/access.log"
    lines = (SAMPLE / "access-000.log").read_bytes().splitlines(keepends=True)
    s3.put_object(Bucket=bucket, Key=key, Body=b"".join(lines[:500]))
    out, inc = tmp_path / "out", {"run": {"incremental": True}}
    assert run([f"s3://{bucket}/app/"], out, **inc).manifest["lines"] == 500
    unchanged = run([f"s3://{bucket}/app/"], out, **inc)
    assert unchanged.manifest["inputs"][0]["mode"] == "unchanged"
    s3.put_object(Bucket=bucket, Key=key, Body=b"".join(lines))
    grown = run([f"s3://{bucket}/app/"], out, **inc)
    assert (grown.manifest["inputs"][0]["mode"], grown.manifest["lines"]) == ("grown", len(lines) - 500)
    state = (out.parent / "out.meta" / "current").glob("*state*")
    assert any('"etag"' in p.read_text() for p in state)


# ---------------------------------------------------------------------------------------------- secrets


def test_credentials_never_in_output_log_or_record(tmp_path: Path, logs: Path, s3: Any) -> None:
    """Secrets in the environment, the config's storage_options and URLs: grepped for everywhere."""
    s3.upload_file(str(SAMPLE / "access-001.log.gz"), s3.bucket, "a/access-001.log.gz")
    faults = Faults(auth=("bob", PASSWORD))
    faults.fail_500["/access-000.log"] = 1  # a retry: its warning names the URL
    with serve(logs, faults) as (base, _):
        port = base.rsplit(":", 1)[1]
        signed = f"http://bob:{PASSWORD}@127.0.0.1:{port}/access-000.log?X-Amz-Signature={SIGNATURE}"
        missing = f"http://bob:{PASSWORD}@127.0.0.1:{port}/gone.log?sig={SIGNATURE}"
        config = tmp_path / "run.toml"
        config.write_text(
            "[run]\n"
            f"inputs = [{signed!r}, {missing!r}, 's3://{s3.bucket}/a/']\n"
            f"output = {str(tmp_path / 'out')!r}\n"
            "log_level = 'debug'\n"
            f"report = {str(tmp_path / 'report.html')!r}\n"
            "[run.storage_options.s3]\n"  # the S3 store's own table: the HTTP client is not given it
            f"secret = {SECRET!r}\nkey = 'AKIAIOSFODNN7EXAMPLE'\n"
            "[parse]\nexecutor = 'inline'\n"
        )
        done = run_cli("run", "--config", str(config))
        shown = run_cli("validate-config", str(config))
    assert done.returncode == ExitCode.INPUTS_FAILED, done.stderr
    assert "retrying" in done.stderr, done.stdout  # the retry was logged (redacted)
    record = json.loads((tmp_path / "out.meta" / "current" / "manifest.json").read_text())
    assert [p.split("/")[-1] for p in record["failed_inputs"]] == ["gone.log?sig=***"]
    assert record["config"]["run"]["storage_options"] == {"s3": {"secret": "***", "key": "***"}}
    texts = {"stdout": done.stdout, "stderr": done.stderr, "validate-config": shown.stdout}
    for p in [*tmp_path.glob("out.meta/**/*"), tmp_path / "report.html"]:
        if p.is_file():
            texts[str(p)] = p.read_bytes().decode("utf-8", "replace")
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            texts[str(p)] = p.read_bytes().decode("latin-1")
    for secret in (SECRET, PASSWORD, SIGNATURE):
        assert not [where for where, text in texts.items() if secret in text], secret
    assert "127.0.0.1" in texts["stdout"] + texts["stderr"]  # the inputs are named, redacted


# ---------------------------------------------------------------------------------------------- servers


def test_server_ignoring_range_is_streamed_and_retried_from_the_start(
    tmp_path: Path, logs: Path, http: tuple[str, Faults]
) -> None:
    """Every GET answered 200 with the whole file: read on from one answer; a connection dropped
    mid-body is asked again and the bytes already read are skipped."""
    base, faults = http
    faults.ignore_range = True  # the drop cuts the first answer halfway through the file
    faults.drop["/access-000.log"] = 1
    faults.drop["/access-004.log.zst"] = 1
    result = run(urls(base, logs), tmp_path / "remote", read={"chunk_bytes": "64KiB"})
    assert result.exit_code == ExitCode.OK, result.manifest["failed_inputs"]
    assert not faults.drop["/access-000.log"] and not faults.drop["/access-004.log.zst"]
    assert read_output(tmp_path / "remote").equals(local_table(tmp_path, sorted(logs.iterdir())))
    gets = [path for method, path, _ in faults.requests if method == "GET"]
    assert gets.count("/access-000.log") == 2  # one answer for every block, and the retry


def test_python_http_server_is_read(tmp_path: Path, logs: Path) -> None:
    with serve_plain(logs) as base:
        result = run(urls(base, logs), tmp_path / "remote", read={"chunk_bytes": "64KiB"})
    assert result.exit_code == ExitCode.OK, result.manifest["failed_inputs"]
    assert read_output(tmp_path / "remote").equals(local_table(tmp_path, sorted(logs.iterdir())))


_PEAK = """
import json, resource, sys
from pipeline.config import validate
from pipeline.runner import run_pipeline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cfg = validate({"run": {"inputs": [sys.argv[1]], "output": sys.argv[2], "progress": "off"},
                "read": {"chunk_bytes": "1MiB", "max_line_bytes": "1MiB", "timeout_s": 10},
                "parse": {"executor": "inline"}})
result = run_pipeline(cfg)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = result.manifest
print(json.dumps({"exit": int(result.exit_code), "lines": m["lines"], "rows": m["rows"],
                  "rejects": m["reject_reasons"], "grew_mb": (after - before) / 1024}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("body", ["endless", pytest.param("gzip bomb", marks=pytest.mark.slow)])
def test_huge_or_endless_body_is_read_in_bounded_memory(tmp_path: Path, logs: Path, body: str) -> None:
    """The client never holds a body whole: an endless answer (Range ignored) is read to the listed
    size; a Content-Encoding of 300 MiB of zeros in 300 KB is decoded in steps, its one line too long."""
    lines = (logs / "access-000.log").read_bytes()
    faults = Faults()
    if body == "endless":
        (logs / "x.log").write_bytes(lines)
        faults.endless.add("/x.log")
    else:
        import zlib

        squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
        zeros = b"\0" * (1 << 20)
        data = b"".join(squeeze.compress(zeros) for _ in range(300)) + squeeze.flush()
        (logs / "x.log").write_bytes(data)
        faults.encoding["/x.log"] = "gzip"
    with serve(logs, faults) as (base, _):
        done = subprocess.run(
            [sys.executable, "-c", _PEAK, f"{base}/x.log", str(tmp_path / "out")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    if body == "endless":
        rows = local_table(tmp_path, [logs / "access-000.log"]).num_rows
        assert (got["exit"], got["lines"], got["rows"]) == (0, 2000, rows)
    else:
        # its one line rejected: every line was, so nothing is committed (exit 6)
        assert (got["exit"], got["lines"], got["rejects"]) == (6, 1, {"line too long": 1})
    assert got["grew_mb"] < 150, got  # a chunk, a line and the pipeline's queues: not the body


@pytest.mark.timeout(60)
def test_connection_errors_each_named_with_the_url_and_stage(
    tmp_path: Path, logs: Path, http: tuple[str, Faults]
) -> None:
    import socket

    base, faults = http
    faults.redirect["/to-file.log"] = "file:///etc/passwd"
    faults.redirect["/loop.log"] = "/loop.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    port = base.rsplit(":", 1)[1]
    cases = {
        f"http://bob:{PASSWORD}@127.0.0.1:{closed}/a.log?jwt={SIGNATURE}": "connection refused",
        "http://no-such-host.invalid/a.log": "DNS lookup failed",
        f"https://127.0.0.1:{port}/access-000.log": "TLS error",
        f"{base}/nope.log": "not found (HTTP 404)",
        f"{base}/to-file.log": "redirect refused",
        f"{base}/loop.log": "redirect refused",
    }
    result = run([*cases, f"{base}/access-000.log"], tmp_path / "out", read={"max_retries": 1})
    assert result.exit_code == ExitCode.INPUTS_FAILED
    errors = {i["path"]: i["error"] for i in result.manifest["inputs"] if i["error"]}
    assert len(errors) == len(cases)
    for url, label in cases.items():
        shown = remote.redact(url)
        assert errors[shown].startswith(f"resolve: {shown}: "), errors[shown]
        assert label in errors[shown], errors[shown]
    assert PASSWORD not in json.dumps(result.manifest) and SIGNATURE not in json.dumps(result.manifest)


@pytest.mark.parametrize("new_size", ["same", "longer"])
def test_object_replaced_between_requests_is_never_stitched(
    tmp_path: Path, logs: Path, http: tuple[str, Faults], new_size: str
) -> None:
    base, faults = http
    old = (logs / "access-000.log").read_bytes()
    new = old.replace(b'"GET /', b'"GET ~')  # the same size, another ETag
    faults.replace["/access-000.log"] = new if new_size == "same" else new + new
    result = run([f"{base}/access-000.log"], tmp_path / "out", read={"chunk_bytes": "64KiB"})
    assert result.exit_code == ExitCode.INPUTS_FAILED
    error = result.manifest["inputs"][0]["error"]
    assert "changed while it was read" in error and f"{base}/access-000.log" in error
    rows = read_output(tmp_path / "out")
    assert 0 < rows.num_rows < 2000  # the first block's lines, of the first version only
    assert not [p for p in rows.column("path").to_pylist() if p and p.startswith("~")]


def test_dask_range_of_a_replaced_object_fails(logs: Path, http: tuple[str, Faults]) -> None:
    base, _ = http
    names, _ = remote.resolve(f"{base}/access-000.log", remote.Settings())
    whole = ranges.probe(names[0])
    assert whole is not None and whole.etag
    (logs / "access-000.log").write_bytes((logs / "access-000.log").read_bytes().replace(b"GET", b"PUT"))
    later = dataclasses.replace(whole, start=whole.size // 2, end=whole.size)
    with pytest.raises(remote.RemoteReadError, match="changed while it was read"):
        ranges.read_range(later, 1 << 20, 64)


def test_s3_object_replaced_between_requests_is_never_stitched(s3: Any) -> None:
    from pipeline.stages.read import Chunk, Reader

    old = (SAMPLE / "access-000.log").read_bytes()
    s3.put_object(Bucket=s3.bucket, Key="a.log", Body=old)
    [name], _ = remote.resolve(f"s3://{s3.bucket}/a.log", remote.Settings())
    chunks: list[Chunk] = []

    def emit(chunk: Chunk) -> None:
        if not chunks:  # between the first block and the second, the object is replaced
            s3.put_object(Bucket=s3.bucket, Key="a.log", Body=old.replace(b'"GET /', b'"GET ~'))
        chunks.append(chunk)

    report = Reader(0, name, 64 << 10, 1 << 20, 64, emit).run()
    assert report.error is not None and "changed while it was read" in report.error
    data = b"".join(bytes(c.data) for c in chunks)
    assert data and old.startswith(data)  # the first version's lines only


# ---------------------------------------------------------------------------------------------- AWS layout


@pytest.mark.slow
def test_an_aws_log_prefix_of_small_gzip_objects_reads_every_line_once(tmp_path: Path, s3: Any) -> None:
    # AWS's layout: one small .gz object per 5 minutes in date folders, with a console "folder" marker
    # (an empty key ending in /) beside them and one object written uncompressed
    from bench.s3_layout import make_layout

    layout = make_layout(objects=36, lines=5, seed=4, hour=22)  # 22:00 to 01:00: two days
    root = "AWSLogs/123456789012/elasticloadbalancing/us-east-1"
    where: dict[str, str] = {}  # trace id -> the object that holds its line
    for k, (key, blob) in enumerate(zip(layout.keys, layout.blobs, strict=True)):
        body = gzip.decompress(blob) if k == 5 else blob
        s3.put_object(Bucket=s3.bucket, Key=key, Body=body)
        for line in gzip.decompress(blob).decode().splitlines():
            where[line.split('"Root=1-', 1)[1].split('"', 1)[0]] = f"s3://{s3.bucket}/{key}"
    s3.put_object(Bucket=s3.bucket, Key=f"{root}/2026/12/", Body=b"")
    assert len(where) == layout.lines and len({k.rsplit("/", 1)[0] for k in layout.keys}) == 2
    base = f"s3://{s3.bucket}/{root}"
    for k, specs in enumerate(
        [
            [f"{base}/"],
            [f"s3://{s3.bucket}/AWSLogs/**"],
            [f"{base}/2026/12/**/*.log.gz"],
            [f"{base}/2026/12/01/", f"{base}/2026/12/**"],
        ]
    ):
        out = tmp_path / f"out{k}"
        result = run(specs, out, run={"format": "alb", "file_column": "file"}, read={"workers": 4})
        assert result.exit_code == ExitCode.OK, (specs, result.error)
        table = read_output(out)
        got = sorted(zip(table.column("trace_id").to_pylist(), table.column("file").to_pylist(), strict=True))
        assert got == sorted((f"Root=1-{t}", f) for t, f in where.items()), specs
        assert result.manifest["lines"] == layout.lines and result.manifest["rejected"] == 0
