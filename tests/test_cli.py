"""The command line, run for real in a subprocess (no TTY, like cron), with timeouts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from tests.conftest import ROOT, committed_manifest, manifest, read_output, run_cli


def test_run_end_to_end_on_the_sample(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", "--config", "configs/laptop.toml", "--output", str(out), "--set", "parse.workers=2")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert m["status"] == "ok"
    assert m["lines"] == 10_000
    assert m["rows"] + m["rejected"] == m["lines"]
    assert m["version"] and m["run_id"] and m["config"]["parse"]["workers"] == 2
    assert {i["path"].rsplit(".", 1)[-1] for i in m["inputs"]} >= {"log", "gz", "bz2", "xz", "zst"}
    assert {i["compression"] for i in m["inputs"]} == {"none", "gzip", "bz2", "xz", "zstd"}
    assert read_output(out).num_rows == m["rows"]
    assert "bottleneck:" in proc.stdout and "rejects by reason" in proc.stdout
    assert "\x1b" not in proc.stderr  # no progress bars without a TTY


def test_input_globs_and_sets(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "run",
        "-c",
        "configs/cron.toml",
        "-i",
        "data/sample/*.gz",
        "-i",
        "data/sample/access-000.log",
        "-o",
        str(out),
        "--set",
        'parse.executor="inline"',
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    m = manifest(out)
    assert [Path(i["path"]).name for i in m["inputs"]] == ["access-001.log.gz", "access-000.log"]
    assert m["config"]["parse"]["executor"] == "inline"


def test_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[parse]\nworkers = 0\n")
    proc = run_cli("run", "--config", str(bad), "-i", "data/sample", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "parse.workers" in proc.stderr
    proc = run_cli(
        "run", "--config", "configs/laptop.toml", "--set", "parse.wrkers=2", "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 2 and "allowed keys here" in proc.stderr
    proc = run_cli("run", "--bogus-flag")
    assert proc.returncode == 2
    out = tmp_path / "partial"
    proc = run_cli(
        "run",
        "-c",
        "configs/cron.toml",
        "-i",
        "data/sample/access-000.log",
        "-i",
        str(tmp_path / "missing.log"),
        "-o",
        str(out),
        "--set",
        "parse.executor=inline",
    )
    assert proc.returncode == 3, proc.stderr
    assert manifest(out)["failed_inputs"] == [str(tmp_path / "missing.log")]


def test_validate_config() -> None:
    proc = run_cli("validate-config", "configs/server.toml")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["read"]["workers"] == 8
    proc = run_cli("validate-config", "nope.toml")
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_validate_config_escapes_what_the_file_holds(tmp_path: Path) -> None:
    # a key that sets the terminal's title and clears the screen; a value with a bidi override
    cfg = tmp_path / "hostile.toml"
    cfg.write_text('[run]\n"a\\u001b]0;pwned\\u0007\\u001b[2J" = 1\n')
    proc = run_cli("validate-config", str(cfg))
    assert proc.returncode == 2
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "run.a\\x1b]0;pwned\\x07\\x1b[2J: unknown key" in proc.stderr
    cfg.write_text('[run]\noutput = "out\\u202e\\u001b[2J"\n')
    proc = run_cli("validate-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert json.loads(proc.stdout)["run"]["output"].endswith("out\u202e\x1b[2J")


def test_sample_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        proc = run_cli(
            "sample", "-o", str(tmp_path / name), "--files", "2", "--lines", "500", "--compression", "mixed"
        )
        assert proc.returncode == 0, proc.stderr
    for f in (tmp_path / "a").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    assert run_cli("sample", "-o", str(tmp_path / "c"), "--compression", "lzo").returncode == 2


def test_help_everywhere() -> None:
    for args in (["--help"], ["run", "--help"], ["validate-config", "--help"], ["sample", "--help"]):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout


def test_console_script_runs_with_process_pool(tmp_path: Path) -> None:
    # the installed entry point (not `python -m`): its main module is hidden from the fork server
    script = Path(sys.executable).parent / "logpipe"
    if not script.exists():
        pytest.skip("logpipe is not installed next to this interpreter")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(script), "run", "-c", "configs/laptop.toml", "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["rows"] == read_output(out).num_rows > 0


# ------------------------------------------------------------------ never replace good output with less

NGINX_MAIN = (  # nginx's default "main" format: combined plus "$http_x_forwarded_for"
    '10.0.0.{k} - - [01/Nov/2026:10:00:{s:02d} +0000] "GET /p{k} HTTP/1.1" 200 5 "-" "ua \x1b[2J" "1.2.3.4"\n'
)


def _dataset(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def good_output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    proc = run_cli("run", "-i", "data/sample/access-000.log", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("kind", ["typo", "empty-dir", "empty-file", "glob"])
def test_a_run_that_reads_nothing_keeps_the_previous_output(
    good_output: Path, tmp_path: Path, kind: str
) -> None:
    before = _dataset(good_output)
    rows = manifest(good_output)["rows"]
    spec = {
        "typo": tmp_path / "no" / "such" / "dir",
        "empty-dir": tmp_path / "empty",
        "empty-file": tmp_path / "empty.log",
        "glob": tmp_path / "*.nothing",
    }[kind]
    if kind == "empty-dir":
        spec.mkdir()
    if kind == "empty-file":
        spec.write_bytes(b"")
    proc = run_cli("run", "-i", str(spec), "-o", str(good_output))
    assert proc.returncode == 5, proc.stderr
    assert _dataset(good_output) == before
    m = manifest(good_output)
    assert m["status"] == "no_input" and not m["committed"] and m["exit_code"] == 5
    previous = m["previous_run"]
    assert (
        f"previous output (run {previous['run_id']}, finished {previous['finished_at']}) is kept"
        in proc.stdout
    )
    assert previous["rows"] == rows
    reason = {
        "typo": f"the directory {tmp_path / 'no'} does not exist",
        "empty-dir": "the directory holds no file",
        "empty-file": "1 empty",
        "glob": "the pattern matches no file",
    }[kind]
    assert reason in proc.stdout, proc.stdout
    quiet = run_cli("run", "-i", str(spec), "-o", str(good_output), "-q")
    assert quiet.returncode == 5 and quiet.stdout == ""
    assert 1 <= len(quiet.stderr.splitlines()) <= 2  # the failed input, if any, and the outcome


def test_an_incremental_run_with_nothing_new_is_not_an_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("run", "-i", "data/sample/access-000.log", "-o", str(out), "--set", "run.incremental=true")
    assert run_cli(*args, "-q").returncode == 0
    before = _dataset(out)
    dataset_id = committed_manifest(out)["dataset_id"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "nothing new since the last run; the output is unchanged" in proc.stdout
    assert manifest(out)["status"] == "unchanged" and not manifest(out)["committed"]
    assert _dataset(out) == before and committed_manifest(out)["dataset_id"] == dataset_id
    assert run_cli(*args, "-q").stderr == ""


# ----------------------------------------------------------------------------- format mismatch


def test_a_log_in_another_format_fails_fast_and_commits_nothing(good_output: Path, tmp_path: Path) -> None:
    src = tmp_path / "nginx"
    src.mkdir()
    lines = "".join(NGINX_MAIN.format(k=k % 250, s=k % 60) for k in range(20_000))
    (src / "access.log").write_text(lines)
    before = _dataset(good_output)
    proc = run_cli("run", "-i", str(src), "-o", str(good_output), "--set", "read.chunk_bytes=65536")
    assert proc.returncode == 6, proc.stderr
    assert _dataset(good_output) == before
    out = proc.stdout
    assert "the lines do not look like the configured format 'combined'" in out
    assert "of the first" in out  # judged early, on the first chunks
    assert "they look like the built-in format 'main' (50 of 50 rejected lines parse with it" in out
    examples = [line for line in out.splitlines() if line.startswith("  line ")]
    assert len(examples) == 3 and all("\\x1b[2J" in e for e in examples)
    assert "\x1b" not in out + proc.stderr
    assert "\\x0a" not in proc.stderr and "for example:\n" in proc.stderr  # our newlines stay newlines
    m = manifest(good_output)
    assert m["status"] == "format_mismatch" and m["exit_code"] == 6 and not m["committed"]
    quiet = run_cli("run", "-i", str(src), "-o", str(good_output), "-q")
    assert quiet.returncode == 6 and quiet.stdout == ""
    assert len(quiet.stderr.splitlines()) == 1 and "run.max_reject_ratio" in quiet.stderr


def test_small_inputs_are_judged_at_the_end_over_all_their_lines(tmp_path: Path) -> None:
    src = tmp_path / "small"
    src.mkdir()
    for k in range(5):  # small files, each under the early check's thousand lines
        (src / f"{k}.log").write_text("".join(NGINX_MAIN.format(k=i, s=i % 60) for i in range(300)))
    good = (ROOT / "data" / "sample" / "access-000.log").read_bytes()
    (src / "good.log").write_bytes(good[: good.index(b"\n", 40_000) + 1])
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out))
    assert proc.returncode == 6, proc.stderr
    # each small file judged over all its lines, as a large one is over its first thousand
    assert re.search(r"300 of the 300 lines of \S+/0\.log were rejected", proc.stdout), proc.stdout
    assert "of the first" not in proc.stdout
    assert not out.exists()
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", "run.max_reject_ratio=1", "-q")
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------- cron


def test_config_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "logpipe"
    etc.mkdir(parents=True)
    (etc / "logs").mkdir()
    (etc / "logs" / "a.log").write_bytes((ROOT / "data" / "sample" / "access-000.log").read_bytes())
    (etc / "cron.toml").write_text('[run]\ninputs = ["logs"]\noutput = "../../out"\nprogress = "off"\n')
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipeline", "run", "-c", str(etc / "cron.toml"), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=home, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")  # --quiet: nothing on success
    out = tmp_path / "out"
    assert manifest(out)["lines"] == 2000 and not list(home.iterdir())
    # --input and --output are relative to the current directory
    cmd += ["-i", "logs/a.log", "-o", "here"]
    shutil.copytree(etc / "logs", home / "logs")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=home, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert manifest(home / "here")["inputs"][0]["path"] == "logs/a.log"


def test_quiet_prints_one_line_per_problem(tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "missing.log"
    proc = run_cli("run", "-i", "data/sample/access-000.log", "-i", str(missing), "-o", str(out), "-q")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]]
    assert f"input failed: {missing}: no such file or directory" in proc.stderr
    loud = run_cli("run", "-i", "data/sample/access-000.log", "-i", str(missing), "-o", str(out))
    assert loud.returncode == 3
    assert loud.stdout.splitlines()[0].endswith(": finished with 1 failed input; the rest is committed")


# ----------------------------------------------------------------------------------- messages


def test_errors_name_their_origin_and_keep_their_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[parse]\nworkers = 0\nqueue_depth = 0\n")
    proc = run_cli("run", "-c", str(bad), "-i", "data/sample")
    assert proc.returncode == 2
    assert "\\x0a" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].endswith(f"{bad}: invalid configuration")
    assert lines[1].startswith("  parse.queue_depth") or lines[1].startswith("  parse.workers")
    assert len(lines) == 3
    proc = run_cli(
        "run", "-c", "configs/laptop.toml", "--set", "parse.workers=lots", "-o", str(tmp_path / "o")
    )
    assert proc.returncode == 2
    assert "laptop.toml" not in proc.stderr
    assert "--set: invalid configuration" in proc.stderr and "--set parse.workers=lots" in proc.stderr
    file = tmp_path / "a-file"
    file.write_text("x")
    proc = run_cli("run", "-i", "data/sample/access-000.log", "-o", str(file))
    assert proc.returncode == 1
    assert f"{file} is not a directory" in proc.stderr and "lock" not in proc.stderr
    assert file.read_text() == "x"


# ------------------------------------------------------------------------------ formats


def test_detect_names_the_built_in_format_of_each_file(tmp_path: Path) -> None:
    main = tmp_path / "main.log"
    main.write_text("".join(NGINX_MAIN.format(k=k, s=k % 60) for k in range(50)))
    junk = tmp_path / "junk.log"
    junk.write_text("not a log line\n" * 5)
    proc = run_cli("detect", "data/sample/access-001.log.gz")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("data/sample/access-001.log.gz: combined, ")
    assert lines[1].startswith('  run.format = "combined"  # nginx: \'$remote_addr - $remote_user')
    proc = run_cli("detect", str(main))
    assert proc.stdout.splitlines()[0] == f"{main}: main, 50 of its first 50 non-empty lines (100.0%)"
    proc = run_cli("detect", str(junk))
    assert proc.returncode == 1 and "no built-in format parses its first 5 lines" in proc.stdout


def test_a_pasted_nginx_format_string_gives_typed_columns(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    lines = [
        f'10.0.0.{k} - - [01/Nov/2026:10:00:{k:02d} +0000] "GET /p{k}?x=1 HTTP/1.1" 200 {k} "-" "curl/8" '
        f'rt=0.{k:03d} req={k:04x} ups="10.1.1.1:80, 10.1.1.2:80" urt="0.001, 0.{k:03d}"\n'
        for k in range(30)
    ]
    (src / "a.log").write_text("".join(lines))
    cfg = tmp_path / "custom.toml"
    cfg.write_text(
        "[run]\n"
        'inputs = ["in"]\n'
        'output = "out"\n'
        "[run.format]\n"
        "nginx = '''log_format custom '$remote_addr - $remote_user [$time_local] \"$request\" '\n"
        '    \'$status $body_bytes_sent "$http_referer" "$http_user_agent" \'\n'
        "    'rt=$request_time req=$req_id ups=\"$upstream_addr\" urt=\"$upstream_response_time\"';'''\n"
    )
    proc = run_cli("run", "-c", str(cfg), "-q")
    assert proc.returncode == 0, proc.stderr
    table = read_output(tmp_path / "out")
    assert table.num_rows == 30
    types = {f.name: str(f.type) for f in table.schema}
    assert types["request_time"] == "double" and types["upstream_response_time"] == "double"
    assert types["req_id"] == "string" and types["upstream_addr"] == "string" and types["status"] == "int16"
    row = next(r for r in table.to_pylist() if r["path"] == "/p7")
    assert row["query"] == "x=1" and row["req_id"] == "0007" and row["bytes"] == 7
    assert row["upstream_response_time"] == pytest.approx(0.008)  # 0.001 + 0.007: the retries summed
    assert row["upstream_addr"] == "10.1.1.1:80, 10.1.1.2:80"
    bad = tmp_path / "bad.toml"
    bad.write_text("[run.format]\napache = '%h %l %u %t \"%r\" %>s %Q'\n")
    proc = run_cli("validate-config", str(bad))
    assert proc.returncode == 2
    assert "run.format: apache format %Q at position 21: unknown" in proc.stderr, proc.stderr


def test_since_and_until_keep_a_time_window_and_count_the_rest(tmp_path: Path) -> None:
    full, window = tmp_path / "full", tmp_path / "window"
    assert run_cli("run", "-i", "data/sample", "-o", str(full), "-q").returncode == 0
    proc = run_cli(
        "run", "-i", "data/sample", "-o", str(window), "--since", "2026-11-02",
        "--until", "2026-11-04T12:00:00+01:00",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = manifest(window)
    assert m["rows"] + m["rejected"] + m["filtered"] == m["lines"] == 10_000
    assert all(i["rows"] + i["rejected"] + i["filtered"] == i["lines"] for i in m["inputs"])
    assert f"filtered {m['filtered']:,}" in proc.stdout
    rows = read_output(full).to_pylist()
    lo, hi = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 4, 11, tzinfo=UTC)
    inside = [r for r in rows if lo <= r["ts"] < hi]
    assert 0 < len(inside) < len(rows) and m["filtered"] == len(rows) - len(inside)
    assert read_output(window).to_pylist() == inside
    # in a config file: TOML dates, checked at load
    cfg = tmp_path / "window.toml"
    cfg.write_text("[run]\nsince = 2026-11-05\nuntil = 2026-11-02\n")
    proc = run_cli("validate-config", str(cfg))
    assert (
        proc.returncode == 2
        and "run.since (2026-11-05 00:00:00+00:00) must be before run.until" in proc.stderr
    )
    proc = run_cli("run", "-i", "data/sample", "-o", str(window), "--since", "last tuesday")
    assert proc.returncode == 2 and "--since 'last tuesday': an ISO date or time" in proc.stderr


APACHE_LINE = (
    '10.9.0.{k} - - [02/Nov/2026:11:00:{s:02d} +0100] "GET /app{k} HTTP/1.1" 200 {k} "-" "ua" {us}\n'
)


def test_several_sources_write_one_output_with_the_union_of_their_columns(tmp_path: Path) -> None:
    (tmp_path / "front").mkdir()
    (tmp_path / "back").mkdir()
    (tmp_path / "front" / "a.log").write_bytes((ROOT / "data" / "sample" / "access-000.log").read_bytes())
    (tmp_path / "back" / "b.log").write_text(
        "".join(APACHE_LINE.format(k=k, s=k % 60, us=1000 * k) for k in range(1, 41))
    )
    cfg = tmp_path / "two.toml"
    cfg.write_text(
        '[run]\noutput = "out"\n'
        '[[run.sources]]\ninputs = ["front"]\nformat = "combined"\n'
        '[[run.sources]]\ninputs = ["back"]\n'
        'format = {apache = \'%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D\'}\n'
    )
    proc = run_cli("run", "-c", str(cfg), "-q")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    m = manifest(out)
    assert [i["format"] for i in m["inputs"]] == ["combined", "apache format string"]
    table = read_output(out)
    assert table.num_rows == m["rows"] == 1_982 + 40
    back = [r for r in table.to_pylist() if (r["path"] or "").startswith("/app")]
    assert sorted(r["request_time"] for r in back) == [pytest.approx(0.001 * k) for k in range(1, 41)]
    assert all(r["request_time"] is None for r in table.to_pylist() if r not in back)  # %D: microseconds
    relation = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true)")
    assert relation is not None and relation.fetchall() == [(m["rows"],)]
    assert pl.read_parquet(out).height == m["rows"]


def test_format_auto_picks_each_files_format(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "combined.log").write_bytes((ROOT / "data" / "sample" / "access-000.log").read_bytes())
    (src / "main.log").write_text("".join(NGINX_MAIN.format(k=k % 250, s=k % 60) for k in range(100)))
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out), "--set", 'run.format="auto"', "-q")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert {Path(i["path"]).name: i["format"] for i in m["inputs"]} == {
        "combined.log": "combined",
        "main.log": "main",
    }
    table = read_output(out)
    forwarded = [r["http_x_forwarded_for"] for r in table.to_pylist() if r["ip"].startswith("10.0.0.")]
    assert forwarded.count("1.2.3.4") == 100


NGINX_ERROR = (
    '2026/11/01 10:{m:02d}:00 [error] 1234#0: *{k} open() "/srv/www/x{k}.png" failed (2: No such file or '
    'directory), client: 10.0.0.{k2}, server: example.org, request: "GET /x{k}.png HTTP/1.1", '
    'host: "example.org"\n'
)


@pytest.mark.parametrize("error_lines", [50, pytest.param(5_000, marks=pytest.mark.slow)])
def test_a_log_of_another_kind_in_the_input_folder_fails_the_run_whatever_its_size(
    tmp_path: Path, error_lines: int
) -> None:
    src = tmp_path / "nginx"
    src.mkdir()
    shutil.copy(ROOT / "data" / "sample" / "access-000.log", src / "access.log")
    (src / "error.log").write_text(
        "".join(NGINX_ERROR.format(m=k % 60, k=k, k2=k % 250) for k in range(error_lines))
    )
    out = tmp_path / "out"
    proc = run_cli("run", "-i", str(src), "-o", str(out))
    assert proc.returncode == 6, proc.stderr
    assert f"lines of {src / 'error.log'}" in proc.stderr
    assert 'inputs = ["/var/log/nginx/access.log*"]' in proc.stderr and not out.exists()
    proc = run_cli("run", "-i", str(src / "access.log*"), "-o", str(out), "-q")  # the glob of the advice
    assert proc.returncode == 0, proc.stderr


def test_format_auto_reads_json_lines_and_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(ROOT / "data" / "sample" / "access-000.log", src / "combined.log")
    events = [
        {"time": f"2026-11-01T10:00:{k:02d}+00:00", "remote_addr": f"10.1.0.{k}", "status": 200 + k}
        for k in range(40)
    ]
    (src / "app.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    out = tmp_path / "out"
    auto = ("--set", 'run.format="auto"')
    proc = run_cli("run", "-i", str(src), "-o", str(out), *auto, "-q")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert {Path(i["path"]).name: i["rows"] for i in m["inputs"]} == {"combined.log": 1_982, "app.jsonl": 40}
    assert sorted(r["ip"] for r in read_output(out).to_pylist() if r["ip"].startswith("10.1.0."))[:2] == [
        "10.1.0.0",
        "10.1.0.1",
    ]
    (src / "notes.txt").write_text("".join(f"nothing like a log, line {k}\n" for k in range(40)))
    proc = run_cli("run", "-i", str(src), "-o", str(out), *auto)
    assert proc.returncode == 6, proc.stderr
    assert f"no built-in format reads any of the first 40 lines of {src / 'notes.txt'}" in proc.stderr
    assert committed_manifest(out)["run_id"] == m["run_id"]  # nothing committed


def test_sources_that_type_a_column_differently_are_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        "[[run.sources]]\ninputs = ['a']\nformat = {nginx = '[$time_local] $bytes_sent'}\n"
        "[[run.sources]]\ninputs = ['b']\nformat = {apache = '%t %{BYTES_SENT}e'}\n"
    )
    proc = run_cli("validate-config", str(cfg))
    assert proc.returncode == 2
    assert "run.sources:" in proc.stderr and "column 'bytes_sent'" in proc.stderr, proc.stderr


def test_detect_suggests_a_jsonl_mapping_that_reads_the_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    records = [
        {"@time": f"2026-11-01T10:00:{k:02d}+00:00", "remote_addr": f"10.0.0.{k}", "status": 200, "req": "x"}
        for k in range(20)
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = run_cli("detect", str(log))
    assert proc.returncode == 0, proc.stderr
    snippet = proc.stdout.split("read them with\n", 1)[1]
    assert 'ts = "@time"' in snippet and 'ip = "remote_addr"' in snippet and 'req = "req"' in snippet
    cfg = tmp_path / "app.toml"
    cfg.write_text(f'[run]\ninputs = ["app.log"]\noutput = "out"\n{snippet}')
    proc = run_cli("run", "-c", str(cfg), "-q")
    assert proc.returncode == 0, proc.stderr
    table = read_output(tmp_path / "out")
    assert table.num_rows == 20 and table.schema.field("status").type == pa.int16()


def test_named_sources_and_the_file_column_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "lb").mkdir()
    (tmp_path / "web" / "a.log").write_bytes((ROOT / "data" / "sample" / "access-000.log").read_bytes())
    shutil.copy(ROOT / "tests" / "server_logs" / "alb.log", tmp_path / "lb" / "alb.log")
    cfg = tmp_path / "named.toml"
    cfg.write_text(
        '[run]\noutput = "out"\n'
        '[[run.sources]]\nname = "web"\ninputs = ["web"]\n'
        '[[run.sources]]\nname = "alb"\ninputs = ["lb/*.log"]\nformat = "alb"\n'
    )
    # the file column names a file as the manifest does: a config file's inputs joined to its folder
    proc = run_cli("run", "-c", str(cfg), "-q", "--set", 'run.file_column="file"')
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    m = manifest(out)
    web, alb = str(tmp_path / "web" / "a.log"), str(tmp_path / "lb" / "alb.log")
    assert {i["path"]: i["rows"] for i in m["inputs"]} == {web: 1_982, alb: 7}
    relation = duckdb.sql(
        f"SELECT source, file, count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true) "
        "GROUP BY ALL ORDER BY ALL"
    )
    assert relation is not None and relation.fetchall() == [("alb", alb, 7), ("web", web, 1_982)]
    assert pl.read_parquet(out).group_by("source").len().sort("source").rows() == [("alb", 7), ("web", 1_982)]


@pytest.mark.slow
def test_detect_a_folder_prints_a_line_per_file_and_the_config_that_reads_them(tmp_path: Path) -> None:
    import tomllib

    logs = tmp_path / "logs"
    shutil.copytree(ROOT / "tests" / "server_logs", logs)
    (logs / "web").mkdir()
    shutil.copy(ROOT / "data" / "sample" / "access-001.log.gz", logs / "web" / "access.log.gz")
    evil = logs / "web" / "x\x1b[2J\x7f.log"  # a name that would drive the terminal
    evil.write_bytes((ROOT / "data" / "sample" / "access-000.log").read_bytes()[:20_000])
    (logs / "error.log").write_text("2026/11/01 10:00:00 [error] 12#0: *1 open() failed\n" * 3)
    (logs / ".hidden.log").write_text("not looked at\n")
    proc = run_cli("detect", str(logs))
    assert proc.returncode == 1, proc.stderr  # error.log: no format reads it
    assert "\x1b" not in proc.stdout and "\x7f" not in proc.stdout
    head, config = proc.stdout.split("\n\n", 1)
    # the reference: each server's sample is named after its format and all its lines are its rows
    want = [f"{logs / 'error.log'}: no built-in format parses its first 3 lines"]
    for path in sorted((ROOT / "tests" / "server_logs").iterdir()):
        n = len([line for line in path.read_text().splitlines() if line.strip()])
        want.append(f"{logs / path.name}: {path.stem}, {n:,} of its first {n:,} non-empty lines (100.0%)")
    lines = head.splitlines()
    web = [line for line in lines if line.startswith(str(logs / "web"))]
    assert sorted(set(lines) - set(web)) == sorted(want)
    assert len(web) == 2 and all(": combined, " in line for line in web)
    assert any(line.startswith(str(logs / "web" / "x\\x1b[2J\\x7f.log: combined, ")) for line in web)
    # the config printed reads every file it names, each source named after its format
    sources = tomllib.loads(config)["run"]["sources"]
    assert {s["name"] for s in sources} == {"combined"} | {
        p.stem for p in (ROOT / "tests" / "server_logs").iterdir()
    }
    assert str(evil) in [f for s in sources for f in s["inputs"]]
    cfg = tmp_path / "detected.toml"
    cfg.write_text(f'[run]\noutput = "{tmp_path / "out"}"\n{config}')
    done = run_cli("run", "-c", str(cfg), "-q")
    assert done.returncode == 0, done.stderr
    rows = {i["path"]: i["rows"] for i in manifest(tmp_path / "out")["inputs"]}
    assert all(rows[str(logs / p.name)] > 0 for p in (ROOT / "tests" / "server_logs").iterdir())


def test_detect_a_glob_and_a_missing_path(tmp_path: Path) -> None:
    shutil.copy(ROOT / "tests" / "server_logs" / "alb.log", tmp_path / "alb.log")
    proc = run_cli("detect", str(tmp_path / "*.log"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{tmp_path / 'alb.log'}: alb, 7 of its first 7 non-empty lines (100.0%)",
        '  run.format = "alb"  # AWS Application Load Balancer: '
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html",
    ]
    proc = run_cli("detect", str(tmp_path / "alb.log"), str(tmp_path / "nope"))
    assert proc.returncode == 1 and f"{tmp_path / 'nope'}: no such file or directory" in proc.stderr
