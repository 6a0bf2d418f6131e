"""``logpipe profile``: find what bounds each stage on this machine and these logs, and the settings
that fix it.

Within a time budget it runs bounded samples of the real input (the first bytes of the inputs, cut at
a line's end) into a scratch directory, never the configured output. The first sample calibrates: its
speed sizes the next ones so that about :data:`TRIALS_PER_BUDGET` fit in the budget. Then it climbs:
from the best settings so far, each stage's verdict (:func:`pipeline.diagnostics.stats.judge`) proposes a few
changes (processes for a GIL-bound parse, more threads for an I/O-bound read, a deeper queue that a
hint names, other chunk sizes, ...); a change is kept only when it is faster by more than
:data:`MIN_GAIN` (this machine's run-to-run noise). Last, the starting and the tuned settings run
again, alternately, and both medians are reported: the tuned config must be at least as fast as the
one it came from, or the starting one is recommended.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config, MiB, available_cores
from pipeline.diagnostics.stats import STAGES, manifest_table
from pipeline.output.manifest import Manifest, as_manifest

log = logging.getLogger(__name__)

TRIALS_PER_BUDGET = 10
MIN_TRIAL_S = 1.5  # below this a verdict is "short" and timings are mostly start-up
CALIBRATION_BYTES = 48 * MiB
MIN_GAIN = 0.03
CHUNK_CHOICES = (1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB, 16 * MiB)
MAX_WORKERS = 64

Changes = dict[str, Any]  # "section.key" -> value


@dataclass
class Trial:
    """One sample run with some settings changed from the starting config."""

    changes: Changes
    wall_s: float
    lines: int
    manifest: Manifest

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.manifest.get("status") == "ok"


@dataclass
class Profile:
    """The outcome: the baseline's verdicts, every trial, and the recommended changes."""

    start: Config
    budget_bytes: int
    baseline: Trial
    trials: list[Trial] = field(default_factory=list)
    best: Changes = field(default_factory=dict)
    confirm: dict[str, list[float]] = field(default_factory=dict)  # "start"/"tuned" -> walls

    def tuned(self) -> Config:
        """The starting config with the recommended changes."""
        return apply(self.start, self.best)


def apply(cfg: Config, changes: Changes) -> Config:
    """A copy of ``cfg`` with ``changes`` applied (validated like the config file)."""
    data = cfg.model_dump()
    for key, value in changes.items():
        section, name = key.split(".")
        data[section][name] = value
    return Config.model_validate(data)


def setting(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def run_profile(
    cfg: Config,
    budget_s: float,
    on_trial: Callable[[Trial], None] = lambda t: None,
) -> Profile:
    """Profile ``cfg`` within about ``budget_s`` seconds (see the module's docstring)."""
    deadline = time.monotonic() + budget_s
    with tempfile.TemporaryDirectory(prefix="logpipe-profile-") as scratch:
        runs = _Sampler(_scratch_config(cfg, scratch), deadline, on_trial)
        prof = _calibrate(cfg, runs, budget_s)
        best, best_walls = _climb(runs, prof)
        prof.best = dict(best.changes)
        if prof.best:
            _confirm(runs, prof, best, best_walls)
        return prof


def _scratch_config(cfg: Config, scratch: str) -> Config:
    """``cfg`` writing into ``scratch`` and nothing else: no run record, no report, no progress."""
    base = cfg.model_copy(deep=True)
    base.run.output = str(Path(scratch) / "out")
    base.run.meta_dir = ""
    base.run.incremental = False
    base.run.report = ""
    base.run.progress = "off"
    return base


@dataclass
class _Sampler:
    """Sample runs of the scratch config ``base`` with some settings changed, until ``deadline``."""

    base: Config
    deadline: float  # time.monotonic()
    on_trial: Callable[[Trial], None]

    def trial(self, changes: Changes, sample: int) -> Trial:
        """A run of the first ``sample`` bytes of the inputs."""
        from pipeline.runner import run_pipeline

        t0 = time.perf_counter()
        result = run_pipeline(apply(self.base, changes), budget_bytes=sample)
        wall = time.perf_counter() - t0
        manifest = as_manifest(result.manifest)
        t = Trial(changes, wall, manifest["lines"], manifest)
        self.on_trial(t)
        return t

    def time_left(self, runs: int, wall_s: float) -> bool:
        """Whether ``runs`` more runs of ``wall_s`` each end before the deadline."""
        return time.monotonic() + runs * wall_s < self.deadline


def _calibrate(cfg: Config, runs: _Sampler, budget_s: float) -> Profile:
    """The profile with its baseline: a first run sizes the samples so that about
    :data:`TRIALS_PER_BUDGET` fit in the budget, then the baseline runs at that size."""
    first = runs.trial({}, CALIBRATION_BYTES)
    if not first.ok:
        raise ProfileError(f"the starting config's sample run ended with status {first.manifest['status']}")
    read_bytes = first.manifest["stages"]["read"]["bytes"]
    per_trial = max(MIN_TRIAL_S, budget_s / TRIALS_PER_BUDGET)
    speed = read_bytes / first.wall_s if first.wall_s > 0 else float(CALIBRATION_BYTES)
    sample = max(CALIBRATION_BYTES, int(speed * per_trial))
    exhausted = read_bytes < CALIBRATION_BYTES  # the whole input fit in the calibration sample
    baseline = first if exhausted else runs.trial({}, sample)
    return Profile(cfg, read_bytes if exhausted else sample, baseline, trials=[baseline])


def _climb(runs: _Sampler, prof: Profile) -> tuple[Trial, list[float]]:
    """From the baseline, take the first proposed change that is faster, again and again, while there
    is time: the best trial and its walls."""
    best, best_walls = prof.baseline, [prof.baseline.wall_s]
    tried: set[tuple[tuple[str, Any], ...]] = {()}
    while runs.time_left(1, best.wall_s):
        candidates = [
            c
            for c in proposals(apply(runs.base, best.changes), best.manifest)
            if _key(best.changes | c) not in tried
        ]
        improved = False
        for change in candidates:
            if not runs.time_left(1, best.wall_s):
                break
            changes = best.changes | change
            tried.add(_key(changes))
            faster = _faster(runs, prof, best, best_walls, changes)
            if faster is not None:
                (best, best_walls), improved = faster, True
                break  # re-read the verdicts of the new best before proposing more
        if not improved:
            break
    return best, best_walls


def _faster(
    runs: _Sampler, prof: Profile, best: Trial, best_walls: list[float], changes: Changes
) -> tuple[Trial, list[float]] | None:
    """Trials of ``changes`` (added to ``prof``): the new best and its walls when faster than ``best``
    by more than :data:`MIN_GAIN`, else None. ``best_walls`` gets the best's runs made to compare."""
    t = runs.trial(changes, prof.budget_bytes)
    prof.trials.append(t)
    if not t.ok or t.wall_s > statistics.median(best_walls) * 1.25 or not runs.time_left(2, best.wall_s):
        return None  # clearly slower (or no time to check it): not worth a second look
    # one run each is within this machine's noise: run both again, alternately
    prof.trials.append(runs.trial(best.changes, prof.budget_bytes))
    best_walls.append(prof.trials[-1].wall_s)
    again = runs.trial(changes, prof.budget_bytes)
    prof.trials.append(again)
    walls = [t.wall_s, again.wall_s]
    if statistics.median(walls) < statistics.median(best_walls) * (1 - MIN_GAIN):
        return again, walls
    return None


def _confirm(runs: _Sampler, prof: Profile, best: Trial, best_walls: list[float]) -> None:
    """Run the starting and the tuned settings again, alternately, into ``prof.confirm``; keep the
    starting config (``prof.best`` empty) when the tuned one is not faster side by side."""
    confirm: dict[str, list[float]] = {"start": [], "tuned": []}
    while runs.time_left(3, best.wall_s) and len(confirm["start"]) < 3:
        for name, changes in (("start", {}), ("tuned", prof.best)):
            prof.trials.append(runs.trial(changes, prof.budget_bytes))
            confirm[name].append(prof.trials[-1].wall_s)
    if not confirm["start"]:  # no time left to confirm: the runs already made
        confirm = {"start": [prof.baseline.wall_s], "tuned": best_walls}
    prof.confirm = confirm
    if statistics.median(confirm["tuned"]) >= statistics.median(confirm["start"]):
        prof.best = {}  # not faster when measured side by side: keep the starting config


class ProfileError(RuntimeError):
    """The profile cannot go on (the starting config's sample run did not succeed)."""


def _key(changes: Changes) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(changes.items()))


def proposals(cfg: Config, manifest: Manifest) -> list[Changes]:
    """Changes worth a trial, from each stage's verdict in ``manifest`` (a run of ``cfg``), the most
    promising first."""
    stages = manifest["stages"]
    cores = available_cores()
    out: list[Changes] = []
    parse = stages["parse"]
    if parse.get("bound") == "gil" or (
        parse["executor"] != "process" and parse.get("bound") in ("cpu", "short")
    ):
        out.append({"parse.executor": "process", "parse.workers": cores})
    if parse.get("bound") == "cpu" and parse["executor"] == "process" and parse["workers"] < cores:
        out.append({"parse.workers": cores})
    for name in ("read", "write"):
        workers, bound = stages[name]["workers"], stages[name].get("bound")
        # more threads help only the stage that holds the others back
        if bound in ("io", "cpu") and manifest.get("bottleneck") == name:
            out += [{f"{name}.workers": min(MAX_WORKERS, workers * k)} for k in (2, 4)]
        # threads that take turns holding the GIL, the parse already out of the process: fewer of them
        if bound == "gil" and parse["executor"] not in ("thread", "inline") and workers > 1:
            out += [{f"{name}.workers": n} for n in dict.fromkeys((max(1, workers // 2), 1))]
    for hint in manifest.get("queue_hints") or []:
        for key in ("read.queue_depth", "parse.queue_depth"):
            if key in hint:
                out.append({key: min(1024, setting(cfg, key) * 2)})
    chunk = cfg.read.chunk_bytes
    out += [{"read.chunk_bytes": c} for c in CHUNK_CHOICES if c in (chunk // 2, chunk * 2)]
    return out


def report(prof: Profile) -> str:
    """What ``logpipe profile`` prints: the verdicts and evidence, the trials, the recommendation."""
    base = prof.baseline.manifest
    lines = [
        f"sample: {prof.budget_bytes / MiB:.0f} MiB of the input per run "
        f"({prof.baseline.lines:,} lines), {len(prof.trials)} runs",
        "",
        "the starting config:",
        manifest_table(base),
        "",
        "what bounds each stage:",
    ]
    lines += [
        f"  {name:5}  {stage.get('bound', ''):7}  {stage.get('evidence', '')}"
        for name, stage in ((n, base["stages"][n]) for n in STAGES)
    ]
    lines += ["", f"runs (each a sample; a change is kept when it is more than {MIN_GAIN:.0%} faster):"]
    for t in prof.trials:
        what = ", ".join(f"{k}={v}" for k, v in t.changes.items()) or "starting config"
        lines.append(f"  {t.wall_s:6.2f} s  {t.lines_per_s:12,.0f} lines/s  {what}")
    lines.append("")
    if prof.best:
        start, tuned = prof.start.resolved(), prof.tuned().resolved()
        changed = [k for k in prof.best if setting(start, k) != setting(tuned, k)]
        width = max((len(k) for k in changed), default=7)
        lines.append("recommended settings:")
        lines.append(f"  {'setting':{width}}  {'start':>10}  {'tuned':>10}")
        lines += [f"  {k:{width}}  {setting(start, k)!s:>10}  {setting(tuned, k)!s:>10}" for k in changed]
        med = {k: statistics.median(v) for k, v in prof.confirm.items()}
        n = len(prof.confirm["start"])
        lines.append(
            f"side by side ({n} runs each, medians): start {med['start']:.2f} s, tuned {med['tuned']:.2f} s "
            f"({med['start'] / med['tuned']:.2f}x)"
        )
    else:
        lines.append("recommended settings: keep the starting config (no change was faster beyond noise)")
    return "\n".join(lines)


def write_config(prof: Profile, source: Path | None, to: Path) -> None:
    """Write the tuned config to ``to``: the starting file with the changed keys (its comments kept,
    paths made relative to the new file's directory), validated before it is written."""
    import os

    import tomlkit

    from pipeline.config import load_config, map_paths

    doc = tomlkit.parse(source.read_text(encoding="utf-8")) if source else tomlkit.document()
    # every setting the file does not already say: the changes, and the --set overrides the profile
    # started from (the inputs and the output given on the command line stay out: they are the sample's)
    written = load_config(source) if source else Config()
    tuned = prof.tuned()
    for section in ("read", "parse", "write"):
        for name, value in getattr(tuned, section).model_dump(mode="json").items():
            if getattr(getattr(written, section), name) != getattr(getattr(tuned, section), name):
                if section not in doc:
                    doc[section] = tomlkit.table()
                doc[section][name] = value
    if source is not None and "run" in doc:
        run = doc["run"]
        base, new = source.resolve().parent, to.resolve().parent

        def moved(path: str) -> str:
            if not path or "://" in path or os.path.isabs(os.path.expanduser(path)):
                return path
            return os.path.relpath(base / path, new)

        map_paths(run, moved)
    header = f"# tuned by logpipe profile from {source or 'the defaults'}, on this machine and these logs\n"
    text = header + tomlkit.dumps(doc)
    tmp = to.with_name(f".{to.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_config(tmp)  # what validate-config checks
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(to)
