"""``logpipe profile``: what each verdict proposes, the tuned config it writes, and a real profile run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config, MiB, available_cores, load_config
from pipeline.diagnostics.profile import Profile, Trial, apply, proposals, report, write_config
from pipeline.output.manifest import Manifest, as_manifest
from pipeline.synthetic import generate
from tests.conftest import ROOT, run_cli


def manifest_with(bounds: dict[str, str], executors: dict[str, str] | None = None, **extra: Any) -> Manifest:
    """A manifest whose stages have the given verdicts (and workers 2): only what a proposal reads."""
    executors = {"read": "thread", "parse": "process", "write": "thread"} | (executors or {})
    stages = {
        name: {"bound": bound, "workers": 2, "executor": executors[name]} for name, bound in bounds.items()
    }
    return as_manifest({"stages": stages, "queue_hints": [], "bottleneck": "parse"} | extra)


def test_a_gil_bound_parse_proposes_processes_on_every_core() -> None:
    cfg = Config.model_validate({"parse": {"executor": "thread", "workers": 2}})
    m = manifest_with({"read": "blocked", "parse": "gil", "write": "gil"}, {"parse": "thread"})
    assert proposals(cfg, m)[0] == {"parse.executor": "process", "parse.workers": available_cores()}


def test_an_io_bound_read_proposes_more_threads_and_a_hint_a_deeper_queue() -> None:
    cfg = Config.model_validate({"read": {"workers": 2, "chunk_bytes": 4 * MiB}, "parse": {"queue_depth": 4}})
    hint = "hint: parse was blocked 0.32 s ...: a bigger parse.queue_depth would keep both working"
    bounds = {"read": "io", "parse": "starved", "write": "io"}
    m = manifest_with(bounds, queue_hints=[hint], bottleneck="read")
    found = proposals(cfg, m)
    assert found[:2] == [{"read.workers": 4}, {"read.workers": 8}]
    assert {"parse.queue_depth": 8} in found
    # and the chunk sizes either side of the current one
    assert {"read.chunk_bytes": 2 * MiB} in found and {"read.chunk_bytes": 8 * MiB} in found
    assert not any("parse.executor" in c for c in found)  # parse is already on processes
    assert not any("write.workers" in c for c in found)  # io-bound too, but not what holds the run back


def test_gil_bound_readers_beside_parse_processes_try_fewer_threads() -> None:
    cfg = Config.model_validate({"read": {"workers": 8}, "parse": {"executor": "process", "workers": 2}})
    m = manifest_with({"read": "gil", "parse": "cpu", "write": "starved"})
    m["stages"]["read"]["workers"] = 8
    found = proposals(cfg, m)
    assert {"read.workers": 4} in found and {"read.workers": 1} in found
    assert not any("parse.executor" in c for c in found)  # parse is on processes already


def profile_of(cfg: Config, best: dict[str, Any]) -> Profile:
    stages = {
        name: {
            "bound": "cpu",
            "evidence": "on a CPU 90% of its busy time",
            "workers": 2,
            "executor": "thread",
            "items_in": 9,
            "items_out": 9,
            "wall_s": 1.0,
            "busy_s": 0.9,
            "wait_in_s": 0.0,
            "blocked_out_s": 0.0,
            "cpu_s": 0.8,
            "utilization": 0.45,
            "lines_per_s": 100,
            "mb_per_s": 1.0,
        }
        for name in ("read", "parse", "write")
    }
    base = Trial({}, 2.0, 1000, as_manifest({"status": "ok", "stages": stages, "machine": {"cores": 2}}))
    tuned = Trial(best, 1.0, 1000, base.manifest)
    return Profile(cfg, 64 * MiB, base, [base, tuned], best, {"start": [2.0, 2.1], "tuned": [1.0, 1.1]})


def test_the_report_shows_the_verdicts_and_the_settings_side_by_side(tmp_path: Path) -> None:
    cfg = Config.model_validate({"parse": {"executor": "thread", "workers": 2}})
    text = report(profile_of(cfg, {"parse.executor": "process", "parse.workers": 2}))
    assert "what bounds each stage:" in text and "  parse  cpu      on a CPU 90%" in text
    assert re.search(r"parse.executor +thread +process", text)
    assert "parse.workers" not in text.split("recommended settings:")[1]  # unchanged: not listed
    assert "start 2.05 s, tuned 1.05 s (1.95x)" in text


def test_the_tuned_config_keeps_the_comments_and_its_paths_still_point_at_the_same_files(
    tmp_path: Path,
) -> None:
    src_dir, out_dir = tmp_path / "configs", tmp_path / "elsewhere" / "deeper"
    src_dir.mkdir()
    out_dir.mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    source = src_dir / "mine.toml"
    source.write_text(
        "# my laptop\n[run]\ninputs = ['../logs']  # relative to this file\noutput = '../out'\n"
        "transforms = [{name = 'geoip', database = '../geo.mmdb'}]\n"
        "[[run.sources]]\ninputs = ['../logs/a.log']\nformat = 'combined'\n"
        "[parse]\nexecutor = 'thread'  # to see the GIL\n"
    )
    cfg = load_config(source)
    tuned = out_dir / "tuned.toml"
    write_config(profile_of(cfg, {"parse.executor": "process", "parse.workers": 2}), source, tuned)
    text = tuned.read_text()
    assert text.startswith("# tuned by logpipe profile from") and "# my laptop" in text
    again = load_config(tuned)
    assert again.parse.executor == "process" and again.parse.workers == 2
    assert again.run.inputs == cfg.run.inputs == [str(tmp_path / "logs")]
    assert again.run.output == cfg.run.output
    assert again.run.sources[0].inputs == cfg.run.sources[0].inputs == [str(tmp_path / "logs" / "a.log")]
    assert again.run.transforms == cfg.run.transforms
    assert apply(cfg, {"parse.executor": "process", "parse.workers": 2}).parse == again.parse


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_profile_finds_the_gil_tries_processes_and_writes_a_valid_config(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    generate(logs, 4, 250_000, "none", 0.001, 7)  # ~1 s of parsing: start-up does not hide the GIL
    tuned = tmp_path / "tuned.toml"
    out = tmp_path / "never-written"
    proc = run_cli(
        "profile",
        "--config",
        "configs/laptop.toml",
        "--input",
        str(logs),
        "--set",
        "parse.executor=thread",
        "--set",
        f"run.output={out}",
        "--budget",
        "25s",
        "--write",
        str(tuned),
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    # threads share one GIL: the profile says so and tries processes
    assert re.search(r"  parse +gil +2 threads on a CPU only", text), text
    assert "parse.executor=process, parse.workers=" in text.split("runs (each")[1]
    assert not out.exists()  # samples go to a scratch directory
    check = run_cli("validate-config", str(tuned))
    assert check.returncode == 0, check.stderr
    # which one wins is this machine's to say (a busy machine leaves processes no spare core): the
    # recommendation must follow the side-by-side medians it prints
    recommended = text.split("recommended settings:")[1]
    side = re.search(r"side by side \(\d+ runs each, medians\): start ([\d.]+) s, tuned ([\d.]+) s", text)
    if "keep the starting config" in recommended:
        assert load_config(tuned).parse.executor == "thread"
    else:
        assert side is not None and float(side[2]) < float(side[1])
        assert load_config(tuned).parse.executor == "process"
    assert (ROOT / "configs" / "laptop.toml").read_text() != tuned.read_text()
