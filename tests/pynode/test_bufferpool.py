"""Pooled receive memory: recycled only once nothing uses it, bounded, never showing old data."""

from __future__ import annotations

import gc
import pickle
import socket
import threading

import numpy as np

from pynode import bufferpool, transport
from pynode import payload as payloads
from pynode.bufferpool import BufferPool

MIB = 1 << 20


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_memory_returns_to_the_pool_only_when_every_view_is_gone() -> None:
    pool = BufferPool(limit=64 * MIB)
    first = pool.take(4 * MIB)
    assert first.dtype == np.uint8 and first.nbytes == 4 * MIB and first.flags.writeable
    where = address(first)
    view = first[10:20]
    del first
    gc.collect()
    assert pool.pooled_bytes == 0, "recycled while a view still used the memory"
    second = pool.take(4 * MIB)
    other = address(second)
    assert other != where
    del view, second
    gc.collect()
    assert pool.pooled_bytes == 8 * MIB
    again = pool.take(4 * MIB)
    assert address(again) in {where, other} and pool.pooled_bytes == 4 * MIB


def test_a_mapping_serves_only_buffers_of_at_least_half_its_size() -> None:
    pool = BufferPool(limit=64 * MIB)
    big = pool.take(8 * MIB)
    where = address(big)
    del big
    gc.collect()
    small = pool.take(3 * MIB)  # under half of 8 MiB: a new mapping
    assert address(small) != where and pool.pooled_bytes == 8 * MIB
    fits = pool.take(5 * MIB)
    assert address(fits) == where and fits.nbytes == 5 * MIB and pool.pooled_bytes == 0


def test_the_pool_keeps_at_most_its_limit_dropping_the_oldest() -> None:
    pool = BufferPool(limit=10 * MIB)
    a, b, c = (pool.take(4 * MIB) for _ in range(3))
    addresses = [address(a), address(b), address(c)]
    del a
    del b
    del c
    gc.collect()
    assert pool.pooled_bytes == 8 * MIB  # the third one returned pushed the first out
    taken = [pool.take(4 * MIB), pool.take(4 * MIB)]
    assert {address(t) for t in taken} == set(addresses[1:]) and pool.pooled_bytes == 0
    huge = pool.take(12 * MIB)  # larger than the limit: never pooled
    del huge
    gc.collect()
    assert pool.pooled_bytes == 0


def test_received_arrays_reuse_memory_and_never_show_an_earlier_message() -> None:
    left, right = socket.socketpair()
    sender, receiver = transport._Channel(transport._Stream(left)), transport._Channel(transport._Stream(right))
    try:
        for fill in (1.0, 2.0, 3.0):
            data = np.full(transport.HUGE_BUFFER // 8 * 2, fill)
            payload, buffers = payloads.dumps(data)
            writer = threading.Thread(target=sender.send, args=(b"x", payload, buffers))
            writer.start()
            frame, attachments = receiver.recv_frame()
            writer.join(10)
            received = payloads.loads(frame[1:], attachments)
            assert np.array_equal(received, data)
            received[:] = -1.0  # writable; scribbling on it must not leak into the next message
            del received, attachments
            gc.collect()
            assert bufferpool.receive_pool.pooled_bytes >= data.nbytes  # back in the pool for the next
    finally:
        sender.close()
        receiver.close()


def test_pickled_views_keep_the_memory_alive() -> None:
    pool = BufferPool(limit=64 * MIB)
    buffer = pool.take(4 * MIB)
    buffer[:8] = np.arange(8, dtype=np.uint8)
    rebuilt = pickle.loads(pickle.dumps(np.arange(8, dtype=np.uint8), protocol=5, buffer_callback=lambda b: False),
                           buffers=[buffer[:8]])
    del buffer
    gc.collect()
    assert pool.pooled_bytes == 0
    assert list(rebuilt) == list(range(8))
    del rebuilt
    gc.collect()
    assert pool.pooled_bytes == 4 * MIB
