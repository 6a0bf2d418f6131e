"""The executor kinds, named once: ``parse.executor`` accepts these and
:func:`pipeline.executors.make_executor` builds them. Imports nothing heavy: the config imports it."""

from __future__ import annotations

from typing import Literal, get_args

ExecutorKind = Literal["process", "thread", "inline", "dask"]
KINDS: tuple[str, ...] = get_args(ExecutorKind)
