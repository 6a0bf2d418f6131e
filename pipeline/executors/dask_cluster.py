"""The Dask executor's cluster: a ``LocalCluster`` of our own, or the scheduler at ``parse.address``,
and the client that talks to it; every network step named and bounded.

Used by :class:`pipeline.executors.dask.DaskExecutor`, which owns one :class:`DaskCluster`. An
unreachable scheduler is a :class:`StageError` after :data:`CONNECT_TIMEOUT_S`; so is an address that
accepts the connection but does not answer distributed's handshake (distributed's own ``connect`` waits
for that answer forever) or answers something else (an HTTP server's reply read as a frame length asked
for exabytes): the handshake is tried first, under a deadline, before the client is made. A scheduler
without workers fails after :data:`WORKERS_TIMEOUT_S`, the workers' check after
:data:`CONNECT_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing import forkserver
from typing import Any

import dask
import distributed
import distributed.utils

from pipeline.errors import StageError

# The executor's logger: these are its messages.
log = logging.getLogger("pipeline.executors.dask")

# distributed's client, cluster and futures are only partly typed (mypy strict calls them untyped):
# they are handled as Any here, and every value taken from them is checked or typed where it lands
_dd: Any = distributed

CONNECT_TIMEOUT_S = 5.0  # an unreachable scheduler fails the run after this long
WORKERS_TIMEOUT_S = 30.0  # a scheduler that has no worker after this long fails the run
CLOSE_TIMEOUT_S = 10.0  # closing the client and our LocalCluster never holds a finished run longer
# What the fork server of our LocalCluster's workers imports once, so that every worker forked from it
# starts with distributed, numpy, Arrow and the parse loaded and Arrow's kernels warm
# (pipeline.executors.warmup)
WORKER_PRELOAD = ["pipeline.executors.dask", "pipeline.executors.warmup"]


class DaskCluster:
    """The connection to a Dask cluster: the scheduler at ``address``, or (empty) a ``LocalCluster`` of
    ``workers`` worker processes with one thread each, started here; the client (:attr:`client`) and
    how many worker threads there are (:attr:`workers`).

    Made, and closed (:meth:`close`), by the thread that makes and shuts down the executor; the
    executor's threads only use :attr:`client`. Closing our cluster also puts back what starting it
    changed in this process: its environment and distributed's workers' start method. ``version``
    is what the workers of a cluster at ``address`` run to say which logpipe they have.
    """

    def __init__(self, address: str, workers: int, max_retries: int, version: Callable[[], str]):
        self.address = address
        self._version = version
        self._cluster: Any = None  # our LocalCluster, if we started one
        self._start_method: Any = None  # our dask.config.set of its workers' start method, undone at close
        # a nanny writes its workers' environment into this process's os.environ before it spawns them
        # (distributed's Nanny.start); put it back when the cluster closes, so that later children of
        # this process get the environment they would have had
        self._environ = dict(os.environ)
        # distributed's own INFO lines (a LocalCluster's nannies, the client's connects) would mix with
        # the run's log: only its warnings and errors get through
        logging.getLogger("distributed").setLevel(logging.WARNING)
        t0 = time.perf_counter()
        contact = self._connect(max_retries)
        self.workers = self._ready_workers(workers)
        log.info(
            "parse: Dask scheduler %s, %d worker thread(s), ready in %.2f s",
            contact,
            self.workers,
            time.perf_counter() - t0,
        )

    def _connect(self, max_retries: int) -> str:
        """Start our LocalCluster (no ``address``) or probe the scheduler at ``address``, then make the
        client; the address the client talks to. Nothing is left running when this raises."""
        address = self.address
        try:
            if not address:
                if _start_fork_server():
                    # read by every nanny when it starts (or restarts) its worker, which happens after
                    # the cluster is made (scale): set for as long as our cluster lives
                    self._start_method = dask.config.set(
                        {"distributed.worker.multiprocessing-method": "forkserver"}
                    )
                self._cluster = _local_cluster(max_retries)
                # the scheduler runs in this process: the client talks to it in memory ("inproc"),
                # the workers over TCP
                address = self._cluster.scheduler.listeners[-1].contact_address
            else:
                _probe(address)
            self.client: Any = _dd.Client(
                address,
                timeout=CONNECT_TIMEOUT_S,
                set_as_default=False,
                direct_to_workers=True,
                # with our cluster, one event loop thread for the scheduler and the client
                loop=self._cluster.loop if self._cluster is not None else None,
            )
        except (OSError, TimeoutError) as exc:  # distributed raises OSError for a connect that timed out
            self._close_cluster()
            where = self.address or "(a LocalCluster of our own)"
            raise StageError(
                "parse", f"cannot reach the Dask scheduler at {where} within {CONNECT_TIMEOUT_S:.0f} s: {exc}"
            ) from exc
        except BaseException:
            self._close_cluster()  # and our start method with it
            raise
        return str(address)

    def _ready_workers(self, workers: int) -> int:
        """The cluster's worker threads: ours (``workers``) are asked for, a cluster at ``address`` is
        waited for and checked (closing the client when that fails)."""
        if self._cluster is not None:
            # Our own workers boot (forked from the fork server, or a fresh interpreter each without one)
            # while the run reads its first chunks: the scheduler queues the tasks until they join. They
            # are this installation's processes, so they have our logpipe.
            self._cluster.scale(workers)
            return workers
        try:
            threads = self._wait_for_workers()
            self._check_workers()
        except BaseException:
            self.close()
            raise
        return threads

    def _wait_for_workers(self) -> int:
        """The cluster's worker threads, waiting up to :data:`WORKERS_TIMEOUT_S` for the first worker."""
        threads = int(sum(self._nthreads().values()))
        if threads == 0:
            log.info("parse: waiting up to %.0f s for a Dask worker at %s", WORKERS_TIMEOUT_S, self.address)
            try:
                self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
            except TimeoutError as exc:
                waited = f"waited {WORKERS_TIMEOUT_S:.0f} s"
                what = f"the Dask scheduler at {self.address} has no workers ({waited})"
                raise StageError("parse", what) from exc
            threads = int(sum(self._nthreads().values()))
        return max(1, threads)

    def _nthreads(self) -> dict[str, int]:
        try:
            found: dict[str, int] = self.client.nthreads(callback_timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            within = f"within {CONNECT_TIMEOUT_S:g} s"
            what = f"the Dask scheduler at {self.address} did not list its workers {within}"
            raise StageError("parse", f"{what}: {type(exc).__name__}: {exc}") from exc
        return found

    def _check_workers(self) -> None:
        """Every worker must have logpipe (it unpickles the tasks' function from it); another version
        than ours is only a warning (it may parse differently)."""
        ours = self._version()
        try:
            found: dict[str, Any] = self.client.run(
                self._version, on_error="return", callback_timeout=CONNECT_TIMEOUT_S + WORKERS_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            what = f"the Dask workers of {self.address} did not answer the logpipe version check"
            raise StageError("parse", f"{what}: {type(exc).__name__}: {exc}") from exc
        missing = sorted(w for w, v in found.items() if not isinstance(v, str))
        if missing:
            raise StageError(
                "parse",
                f"the Dask worker(s) {', '.join(missing)} of {self.address or 'the LocalCluster'} do not "
                f"have logpipe installed: install logpipe {ours} (and the modules of custom transforms) "
                "on every worker",
            )
        other = sorted({v for v in found.values() if v != ours})
        if other:
            log.warning("parse: Dask workers run logpipe %s, this process %s", ", ".join(other), ours)

    def close(self) -> None:
        """Close the client, then our LocalCluster (best effort, each within :data:`CLOSE_TIMEOUT_S`)."""
        with contextlib.suppress(Exception):  # closing is best effort: the run's outcome is decided
            self.client.close(timeout=CLOSE_TIMEOUT_S)
        self._close_cluster()

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=CLOSE_TIMEOUT_S)
            self._cluster = None
            for key in set(os.environ) | set(self._environ):
                if key not in self._environ:
                    del os.environ[key]
                elif os.environ.get(key) != self._environ[key]:
                    os.environ[key] = self._environ[key]
        if self._start_method is not None:
            self._start_method.__exit__(None, None, None)  # distributed's own start method again
            self._start_method = None


def _probe(address: str) -> None:
    """Connect to ``address`` and do distributed's handshake, all within :data:`CONNECT_TIMEOUT_S`:
    a :class:`StageError` naming the address when that fails. distributed's ``connect`` bounds the
    TCP connect but waits for the handshake's answer without a limit."""

    # the TLS settings the Client will use (distributed's config), for a tls:// scheduler
    args = _dd.security.Security().get_connection_args("client")

    async def handshake() -> None:
        connect = _dd.comm.connect(address, timeout=CONNECT_TIMEOUT_S, **args)
        comm = await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)
        await comm.close()

    try:
        asyncio.run(handshake())
    except TimeoutError as exc:  # connected, and nothing came back
        what = (
            f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S:g} s: no answer to "
            "distributed's handshake (is a Dask scheduler listening there?)"
        )
        raise StageError("parse", what) from exc
    except OSError as exc:  # refused, unreachable
        what = f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S:g} s"
        raise StageError("parse", f"{what}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # whatever a foreign protocol's bytes make of distributed's reader
        what = f"{address} does not answer as a Dask scheduler (another service on that port?)"
        raise StageError("parse", f"{what}: {type(exc).__name__}: {exc}") from exc


def _local_cluster(max_retries: int) -> Any:
    """A scheduler in this process for worker processes of one thread each (none yet: the caller scales
    it), on this machine, without a dashboard; a task is given up after ``max_retries`` workers died
    under it (``parse.max_retries``, as the local pool). Its nannies restart a worker that dies."""
    # read when the scheduler starts, here; the workers' heap settings are put back by _tune_worker
    # (keep_heap): their nannies start later, from scale(), with their own pre-spawn environment
    with dask.config.set({"distributed.scheduler.allowed-failures": max_retries}):
        return _dd.LocalCluster(
            n_workers=0,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard, but the scheduler still serves /health on 8787 unless told otherwise, with
            # a warning when another cluster has that port: any free port on the loopback instead
            # a second listener, in memory, for our client (TCP for the workers: listeners[0], the
            # scheduler's address)
            scheduler_kwargs={
                "dashboard_address": "127.0.0.1:0",
                "protocol": ["tcp", "inproc"],
                "host": ["127.0.0.1", None],
                "port": [0, None],
            },
            silence_logs=logging.ERROR,
            host="127.0.0.1",
        )


def _start_fork_server() -> bool:
    """Start multiprocessing's fork server (if it is not running: the local pool's may be) with
    :data:`WORKER_PRELOAD`, so that our LocalCluster's workers are forked from it instead of each
    booting a fresh interpreter; whether this platform has one. The workers then start with their
    imports done and Arrow's set-up paid, once, in the server (BENCHMARKS.md, "Dask executor"). The
    forked workers get this process's environment (that of
    ``pipeline.runtime`` under ``logpipe run``), not the nanny's ``pre-spawn-environ``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(WORKER_PRELOAD)
    forkserver.ensure_running()  # returns at once: it boots beside the scheduler
    # distributed's get_mp_context would otherwise set a preload of its own first, importing every
    # package it names (pandas among them, slow to import) into this process; the server is running already
    if hasattr(distributed.utils, "_forkserver_preload_set"):
        distributed.utils._forkserver_preload_set = True
    return True
