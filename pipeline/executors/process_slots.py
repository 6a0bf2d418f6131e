"""The process pool's shared-memory slots (:mod:`pipeline.executors.shm`): how many, which are free.

Used by :class:`pipeline.executors.process.ProcessExecutor`, which owns one :class:`SlotPool`.
"""

from __future__ import annotations

import errno
import logging
import queue

from pipeline.executors.shm import SHM_BIGGER, SHM_DIR, SHM_SHARE, SharedSlot, SlotTask, mib, shm_free_bytes
from pipeline.stages.parse import ParseTask

# The executor's logger: these are its messages.
log = logging.getLogger("pipeline.executors.process")


class SlotPool:
    """The slots of the chunks in flight: created at start (as many as fit), lent to chunks, unlinked
    at shutdown.

    It owns the slots and the queue of free ones. :meth:`load` runs in the thread that submits a chunk
    (a retried chunk keeps its slot), :meth:`give` in whichever thread settles the chunk's future (the
    pool's result thread, ``parse-watchdog``, ``parse-retry``): both only touch the thread-safe queue.
    :meth:`close` runs once the pool is stopped, in the thread that shuts the executor down.
    """

    def __init__(self, n: int, slot_bytes: int):
        self.slots: list[SharedSlot] = []
        self._free: queue.SimpleQueue[SharedSlot] = queue.SimpleQueue()
        if slot_bytes > 0:
            self._create(n, slot_bytes)

    def _create(self, n: int, slot_bytes: int) -> None:
        """Create up to ``n`` slots: as many as fit in :data:`SHM_SHARE` of the free /dev/shm, all
        allocated now. Fewer than ``n`` is one warning, not an error: a chunk without a slot goes
        through the pipe (slower, same result)."""
        # A batch's IPC stream is about the size of its chunk (offsets replace separators);
        # one that does not fit comes back through the pipe instead.
        in_bytes, out_bytes = slot_bytes, slot_bytes + slot_bytes // 2
        each = SharedSlot.footprint(in_bytes, out_bytes)
        free = shm_free_bytes()
        fit = n if free is None else min(n, int(free * SHM_SHARE) // each)
        error: OSError | None = None
        try:
            for _ in range(fit):
                slot = SharedSlot.create(in_bytes, out_bytes)
                self.slots.append(slot)
                self._free.put(slot)
        except OSError as exc:  # no shared memory here, or someone else took the room meanwhile
            error = exc
        made = len(self.slots)
        if made == n:
            return
        then = "chunks go through pipes instead" if made == 0 else "chunks without one go through pipes"
        cause = f"{type(error).__name__}: {error}" if error is not None else ""
        if free is None or (error is not None and error.errno != errno.ENOSPC):  # not a matter of room
            log.warning("parse: cannot create shared memory (%s); %s (slower)", cause, then)
            return
        share = f"a run takes at most {SHM_SHARE:.0%} of what is free" + (f"; {cause}" if cause else "")
        room = f"too little for {n}" if made == 0 else f"room for {made} of {n}"
        log.warning(
            "parse: %s has only %s free, %s shared-memory slots of %s (%s); %s (slower). To avoid "
            "it, %s or lower read.chunk_bytes / read.max_line_bytes",
            SHM_DIR,
            mib(free),
            room,
            mib(each),
            share,
            then,
            SHM_BIGGER,
        )

    def load(self, task: ParseTask) -> tuple[SharedSlot, SlotTask] | None:
        """A free slot with ``task``'s bytes moved into it, and the task to send instead; None (the
        chunk goes through the pipe) when no slot is free or the bytes do not fit."""
        try:
            slot = self._free.get_nowait()
        except queue.Empty:
            return None
        loaded = slot.load(task)
        if loaded is None:
            self._free.put(slot)
            return None
        return slot, loaded

    def give(self, slot: SharedSlot) -> None:
        """``slot`` is free again."""
        self._free.put(slot)

    def close(self) -> None:
        """Unlink every slot. Safe to call twice."""
        for slot in self.slots:
            slot.close()
        self.slots = []
