"""Shared memory between the main process and the local pool's workers: one slot per chunk in flight.

Sending a 4 MiB chunk through a pipe costs a pickle, a 64 KiB-at-a-time copy under the main process's
GIL, and the worker waits for all of it before it can start; the batch coming back costs the same
again. With a :class:`SharedSlot`, the main process copies the chunk into the slot's input block (one
memcpy), the worker parses it in place (:func:`parse_in_slot`) and writes its Arrow streams straight into
the output block; only small descriptors (:class:`SlotTask`) cross the pipe. The main process owns
(creates and unlinks) every block. Only the process executor uses this: threads share memory anyway,
and a cluster's workers are on other machines.
"""

from __future__ import annotations

import logging
import mmap
import os
from dataclasses import dataclass, replace
from multiprocessing import shared_memory

from pipeline.parse import ParseResult, ParseTask, parse_data

log = logging.getLogger(__name__)


@dataclass
class SlotTask:
    """What crosses the pipe for a chunk in a slot: the task (its chunk's data emptied) and the names
    of the blocks that hold its bytes and take its streams."""

    task: ParseTask
    shm_in: str
    shm_len: int
    shm_out: str


def parse_in_slot(slot_task: SlotTask) -> ParseResult:
    """The worker's side of a slot: parse the bytes in place, write the streams into the output block.
    Top-level and picklable (it is what the pool runs for a chunk in a slot)."""
    data = _attach(slot_task.shm_in)[: slot_task.shm_len]
    return parse_data(slot_task.task, data, into=_attach(slot_task.shm_out))


# Shared-memory blocks this worker process has attached to, by name (attached once, kept open).
_ATTACHED: dict[str, shared_memory.SharedMemory] = {}


def _attach(name: str) -> memoryview:
    """The memory of the shared block ``name`` (attached on first use, then kept)."""
    block = _ATTACHED.get(name)
    if block is None:
        block = _ATTACHED[name] = shared_memory.SharedMemory(name)
    return _buf(block)


def _buf(block: shared_memory.SharedMemory) -> memoryview:
    buf = block.buf
    if buf is None:
        raise ValueError(f"shared memory block {block.name} is closed")
    return buf


@dataclass
class SharedSlot:
    """A pair of shared-memory blocks for one chunk in flight: its bytes in (``inp``), its batch out
    (``out``)."""

    inp: shared_memory.SharedMemory
    out: shared_memory.SharedMemory

    @classmethod
    def create(cls, in_bytes: int, out_bytes: int) -> SharedSlot:
        """Create both blocks, every page allocated now (raises OSError where shared memory is
        unavailable or too full for them)."""
        inp = _create_block(in_bytes)
        try:
            out = _create_block(out_bytes)
        except OSError:
            _unlink(inp)
            raise
        return cls(inp, out)

    @staticmethod
    def footprint(in_bytes: int, out_bytes: int) -> int:
        """What one slot takes of /dev/shm: its two blocks, in whole pages."""
        return _whole_pages(in_bytes) + _whole_pages(out_bytes)

    def load(self, task: ParseTask) -> SlotTask | None:
        """The task with its bytes moved into this slot; None if they do not fit."""
        data = task.chunk.data
        if len(data) > self.inp.size:
            return None
        _buf(self.inp)[: len(data)] = data
        emptied = replace(task, chunk=replace(task.chunk, data=b""))
        return SlotTask(emptied, self.inp.name, len(data), self.out.name)

    def unload(self, result: ParseResult) -> ParseResult:
        """The result with its streams copied out of the slot, so the slot can be reused at once."""
        if result.parts and not result.parts[0].ipc:  # in the slot (else they came through the pipe)
            buf, pos = _buf(self.out), 0
            for part in result.parts:
                part.ipc = bytes(buf[pos : pos + part.size])
                pos += part.size
        return result

    def close(self) -> None:
        """Unlink both blocks."""
        _unlink(self.inp)
        _unlink(self.out)


def _create_block(size: int) -> shared_memory.SharedMemory:
    """A new shared-memory block of ``size`` bytes whose pages are all allocated now.

    ``SharedMemory(create=True)`` only sets the size (ftruncate): on tmpfs the pages come on first
    write, and where /dev/shm is full by then that write is a SIGBUS, in the main process (which
    dies without a word) or in a worker (which the pool replaces, and it dies again). Allocating
    up front turns a shortage into ENOSPC here, at start, where the caller can fall back to pipes.
    The block stays an ordinary ``SharedMemory`` (same registration with the resource tracker, same
    unlink); the descriptor it keeps from ``shm_open`` is not in the typing stubs, hence ``getattr``.
    """
    block = shared_memory.SharedMemory(create=True, size=size)
    fd: int = getattr(block, "_fd", -1)  # -1: no POSIX descriptor (Windows)
    if fd >= 0 and hasattr(os, "posix_fallocate"):  # macOS has no posix_fallocate and no tmpfs limit
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            _unlink(block)
            raise
    return block


def _whole_pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


# Where POSIX shared memory (the slots, and the pool's semaphores) lives on Linux: a tmpfs, which
# containers get small unless told otherwise (Docker's and Kubernetes' defaults).
SHM_DIR = "/dev/shm"
# The slots take at most this share of what /dev/shm has free: the rest is headroom for the pool's
# semaphores (a restarted pool needs new ones) and for other users of the same /dev/shm.
SHM_SHARE = 0.5


def shm_free_bytes() -> int | None:
    """Bytes free in :data:`SHM_DIR`; None where there is no such file system to ask (macOS keeps
    POSIX shared memory elsewhere, without a size limit of its own)."""
    try:
        st = os.statvfs(SHM_DIR)
    except (OSError, AttributeError):  # no /dev/shm; no statvfs (Windows)
        return None
    return st.f_bavail * st.f_frsize


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# What to do about a /dev/shm too small, for every message that reports one.
SHM_BIGGER = (
    f"give the container a bigger {SHM_DIR} (docker run --shm-size; Kubernetes: an emptyDir volume "
    "with medium: Memory mounted there)"
)


def _unlink(block: shared_memory.SharedMemory) -> None:
    try:
        block.close()
        block.unlink()
    except (OSError, BufferError) as exc:  # already gone, or still referenced: logged, not fatal
        log.debug("shared memory %s: %s", block.name, exc)
