"""The flow between the stages (``pipeline/stages/flow.py``): channels that own their end markers and
give up when the run stops, stage threads that hand their failure to the run, bounded joins."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future

import pytest

from pipeline.diagnostics.stats import RunStats, Samples
from pipeline.errors import Interrupted, StageError
from pipeline.executors import Executor
from pipeline.stages.flow import Channel, RunState, Sampler, StageThreads, Stopped, stage_thread
from pipeline.stages.parse import ParseResult, ParseTask


def test_a_channel_ends_once_for_each_consumer() -> None:
    ch: Channel[int] = Channel(4, RunState(), consumers=3)
    ch.put(1)
    ch.close()
    got = [ch.get() for _ in range(4)]
    assert got == [1, None, None, None]


@pytest.mark.timeout(10)
def test_a_full_channel_gives_up_when_the_run_stops() -> None:
    state = RunState()
    ch: Channel[int] = Channel(1, state)
    ch.put(1)
    threading.Timer(0.2, state.fail, args=(RuntimeError("elsewhere"),)).start()
    with pytest.raises(Stopped):
        ch.put(2)  # blocked: no room until the run stops


@pytest.mark.timeout(10)
def test_an_empty_channel_gives_up_when_the_run_stops() -> None:
    state = RunState()
    ch: Channel[int] = Channel(1, state)
    threading.Timer(0.2, state.stop.set).start()
    with pytest.raises(Stopped):
        ch.get()


def test_the_first_failure_is_the_runs() -> None:
    state = RunState()
    first, second = ValueError("first"), ValueError("second")
    state.fail(first)
    state.fail(second)
    assert state.failure is first and state.stop.is_set()


def _raise(exc: BaseException) -> None:
    raise exc


def test_a_stage_thread_hands_its_failure_to_the_run_and_swallows_a_stop() -> None:
    state = RunState()
    error = StageError("read", "broken")
    for name, exc in (("quiet", Stopped()), ("broken", error)):
        t = stage_thread(state, name, _raise, exc)
        t.start()
        t.join()
        assert state.failure is (None if name == "quiet" else error)


class _Recording(Executor):
    """An executor that records how it was shut down (the stage threads here submit nothing)."""

    workers = 1
    max_in_flight = 1

    def __init__(self) -> None:
        self.shutdowns: list[bool] = []

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        raise AssertionError("not called")

    def shutdown(self, cancel: bool = False) -> None:
        self.shutdowns.append(cancel)


def _sampler(state: RunState) -> Sampler:
    stats = RunStats()
    return Sampler(Samples(stats.started), stats, Channel(1, state), Channel(1, state))


@pytest.mark.timeout(10)
def test_a_run_without_failure_shuts_the_executor_down_once_and_samples() -> None:
    state = RunState()
    threads = StageThreads(state)
    ran: list[str] = []
    threads.add("a", ran.append, "a")
    threads.add("b", ran.append, "b")
    executor = _Recording()
    sampler = _sampler(state)
    threads.run(executor, [], sampler)
    assert sorted(ran) == ["a", "b"]
    assert executor.shutdowns == [False]
    assert sampler.samples.rows  # the last sample is taken when the sampler stops


def _signal_soon() -> None:
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.timeout(10)
def test_a_signalled_run_cancels_and_leaves_a_stuck_thread_behind_within_its_budget() -> None:
    state = RunState()
    threads = StageThreads(state)
    release = threading.Event()
    threads.add("stuck", release.wait)  # ignores the stop flag, as a read on a hung mount would

    def interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    # SIGTERM delivered to the process while the main thread waits for the stage threads: a real signal
    # interrupts that wait (a handler raising inside Thread.join would mark the stuck thread stopped)
    threads.add("signal", _signal_soon)
    previous = signal.signal(signal.SIGTERM, interrupted)
    executor = _Recording()
    started = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            threads.run(executor, [], _sampler(state))
        assert time.monotonic() - started < 5  # a signal's budget, not the stuck thread's time
        assert executor.shutdowns == [True]
        assert isinstance(state.failure, Interrupted)
        assert [t.name for t in threads.threads if t.is_alive()] == ["stuck"]
        assert threads.join() == {"stuck"}
    finally:
        signal.signal(signal.SIGTERM, previous)
        release.set()
