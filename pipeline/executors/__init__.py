"""Where the parse runs: one small interface (:class:`Executor`), one module per backend.

``inline`` (the calling thread: the serial reference), ``thread`` (threads of the main process),
``process`` (a local process pool fed through shared memory) and ``dask`` (a Dask cluster, or a
``LocalCluster`` of its own). The runner only calls :func:`make_executor`, ``submit``, ``shutdown`` and
``max_in_flight``; each backend module is imported when it is chosen, so a run pays only for its own
(``dask`` above all: importing distributed costs ~0.3 s).
"""

from pipeline.executors.base import Executor, make_executor

__all__ = ["Executor", "make_executor"]
