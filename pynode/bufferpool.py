"""Receive memory for large out-of-band buffers, recycled once the data received into it is dropped.

A large array argument arrives straight into fresh memory that the unpickled array then uses (no
copy, :mod:`pynode.transport`). Fresh memory costs page faults: for 100 MiB, 15-20 ms into
transparent huge pages, but now and then 100-300 ms when the kernel compacts memory to find
them (seen on loopback as 36-55 ms calls with 130-340 ms ones in between), and 50-60 ms in
4 KiB pages. BEAM's allocator keeps such memory for the next binary; so does this pool: a buffer
handed out is a numpy ``uint8`` view of an anonymous mapping, and when the last object using the
received data is gone (the unpickled array, and anything viewing it), the mapping goes back to
the pool, already faulted in, for the next buffer of a size it fits. Every byte of a buffer
handed out is overwritten by the data received into it, so nothing of an earlier message shows.

The pool keeps at most POOL_BYTES of mappings (the least recently returned are unmapped first);
a mapping is reused for a buffer of at least half its size. Thread-safe; it never raises but
``OSError`` from ``mmap`` when memory is exhausted.
"""

from __future__ import annotations

import mmap
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Bytes of mappings the pool keeps for reuse: one 100 MiB array a call plus headroom; a node that
# received a larger array keeps nothing of it (a mapping larger than this is never pooled).
POOL_BYTES = 256 * 1024 * 1024
# A pooled mapping serves a buffer of at least this fraction of its size (less would pin memory
# that the buffer cannot use).
MIN_FILL = 0.5

_HUGE_PAGES = hasattr(mmap, "MADV_HUGEPAGE")


class BufferPool:
    """Large receive buffers backed by recycled anonymous mappings."""

    def __init__(self, limit: int = POOL_BYTES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._free: OrderedDict[int, mmap.mmap] = OrderedDict()  # id -> mapping, oldest first
        self._free_bytes = 0

    @property
    def pooled_bytes(self) -> int:
        return self._free_bytes

    def take(self, nbytes: int) -> np.ndarray:
        """A writable ``uint8`` array of ``nbytes`` bytes whose memory returns to the pool when
        the array and every view of it are gone. Its content is undefined until written."""
        import numpy as np  # here, not at import: pynode's command line tools never need it

        mapping = self._reuse(nbytes) or _new_mapping(nbytes)
        buffer = np.frombuffer(mapping, dtype=np.uint8, count=nbytes)
        weakref.finalize(buffer, self._give_back, mapping)
        return buffer

    def _reuse(self, nbytes: int) -> mmap.mmap | None:
        with self._lock:
            best = None
            for key, mapping in self._free.items():
                size = len(mapping)
                if nbytes <= size and nbytes >= MIN_FILL * size and (best is None or size < len(self._free[best])):
                    best = key
            if best is None:
                return None
            mapping = self._free.pop(best)
            self._free_bytes -= len(mapping)
            return mapping

    def _give_back(self, mapping: mmap.mmap) -> None:
        """The finalizer of a buffer handed out (it runs while the dying array still holds the
        mapping, so mappings are dropped, never closed: each is unmapped with its last reference)."""
        size = len(mapping)
        if size > self.limit:
            return
        with self._lock:
            self._free[id(mapping)] = mapping
            self._free_bytes += size
            while self._free_bytes > self.limit:
                _, old = self._free.popitem(last=False)
                self._free_bytes -= len(old)


def _new_mapping(nbytes: int) -> mmap.mmap:
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if _HUGE_PAGES:
        mapping.madvise(mmap.MADV_HUGEPAGE)
    return mapping


receive_pool = BufferPool()
"""The process's pool, used by :meth:`pynode.transport._Stream.read_attachment`."""
