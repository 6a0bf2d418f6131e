"""``python -m bench``: options, the alternating rounds, the check, the report and the results file.

Every contender runs once per round, rounds alternate, the report gives medians; after round 1 every
output is compared with the reference peer's (``polars``). ``--scaling`` runs the pipeline alone with
``parse.workers`` 1 and 2 and ``read.workers`` 1, 2 and 4. The report (markdown) goes to stdout, the raw
results to ``.bench/results/<timestamp>.json``, each run's output to ``.bench/logs/<timestamp>/``.

Exit status: 0 when every run succeeded and every check matched, 1 when a run failed or a check
mismatched, 2 for a usage or set-up error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from bench import BENCH_DIR, REPO, SHARED_BENCH, SetupError, datasets, emit, log
from bench.compare import CheckResult, run_checks
from bench.environment import ensure_bytecode, ensure_peers_venv, known_peers, machine_info
from bench.report import contender_table, median_run, print_header, scaling_report, stage_table, summarise
from bench.runners import PIPELINE, Contender, Context, RunResult, become_subreaper, run_one

REFERENCE_PEER = "polars"
DEFAULT_PEERS = "polars,polars_lazy"
SCALING = ["parse.workers=1", "parse.workers=2", "read.workers=1", "read.workers=2", "read.workers=4"]
# --format: the yardstick generator's formats, and the run.format that reads each (the nginx log_format
# lines its docstring gives; JSON through the escape=json template)
JSON_TEMPLATE = (
    'escape=json \'{"time_local":"$time_local","remote_addr":"$remote_addr",'
    '"remote_user":"$remote_user","request":"$request","status":"$status",'
    '"body_bytes_sent":"$body_bytes_sent","request_time":"$request_time","http_referrer":"$http_referer",'
    '"http_user_agent":"$http_user_agent"}\''
)
# the JSON yardstick's keys read by a key map (format "jsonl"), under the columns of the nginx variables
JSONL_MAPPING = {
    "ts": "time_local",
    "ip": "remote_addr",
    "user": "remote_user",
    "request": "request",
    "status": "status",
    "bytes": "body_bytes_sent",
    "request_time": "request_time",
    "referrer": "http_referrer",
    "user_agent": "http_user_agent",
}
FORMAT_SETTINGS = {
    "combined": '"combined"',
    "upstream": '"upstream_time"',
    "json": "{nginx = '''" + JSON_TEMPLATE + "'''}",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the logpipe pipeline against the yardstick peers (polars, ...) on generated "
        "access logs: alternated rounds, medians, whole-process-tree peak memory, output check. "
        "`python -m bench parse --help`: the parse stage alone.",
        epilog="Exit status: 0 all good, 1 a run failed or the check mismatched, 2 usage/set-up error.",
    )
    add = ap.add_argument
    add("--files", type=int, default=8, help="number of log files (default 8)")
    add("--lines", type=int, default=125_000, help="lines per file (default 125000)")
    add("--gzip", action="store_true", help="gzip-compressed input files")
    add(
        "--format",
        choices=sorted(FORMAT_SETTINGS),
        default="combined",
        help="the yardstick's log format (upstream, json: only the polars peers support them)",
    )
    add("--repeats", "-r", type=int, default=3, help="rounds; each runs every contender once (3)")
    add("--peers", default=DEFAULT_PEERS, help=f"peers.py names, or 'none' (default {DEFAULT_PEERS})")
    yes_no = argparse.BooleanOptionalAction
    add("--pipeline", action=yes_no, default=True, help="run the pipeline (--no-pipeline: peers only)")
    add("--config", default="configs/laptop.toml", help="pipeline config (default configs/laptop.toml)")
    add("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="`logpipe run --set`")
    add("--workers", type=int, default=os.cpu_count() or 1, help="--workers for the peers (cores)")
    add("--logpipe", type=Path, default=REPO / ".venv" / "bin" / "logpipe", help="the logpipe to run")
    add("--check", action=yes_no, default=True, help="compare outputs with the polars peer's (on)")
    add("--scaling", action="store_true", help="pipeline only: " + ", ".join(SCALING))
    add("--sample-ms", type=float, default=50.0, help="memory sampling period in ms (50)")
    add(
        "--memory-sampling",
        choices=("separate", "inline"),
        default="separate",
        help="memory from a second, untimed run of each command (default) or from the timed run",
    )
    add("--timeout", type=float, default=1800.0, help="seconds before a run is killed (1800)")
    a = ap.parse_args(argv)
    if min(a.files, a.lines, a.repeats, a.workers) < 1:
        ap.error("--files, --lines, --repeats and --workers must be at least 1")
    if a.sample_ms <= 0 or a.timeout <= 0:
        ap.error("--sample-ms and --timeout must be positive")
    if bad := [s for s in a.sets if "=" not in s or s.startswith("=")]:
        ap.error(f"--set wants KEY=VALUE, got {', '.join(map(repr, bad))}")
    peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    a.peer_list = [] if a.scaling or peers in ([], ["none"]) else peers
    if "none" in a.peer_list:
        ap.error("--peers none cannot be combined with peer names")
    known = known_peers()
    if known is not None and (unknown := [p for p in a.peer_list if p not in known]):
        ap.error(f"unknown peer(s) {', '.join(unknown)}; peers.py has: {', '.join(known)}")
    if a.scaling and not a.pipeline:
        ap.error("--scaling runs the pipeline; it cannot be combined with --no-pipeline")
    if not a.pipeline and not a.peer_list:
        ap.error("nothing to run: --no-pipeline and no peers")
    return a


def _contenders(a: argparse.Namespace) -> list[Contender]:
    """The contenders of one round, in run order."""
    if a.scaling:
        return [Contender(PIPELINE, PIPELINE, [*a.sets, v], v) for v in SCALING]
    fmt = [] if a.format == "combined" else [f"run.format={FORMAT_SETTINGS[a.format]}"]
    out = [Contender(PIPELINE, PIPELINE, [*fmt, *a.sets])] if a.pipeline else []
    return out + [Contender(p, "peer") for p in a.peer_list]


def _check_setup(a: argparse.Namespace) -> tuple[Path, Path]:
    """The logpipe executable and the config, checked; the peers' venv made if needed."""
    logpipe = Path(a.logpipe).absolute()
    config = Path(a.config) if Path(a.config).is_absolute() or Path(a.config).exists() else REPO / a.config
    if a.pipeline:
        if not os.access(logpipe, os.X_OK):
            raise SetupError(f"{logpipe} not found or not executable: install the project first")
        if not config.exists():
            raise SetupError(f"config {a.config} not found (looked in {Path.cwd()} and {REPO})")
        ensure_bytecode()
    if a.peer_list and not (SHARED_BENCH / "peers.py").is_file():
        log(f"warning: {SHARED_BENCH} not found; skipping the peers {', '.join(a.peer_list)}")
        a.peer_list = []
        if not a.pipeline:
            raise SetupError("no peers available and --no-pipeline: nothing to run")
    if a.peer_list:
        ensure_peers_venv()
    return logpipe, config.resolve()


def run_benchmark(a: argparse.Namespace) -> int:
    """Set up, run the rounds, check, report; returns the exit status."""
    started = datetime.now().astimezone()
    stamp = started.strftime("%Y%m%dT%H%M%S")
    command = shlex.join([sys.executable, "-m", "bench", *sys.argv[1:]])
    logpipe, config = _check_setup(a)
    dataset = datasets.ensure(a.files, a.lines, a.gzip, logpipe, a.format)
    info = machine_info()
    separate = a.memory_sampling == "separate"
    info["memory_runs"] = "sampled in a second, untimed run of each command" if separate else "sampled inline"
    if become_subreaper():
        info["cpu_accounting"] = "getrusage of the whole tree (harness is a child subreaper)"
    else:
        info["cpu_accounting"] = "getrusage of reaped children (not a subreaper: orphaned workers missed)"
        log("warning: could not become a child subreaper; CPU of a fork server's workers is not counted")
    logs = BENCH_DIR / "logs" / stamp
    ctx = Context(
        dataset, logpipe, config, a.workers, a.timeout, a.sample_ms / 1000, logs, separate, a.format
    )
    print_header(info, command, started.isoformat(timespec="seconds"), dataset)

    runs: list[RunResult] = []
    checks: list[CheckResult] = []
    check_wanted = a.check and not a.scaling
    ref_label = REFERENCE_PEER if REFERENCE_PEER in a.peer_list else next(iter(a.peer_list), None)
    if check_wanted and ref_label is None:
        log("warning: --check needs a peer as reference (e.g. --peers polars); check skipped")
    failed: set[str] = set()
    for round_no in range(1, a.repeats + 1):
        for c in _contenders(a):
            if c.label not in failed:
                runs.append(run_one(ctx, c, round_no))
                if not runs[-1].ok:
                    failed.add(c.label)
        if round_no == 1 and check_wanted and ref_label is not None:
            checks = run_checks(runs, ref_label, dataset)

    summary = summarise(runs, dataset)
    emit("## Results\n")
    emit(f"{a.repeats} round(s), contenders alternated within each round; times measured by the harness.\n")
    emit(scaling_report(summary) if a.scaling else contender_table(summary, dataset))
    pipe_ok = [r for r in runs if r.contender == PIPELINE and r.ok and r.manifest]
    if pipe_ok and not a.scaling:
        med = median_run(pipe_ok)
        emit(f"\n## Pipeline stages (median run: round {med.round}, {med.wall_s:.2f} s)\n")
        emit(stage_table(med.manifest or {}))
    if check_wanted and ref_label is None:
        emit("\nCorrectness check: SKIPPED (no reference peer; run with --peers polars)")
    if checks:
        emit("\n## Correctness check (after round 1)\n")
    for ch in checks:
        emit(
            f"- **{ch.verdict}** {ch.contender} vs {ch.reference}: rows {ch.rows} vs {ch.ref_rows}, rejected"
            f" {ch.rejected} vs {ch.ref_rejected} (output rows {ch.output_rows} vs {ch.ref_output_rows})"
        )
        for line in ch.details:
            emit(f"    {line}")
    failures = [r for r in runs if not r.ok]
    if failures:
        emit("\n## Failed runs\n")
    for r in failures:
        emit(f"- {r.label} round {r.round}: {r.error}")
        emit(f"  command: `{shlex.join(r.cmd)}`; logs: {r.log_prefix}.*")
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out = BENCH_DIR / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "started": started.isoformat(),
        "command": command,
        "args": vars(a),
        "machine": info,
        "dataset": asdict(dataset),
        "summary": summary,
        "checks": [asdict(c) for c in checks],
        "runs": [{**asdict(r), "label": r.label} for r in runs],
    }
    out.write_text(json.dumps(payload, indent=2, default=str))
    emit(f"\nload avg at end: {info['loadavg_end']}; raw results: {out.relative_to(REPO)}")
    return 1 if failures or any(c.verdict != "MATCH" for c in checks) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``."""
    a = parse_args(argv)
    try:
        return run_benchmark(a)
    except SetupError as exc:
        log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
