"""Per-stage timing: the summary numbers, the verdicts, the bottleneck, the advice and the queue hints
under the table; the timeline and the samples the report draws."""

from __future__ import annotations

import time

from pipeline.diagnostics.stats import (
    RunStats,
    Samples,
    StageStats,
    Timeline,
    _workers_text,
    advice,
    bottleneck,
    format_table,
    judge,
    manifest_table,
    queue_hints,
)
from pipeline.output.manifest import MachineReadings, Stage, as_manifest


def stage(workers: int, wall: float, busy: float, wait_in: float, blocked: float) -> Stage:
    """A stage's summary as the manifest stores it (the counters a hint looks at, the rest filled)."""
    return {
        "workers": workers,
        "executor": "thread",
        "items_in": 120,
        "items_out": 120,
        "lines": 1_000_000,
        "bytes": 179_000_000,
        "wall_s": wall,
        "busy_s": busy,
        "wait_in_s": wait_in,
        "blocked_out_s": blocked,
        "cpu_s": busy * 0.7,
        "utilization": busy / (workers * wall),
        "lines_per_s": int(1_000_000 / wall),
        "mb_per_s": 179 / wall,
    }


Counters = tuple[int, float, float, float, float]


def run(read: Counters, parse: Counters, write: Counters) -> dict[str, Stage]:
    """A run's stages from (workers, wall, busy, wait in, blocked) of each."""
    return {"read": stage(*read), "parse": stage(*parse), "write": stage(*write)}


# Stage tables of real 1M-line runs of laptop.toml on 2 cores (BENCHMARKS.md): with
# parse.queue_depth = 2 the workers stopped whenever the writer encoded a row group...
SHALLOW = run((2, 0.92, 0.20, 0.00, 1.62), (2, 0.95, 1.52, 0.01, 0.32), (1, 0.96, 0.67, 0.31, 0.00))
# ... and with 8 they did not.
DEEP = run((2, 0.84, 0.16, 0.00, 1.52), (2, 0.88, 1.56, 0.00, 0.05), (1, 0.87, 0.75, 0.14, 0.00))


def test_hint_for_a_queue_that_fills_and_empties() -> None:
    hints = queue_hints(SHALLOW)
    assert len(hints) == 1
    assert "parse.queue_depth" in hints[0]
    assert "0.32 s" in hints[0] and "0.31 s" in hints[0]
    assert hints[0] in format_table(SHALLOW).splitlines()


def test_no_hint_when_the_queue_is_deep_enough() -> None:
    assert queue_hints(DEEP) == []
    assert "hint" not in format_table(DEEP)


def test_a_faster_stage_that_blocks_gets_no_hint() -> None:
    # the readers block 1.6 s on a full chunk queue in both runs, but parse never waits for chunks:
    # reading is simply faster than parsing, and a deeper read queue would change nothing
    assert not any("read.queue_depth" in h for h in queue_hints(SHALLOW))
    starved = SHALLOW | {"parse": stage(2, 0.95, 1.20, 0.30, 0.32)}
    assert any("read.queue_depth" in h for h in queue_hints(starved))


def test_no_hint_for_a_little_blocking() -> None:
    # cron.toml on 2 cores (4 MiB chunks, a queue of 4): parse blocked 7% of its time; twice the
    # queue made no measurable difference (1244 against 1243 ms)
    little = run((2, 0.78, 0.30, 0.00, 1.15), (2, 0.90, 1.60, 0.01, 0.13), (1, 0.87, 0.68, 0.28, 0.00))
    assert queue_hints(little) == []


def test_no_hint_for_start_and_end_effects_of_a_short_run() -> None:
    # a tiny input: the writer waits for the first batch for most of its short life
    tiny = run((2, 0.03, 0.05, 0.00, 0.00), (2, 0.04, 0.03, 0.01, 0.02), (1, 0.02, 0.01, 0.04, 0.00))
    assert queue_hints(tiny) == []


def test_bottleneck_is_the_busiest_stage_for_its_workers() -> None:
    assert bottleneck(SHALLOW) == "parse"
    assert bottleneck(SHALLOW | {"write": stage(1, 0.96, 0.95, 0.0, 0.0)}) == "write"


def measured(
    workers: int, executor: str, wall: float, busy: float, wait: float, blocked: float, cpu: float, items: int
) -> Stage:
    """A stage as the manifest stores it before the verdict, from the counters a verdict looks at."""
    return stage(workers, wall, busy, wait, blocked) | {"executor": executor, "cpu_s": cpu, "items_in": items}


# Two real 1M-line runs of laptop.toml on this 2-core machine, parse on processes and then on threads
# (the same command with --set parse.executor=...): the stage tables' counters and the machine's.
PROCESSES = {
    "read": measured(2, "thread", 1.02, 0.18, 0.00, 1.84, 0.12, 104),
    "parse": measured(2, "process", 1.05, 1.89, 0.00, 0.05, 1.31, 104),
    "write": measured(1, "thread", 1.05, 0.81, 0.27, 0.00, 0.40, 104),
}
PROCESSES_MACHINE: MachineReadings = {"cores": 2, "cores_busy": 0.955, "main_cores": 0.662}
THREADS = {
    "read": measured(2, "thread", 1.94, 0.17, 0.00, 3.60, 0.11, 104),
    "parse": measured(2, "thread", 2.01, 3.97, 0.00, 0.00, 1.74, 104),
    "write": measured(1, "thread", 1.97, 1.08, 0.96, 0.00, 0.41, 104),
}
THREADS_MACHINE: MachineReadings = {"cores": 2, "cores_busy": 0.964, "main_cores": 1.13}


def test_parse_on_processes_is_cpu_bound_and_the_readers_are_blocked_behind_it() -> None:
    stages = judge(PROCESSES, PROCESSES_MACHINE)
    assert {name: s["bound"] for name, s in stages.items()} == {
        "read": "blocked",
        "parse": "cpu",
        "write": "cpu",
    }
    assert bottleneck(stages) == "parse"
    assert "cores were 96% busy" in stages["parse"]["evidence"]
    assert advice(stages, 2) == ["parse is cpu-bound on all 2 cores: more cores would help"]
    assert advice(stages, 8) == ["parse is cpu-bound: raise parse.workers (now 2; 8 cores)"]


def test_parse_on_threads_is_gil_bound_and_the_advice_is_processes() -> None:
    stages = judge(THREADS, THREADS_MACHINE)
    assert {name: s["bound"] for name, s in stages.items()} == {
        "read": "blocked",
        "parse": "gil",
        "write": "gil",
    }
    assert bottleneck(stages) == "parse"
    # one line: the writer waits for the GIL the parse threads hold, and processes cure both
    assert advice(stages, 2) == [
        'parse is gil-bound on 2 threads: set parse.executor = "process" (one GIL per process)'
    ]
    # the same counters from processes are no GIL's doing
    as_processes = THREADS | {"parse": THREADS["parse"] | {"executor": "process"}}
    assert judge(as_processes, THREADS_MACHINE)["parse"]["bound"] == "cpu"


def test_a_stage_waiting_off_the_cpu_on_an_idle_machine_is_io_bound() -> None:
    # eight read threads on a slow source: 10 s busy, a few hundredths of it on a CPU
    slow = PROCESSES | {"read": measured(8, "thread", 2.0, 15.0, 0.0, 0.2, 0.05, 40)}
    idle: MachineReadings = {"cores": 2, "cores_busy": 0.2, "main_cores": 0.05}
    stages = judge(slow, idle)
    assert stages["read"]["bound"] == "io" and bottleneck(stages) == "read"
    assert advice(stages, 2)[0] == "read is io-bound: raise read.workers (now 8) to overlap more waits"
    # the same readers behind a busier parse: waiting on I/O, but more of them would wait on the parse
    behind = judge(slow | {"parse": measured(2, "process", 2.0, 3.98, 0.0, 0.0, 3.9, 40)}, idle)
    assert behind["read"]["bound"] == "io" and bottleneck(behind) == "parse"
    assert not any(line.startswith("read") for line in advice(behind, 2))
    # asleep 99% of the time is no queue for a core, even on a busy machine
    assert judge(slow, {"cores": 2, "cores_busy": 0.97, "main_cores": 0.05})["read"]["bound"] == "io"
    # half the time off a CPU while every core was busy was a wait for a core
    queued = PROCESSES | {"read": measured(2, "thread", 2.0, 3.8, 0.0, 0.0, 1.9, 40)}
    assert judge(queued, {"cores": 2, "cores_busy": 0.97, "main_cores": 0.6})["read"]["bound"] == "cpu"
    assert judge(queued, {"cores": 2, "cores_busy": 0.4, "main_cores": 0.6})["read"]["bound"] == "io"


def test_worker_processes_off_a_cpu_wait_for_a_core_not_for_io() -> None:
    # 8 read threads on a slow source (20 ms a block): the machine 84% busy, the parse processes on a
    # CPU 73% of their busy time
    stages = PROCESSES | {"parse": measured(2, "process", 1.90, 2.39, 0.60, 0.13, 1.75, 624)}
    judged = judge(stages, {"cores": 2, "cores_busy": 0.84, "main_cores": 0.6})
    assert judged["parse"]["bound"] == "cpu" and "waiting for a core" in judged["parse"]["evidence"]


def test_a_starved_stage_is_not_the_bottleneck() -> None:
    starved = PROCESSES | {
        "read": measured(1, "thread", 3.0, 2.9, 0.0, 0.0, 2.8, 40),
        "parse": measured(2, "process", 3.0, 3.0, 2.2, 0.0, 2.9, 40),
    }
    stages = judge(starved, PROCESSES_MACHINE)
    assert stages["parse"]["bound"] == "starved"
    # parse's utilization (50%) is below read's (97%) anyway; starved also takes it out of the running
    stages["parse"]["utilization"] = 0.99
    assert bottleneck(stages) == "read"


def test_a_short_run_names_no_bottleneck() -> None:
    # a 10,000-line run: its busiest stage was write once and parse the next time
    tiny = {
        "read": measured(2, "thread", 0.03, 0.04, 0.0, 0.0, 0.02, 5),
        "parse": measured(2, "process", 0.04, 0.04, 0.0, 0.0, 0.03, 5),
        "write": measured(1, "thread", 0.03, 0.02, 0.04, 0.0, 0.01, 5),
    }
    stages = judge(tiny, PROCESSES_MACHINE)
    assert {s["bound"] for s in stages.values()} == {"short"}
    assert bottleneck(stages) is None
    table = format_table(stages, 2)
    assert "bottleneck: none named" in table and "run on more input" in table


def test_the_table_shows_each_verdict_and_the_advice() -> None:
    lines = format_table(judge(THREADS, THREADS_MACHINE), 2).splitlines()
    assert lines[0].split()[-1] == "bound"
    assert [row.split()[-1] for row in lines[2:5]] == ["blocked", "gil", "gil"]
    assert lines[5].startswith("bottleneck: parse (2 threads on a CPU only 44%")
    assert lines[6].startswith("parse is gil-bound")


def test_timeline_joins_continuing_intervals_and_skips_instant_waits() -> None:
    t = Timeline(t0=100.0)
    t.add("write", "write-0", "wait", 100.0, 100.5)
    t.add("write", "write-0", "busy", 100.5, 101.0)
    t.add("write", "write-0", "busy", 101.0, 101.2)  # the same state continued
    t.add("write", "write-0", "wait", 101.2, 101.20001)  # a queue that answered at once
    t.add("parse", "pid 7", "busy", 100.1, 100.3)
    t.add("parse", "pid 7", "busy", 100.6, 100.9)
    t.add("parse", "collect", "blocked", 100.2, 100.4)  # a lane that reports its states: gaps stay gaps
    t.add("parse", "collect", "blocked", 100.7, 100.8)
    lanes = t.lanes()
    assert [(lane["stage"], lane["worker"]) for lane in lanes] == [
        ("parse", "collect"),
        ("parse", "pid 7"),
        ("write", "write-0"),
    ]
    assert lanes.pop(0)["intervals"] == [[0.2, 0.4, "blocked"], [0.7, 0.8, "blocked"]]
    # a worker process cannot report its idle time: the gaps between its chunks are its waits
    assert lanes[0]["intervals"] == [[0.1, 0.3, "busy"], [0.3, 0.6, "wait"], [0.6, 0.9, "busy"]]
    assert lanes[1]["intervals"] == [[0.0, 0.5, "wait"], [0.5, 1.2, "busy"]]


def test_timeline_memory_is_bounded_by_halving_a_full_lane() -> None:
    t = Timeline(t0=0.0, max_per_lane=100)
    for k in range(10_000):
        t.add("read", "read_0", "busy" if k % 2 else "blocked", k, k + 0.9)
    (lane,) = t.lanes()
    assert 50 <= len(lane["intervals"]) < 100
    assert lane["intervals"][0][0] == 0.0 and lane["intervals"][-1][1] == 9999.9  # still the whole run


def test_samples_thin_out_and_slow_down_when_full() -> None:
    samples = Samples(t0=0.0, period=0.1, max_samples=10)
    for k in range(25):
        samples.take(k * 0.1, (k, k, k, 1, 2))
    d = samples.to_dict(chunk_queue_max=4, result_queue_max=8)
    assert 5 <= len(d["t"]) < 10 and samples.period > 0.1
    assert d["t"] == sorted(d["t"]) and d["read_lines"][0] == 0
    assert d["chunk_queue_max"] == 4 and set(d["result_queue"]) == {2}


def test_summary_of_counted_stages() -> None:
    stats = RunStats()
    parse: StageStats = stats.stage("parse")
    parse.workers = 2
    parse.start()
    parse.add(busy_s=1.0, cpu_s=0.8, blocked_out_s=0.25, items_in=3, items_out=3, lines=300, bytes=600)
    time.sleep(0.01)
    parse.finish()
    s = stats.summary(run_wall_s=1.0)["parse"]
    assert (s["items_in"], s["items_out"], s["busy_s"], s["cpu_s"], s["blocked_out_s"]) == (
        3,
        3,
        1.0,
        0.8,
        0.25,
    )
    assert s["utilization"] == 0.5  # busy / (workers x run wall)
    assert s["wall_s"] >= 0.01
    assert abs(s["lines_per_s"] - 300 / s["wall_s"]) < 0.01 * s["lines_per_s"]  # wall_s is rounded


def test_worker_counts_name_the_executor() -> None:
    assert _workers_text(2, "dask") == "2 Dask workers"
    assert _workers_text(1, "dask") == "1 Dask worker"
    assert _workers_text(2, "process") == "2 processes"
    assert _workers_text(1, "inline") == "1 inline worker"


def test_a_run_on_an_external_dask_cluster_is_not_told_to_raise_parse_workers() -> None:
    on_dask = PROCESSES | {"parse": PROCESSES["parse"] | {"executor": "dask"}}
    stages = judge(on_dask, PROCESSES_MACHINE)
    assert stages["parse"]["bound"] == "cpu" and "2 Dask workers" in stages["parse"]["evidence"]
    # a LocalCluster runs parse.workers processes on this machine: more of them may help
    assert advice(stages, 8) == ["parse is cpu-bound: raise parse.workers (now 2; 8 cores)"]
    # a cluster has the workers it has, whatever parse.workers says
    remote = advice(stages, 8, cluster=True)
    assert remote == ["parse is cpu-bound on the Dask cluster's 2 Dask workers: add workers to the cluster"]
    config = {"parse": {"executor": "dask", "address": "tcp://10.0.0.5:8786"}}
    table = manifest_table(as_manifest({"stages": stages, "machine": {"cores": 8}, "config": config}))
    assert "add workers to the cluster" in table and "raise parse.workers" not in table


def test_gil_bound_readers_beside_parse_processes_are_not_told_to_use_processes() -> None:
    # the readers hold the GIL among themselves and the writer: the parse is in processes already
    readers = PROCESSES | {"read": measured(8, "thread", 2.0, 12.0, 0.0, 0.5, 3.0, 104)}
    stages = judge(readers, {"cores": 2, "cores_busy": 0.7, "main_cores": 1.2})
    assert stages["read"]["bound"] == "gil"
    lines = advice(stages, 2)
    assert not any("parse.executor" in line for line in lines), lines
    assert any(x.startswith("read is gil-bound") and "fewer read.workers (now 8)" in x for x in lines)
    # with the parse on threads, moving it out of the process is still the advice
    on_threads = readers | {"parse": readers["parse"] | {"executor": "thread", "cpu_s": 1.89}}
    threads = judge(on_threads, {"cores": 2, "cores_busy": 0.7, "main_cores": 1.2})
    assert threads["read"]["bound"] == "gil"
    assert any('parse.executor = "process"' in line for line in advice(threads, 2))


def test_a_share_of_a_stages_time_is_never_over_all_of_it() -> None:
    # the writer waits for the first batch before its wall starts: more waiting than wall
    late = PROCESSES | {"write": measured(1, "thread", 1.0, 0.1, 1.06, 0.0, 0.08, 104)}
    write = judge(late, PROCESSES_MACHINE)["write"]
    assert write["bound"] == "starved"
    assert write["wait_share"] <= 1.0 and "waited for input 91% of its time" in write["evidence"]
    # the parse's wait is measured on one thread against its wall
    starved = PROCESSES | {"parse": measured(2, "process", 1.0, 0.4, 1.2, 0.0, 0.3, 104)}
    parse = judge(starved, PROCESSES_MACHINE)["parse"]
    assert parse["wait_share"] == 1.0 and "100% of its time" in parse["evidence"]


def test_a_verdict_that_blames_the_machine_says_how_much_of_it_the_run_used() -> None:
    # every core busy, but the run itself used about 0.7 of them: other processes took the rest
    quiet = {
        "read": measured(2, "thread", 2.0, 0.4, 0.0, 3.0, 0.2, 104),
        "parse": measured(2, "process", 2.0, 3.8, 0.0, 0.05, 1.0, 104),
        "write": measured(1, "thread", 2.0, 0.6, 1.2, 0.0, 0.2, 104),
    }
    busy: MachineReadings = {"cores": 2, "cores_busy": 1.0, "main_cores": 0.2}
    stages = judge(quiet, busy)
    evidence = stages["parse"]["evidence"]
    assert stages["parse"]["bound"] == "cpu"
    assert "2 cores were 100% busy, 0.70 of them with this run (other processes took the rest)" in evidence
    assert advice(stages, 2, busy) == [
        "parse is cpu-bound on all 2 cores, but this run used 0.70 of them: other processes took the "
        "rest; a quieter machine or more cores would help"
    ]
    # the run itself busy on both cores: the machine is what it needs more of
    own = quiet | {"parse": measured(2, "process", 2.0, 3.8, 0.0, 0.05, 2.8, 104)}
    mine = judge(own, busy)
    assert "with this run" in mine["parse"]["evidence"] and "other processes" not in mine["parse"]["evidence"]
    assert advice(mine, 2, busy) == ["parse is cpu-bound on all 2 cores: more cores would help"]
