"""The run's manifest (``manifest.json``, ``last-run.json``): its types, and the one place it is built.

The manifest is JSON: a run writes it, and ``logpipe report``, the summary and the diagnostics read it
back, possibly years later and from an older logpipe. Its types are therefore ``TypedDict``\\ s: a
record read from disk is used as it is (no conversion that an older or newer record could fail), mypy
checks every key a reader names, and a key that older records lack is ``NotRequired`` so that a reader
must say what it does without it. ``docs/manifest.schema.json`` describes the same structure and a test
validates real runs' manifests against it (``docs/manifest.md``).

``schema_version`` counts changes of this structure; ``version`` is logpipe's own version (records
written before ``schema_version`` existed have only that one).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from pipeline import __version__
from pipeline.output.dataset import read_json
from pipeline.output.layout import Layout

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.diagnostics.stats import RunStats
    from pipeline.output.record import RunRecord

SCHEMA_VERSION = 1


class Stage(TypedDict):
    """One stage's numbers (:meth:`pipeline.diagnostics.stats.StageStats.summary`) and its verdict
    (:func:`pipeline.diagnostics.stats.judge`)."""

    workers: int
    executor: str
    items_in: int
    items_out: int
    lines: int
    bytes: int
    wall_s: float
    busy_s: float
    wait_in_s: float
    blocked_out_s: float
    cpu_s: float
    utilization: float
    lines_per_s: float
    mb_per_s: float
    wait_share: NotRequired[float]
    blocked_share: NotRequired[float]
    cpu_per_busy_s: NotRequired[float]
    cores_used: NotRequired[float]
    bound: NotRequired[str]
    evidence: NotRequired[str]


class MachineReadings(TypedDict):
    """What the whole machine did while the stages ran (:class:`pipeline.diagnostics.stats.Machine`)."""

    cores: int
    cores_busy: float
    main_cores: float


class Input(TypedDict):
    """One input: what the reader saw and what became of its lines
    (:class:`pipeline.output.record.FileCounts`)."""

    path: str
    compression: str
    size: int
    bytes_read: int
    lines: int
    chunks: int
    error: str | None
    end_offset: int
    held_bytes: int
    rows: int
    rejected: int
    filtered: int
    skipped: NotRequired[int]
    format: str
    mode: str
    first_line: int


class Output(TypedDict):
    """A Parquet file this run wrote (:class:`pipeline.stages.write.WrittenFile`)."""

    path: str
    rows: int
    date: str | None


class PreviousRun(TypedDict):
    """The committed run a run that did not commit left in place."""

    run_id: str | None
    status: str | None
    finished_at: str | None
    rows: int | None


class Manifest(TypedDict):
    """A run's manifest. The keys every record has are required; the rest are ``NotRequired``: a run
    that did not commit has no dataset section, and older records lack later additions."""

    program: str
    version: str
    schema_version: NotRequired[int]
    run_id: str
    status: str
    committed: bool
    exit_code: NotRequired[int]
    error: str | None
    signal: NotRequired[int]
    started_at: str
    finished_at: str
    wall_s: float
    lines: int
    rows: int
    rejected: int
    filtered: NotRequired[int]
    skipped: NotRequired[int]
    reject_reasons: dict[str, int]
    inputs: list[Input]
    failed_inputs: list[str]
    dataset: str
    meta_dir: str
    dataset_id: NotRequired[str]
    outputs: list[Output]
    rejects: NotRequired[list[str]]
    dataset_rows: NotRequired[int]
    dataset_files: NotRequired[int]
    rebuilt: NotRequired[str | None]
    previous_run: NotRequired[PreviousRun]
    stages: dict[str, Stage]
    bottleneck: NotRequired[str | None]
    advice: NotRequired[list[str]]
    queue_hints: NotRequired[list[str]]
    machine: NotRequired[MachineReadings]
    auto: NotRequired[dict[str, int]]
    transforms: NotRequired[dict[str, float]]
    config: dict[str, Any]


class Extras(TypedDict):
    """What only the report draws (``report.json``, ``last-report.json``; ``pipeline.report.data``)."""

    timeline: dict[str, Any]  # {"lanes": [{"stage", "worker", "intervals": [[start, end, kind]]}]}
    samples: dict[str, Any]  # columns over time (pipeline.diagnostics.stats.Samples.to_dict)
    reject_examples: list[dict[str, Any]]  # {"file", "line", "reason", "raw"}
    panels: dict[str, Any] | None  # pipeline.report.panels.Panels.to_dict, when collected


@dataclass(frozen=True)
class RunFacts:
    """What a run knows when its manifest is built: its counts, timings, settings and dataset."""

    record: "RunRecord"
    stats: "RunStats"
    layout: Layout
    config: "Config"
    started: datetime
    finished: datetime
    wall_s: float
    auto: Mapping[str, int] = field(default_factory=dict)  # what workers = "auto" chose
    transform_s: Mapping[str, float] = field(default_factory=dict)  # seconds in each transform
    reject_files: Sequence[str] = ()  # under the record's rejects directory
    dataset_rows: int = 0  # what the dataset holds once the run commits
    dataset_files: int = 0
    rebuilt: str | None = None  # why an incremental run rebuilt the dataset in full


def cluster(manifest: Mapping[str, Any]) -> bool:
    """Whether the run parsed on an external Dask cluster (``parse.address``), whose workers no
    setting of the run changes."""
    parse = (manifest.get("config") or {}).get("parse") or {}
    return parse.get("executor") == "dask" and bool(parse.get("address"))


def build(
    facts: "RunFacts",
    *,
    status: str,
    exit_code: int,
    committed: bool,
    outputs: Sequence[Mapping[str, Any]] = (),
    error: BaseException | None = None,
) -> Manifest:
    """The manifest of a run that ended with ``status`` (a committed run: the files it wrote)."""
    from pipeline.diagnostics.stats import advice, bottleneck, queue_hints
    from pipeline.inputs.remote import redact_config

    record, stats, layout = facts.record, facts.stats, facts.layout
    stages = stats.summary(facts.wall_s)
    machine = stats.machine.summary()
    inputs = _inputs(record)
    config = redact_config(facts.config.model_dump())  # storage_options' values: credentials
    manifest: Manifest = {
        "program": "logpipe",
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "run_id": record.run_id,
        "status": status,
        "committed": committed,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "started_at": facts.started.isoformat(),
        "finished_at": facts.finished.isoformat(),
        "wall_s": round(facts.wall_s, 4),
        "lines": record.lines,
        "rows": record.rows,
        "rejected": record.rejected,
        "filtered": record.filtered,
        "skipped": record.skipped,
        "reject_reasons": dict(sorted(record.reject_reasons.items(), key=lambda kv: -kv[1])),
        "inputs": cast("list[Input]", inputs),
        "failed_inputs": record.failed_inputs(),
        "dataset": str(layout.output),
        "meta_dir": str(layout.meta),
        "outputs": cast("list[Output]", list(outputs)),
        "stages": stages,
        "auto": dict(facts.auto),
        "exit_code": exit_code,
        "rejects": [str(layout.rejects / f) for f in facts.reject_files] if committed else [],
        "transforms": {name: round(s, 4) for name, s in facts.transform_s.items()},
        "bottleneck": bottleneck(stages),
        "advice": advice(stages, stats.machine.cores, machine, cluster({"config": config})),
        "queue_hints": queue_hints(stages),
        "machine": machine,
        "config": config,
    }
    _add_dataset_or_previous(manifest, facts, committed)
    # the settings last: the record reads from the outcome down to what produced it
    return cast("Manifest", {k: v for k, v in manifest.items() if k != "config"} | {"config": config})


def _inputs(record: "RunRecord") -> list[dict[str, Any]]:
    """Each input's counts, then the inputs that went missing (with their error)."""
    from pipeline.output.record import FileCounts

    inputs = [c.to_dict() for c in record.counts]
    inputs += [FileCounts(m.path, error=m.error).to_dict() for m in record.missing]
    return inputs


def _add_dataset_or_previous(manifest: Manifest, facts: "RunFacts", committed: bool) -> None:
    """A committed run: the dataset it leaves. Any other: the run whose dataset is still there."""
    if committed:
        manifest["dataset_rows"] = facts.dataset_rows
        manifest["dataset_files"] = facts.dataset_files
        manifest["rebuilt"] = facts.rebuilt
    elif (previous := read_json(facts.layout.manifest)) is not None:
        manifest["previous_run"] = {
            "run_id": previous.get("run_id"),
            "status": previous.get("status"),
            "finished_at": previous.get("finished_at"),
            "rows": previous.get("rows"),
        }


def as_manifest(data: Mapping[str, Any]) -> Manifest:
    """A manifest as a run returns it or as read from a record (of this logpipe or an older one): the
    same object, typed. Nothing is converted, so a record this version does not know still reads; its
    readers treat a ``NotRequired`` key as possibly absent."""
    if not isinstance(data.get("stages", {}), dict):
        raise ValueError("not a run record: its stages are not a JSON object")
    return cast("Manifest", data)


def extras(
    stats: "RunStats",
    samples: dict[str, Any],
    reject_examples: list[dict[str, Any]],
    panels: dict[str, Any] | None,
) -> Extras:
    """The report's raw material of a run: its workers' intervals, the samples, reject examples and the
    access-log panels (when collected)."""
    return {
        "timeline": {"lanes": stats.timeline.lanes()},
        "samples": samples,
        "reject_examples": reject_examples,
        "panels": panels,
    }
