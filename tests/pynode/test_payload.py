"""Payload encoding and the attachment-carrying channel."""

from __future__ import annotations

import os
import pickle
import socket
import sys
import threading
import types

import cloudpickle
import numpy as np
import pytest

from pynode import transport
from pynode import payload as payloads


def test_closure_capturing_an_array_travels_by_value() -> None:
    offset = np.arange(5.0)
    fn = lambda x: x + offset  # noqa: E731
    data, buffers = payloads.dumps(fn)
    rebuilt = payloads.loads(data, buffers)
    np.testing.assert_array_equal(rebuilt(1.0), offset + 1.0)


def test_only_the_shipped_function_is_checked_for_pickling_by_reference(monkeypatch) -> None:
    """The reconstructors in the pickle (pynode.fnpickle's, pynode.codecache's) are saved by
    reference without cloudpickle's lookup; only the shipped function is looked up, and a
    lambda or a nested function not even that (goes_by_value decides it)."""
    checked: list[object] = []
    original = payloads._by_reference

    def spy(obj, name=None):
        checked.append(obj)
        return original(obj, name)

    offset = [2.0]
    fn = lambda x: x + offset[0]  # noqa: E731  (a closure: cells, make_function, set_function_state)
    impostor = _closure_named("module_level_name")  # a plain name: cloudpickle's lookup decides
    payloads.dumps((fn, impostor))  # their code objects are pickled (and cached) now
    monkeypatch.setattr(payloads, "_by_reference", spy)
    rebuilt = payloads.loads(*payloads.dumps((fn, (), {})))
    assert checked == []
    assert rebuilt[0](1.0) == 3.0
    rebuilt = payloads.loads(*payloads.dumps((impostor, (), {})))
    assert checked == [impostor]
    assert rebuilt[0]() == 5


def module_level_name() -> int:
    return 0


def _closure_named(qualname: str, module: str = __name__, value: int = 5):
    def fn():
        return value

    fn.__qualname__ = qualname
    fn.__module__ = module
    return fn


MODULE_LAMBDA = lambda: 1  # noqa: E731  (qualname "<lambda>", module this one)


class _ModuleSubclass(types.ModuleType):
    pass


def test_goes_by_value_decides_as_cloudpickle_does(monkeypatch) -> None:
    """goes_by_value's shortcuts against cloudpickle's own check (the oracle), case by case:
    each function is asked of both, and shipped to see it rebuilt (by value: a new function;
    by reference: the same object)."""
    probe = types.ModuleType("pynode_goes_by_value_probe")
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    with_getattr = types.ModuleType("pynode_goes_by_value_getattr")
    monkeypatch.setitem(sys.modules, with_getattr.__name__, with_getattr)
    subclassed = _ModuleSubclass("pynode_goes_by_value_subclass")
    monkeypatch.setitem(sys.modules, subclassed.__name__, subclassed)

    stored = _closure_named("<lambda>", probe.__name__)
    setattr(probe, "<lambda>", stored)  # found by its name: cloudpickle goes by reference
    served = _closure_named("<lambda>", with_getattr.__name__)
    with_getattr.__getattr__ = lambda name: served if name == "<lambda>" else None  # PEP 562
    in_subclass = _closure_named("<lambda>", subclassed.__name__)
    setattr(subclassed, "<lambda>", in_subclass)

    def nested():
        return 1

    cases = {
        "a lambda of a module": MODULE_LAMBDA,
        "a lambda of a function": lambda: 2,
        "a nested function": nested,
        "an importable function": module_level_name,
        "a function of another module": os.path.join,
        "a name that finds another function": _closure_named("module_level_name"),
        "<locals> after a part that exists": _closure_named("module_level_name.<locals>.f"),
        "<locals> after a part that does not": _closure_named("missing.<locals>.f"),
        "a made-up single name": _closure_named("<genexpr>"),
        "a made-up dotted name": _closure_named("MODULE_LAMBDA.<x>"),
        "a name the module type has": _closure_named("__class__"),
        "a plain name the module type has": _closure_named("__init__", probe.__name__),
        "a lambda stored under its name": stored,
        "a lambda a module __getattr__ returns": served,
        "a lambda of a module subclass": in_subclass,
        "__main__": _closure_named("<lambda>", "__main__"),
        "__main__, a plain name": _closure_named("module_level_name", "__main__"),
        "a module not imported": _closure_named("<lambda>", "pynode_no_such_module"),
        "no module": _closure_named("<lambda>", None),
    }
    for what, fn in cases.items():
        expected = not cloudpickle.cloudpickle._should_pickle_by_reference(fn)
        assert payloads.goes_by_value(fn) is expected, what
        rebuilt = payloads.loads(*payloads.dumps(fn))
        assert (rebuilt is not fn) is expected, what
    assert payloads.goes_by_value(stored) is False and payloads.goes_by_value(served) is False
    assert payloads.goes_by_value(MODULE_LAMBDA) is True


def test_large_arrays_go_out_of_band_without_copy_small_ones_in_band() -> None:
    big = np.ones(payloads.OOB_THRESHOLD // 8 * 4)
    small = np.ones(16)
    data, buffers = payloads.dumps((big, small))
    assert len(buffers) == 1
    assert len(data) < 2048  # the big array's bytes are not inside the pickle
    assert np.shares_memory(np.frombuffer(buffers[0], dtype=big.dtype), big)


def test_received_buffers_are_used_in_place_and_writable() -> None:
    big = np.arange(payloads.OOB_THRESHOLD, dtype=np.float64)
    data, buffers = payloads.dumps(big)
    received = tuple(bytearray(b) for b in buffers)  # what the channel hands over
    rebuilt = payloads.loads(data, received)
    np.testing.assert_array_equal(rebuilt, big)
    assert np.shares_memory(rebuilt, np.frombuffer(received[0], dtype=np.float64))
    rebuilt[0] = -1.0  # writable
    assert big[0] == 0.0


def test_unpicklable_object_raises_at_dumps() -> None:
    with pytest.raises((TypeError, pickle.PicklingError)):
        payloads.dumps(threading.Lock())


@pytest.fixture
def channels():
    left, right = socket.socketpair()
    a, b = transport._Channel(transport._Stream(left)), transport._Channel(transport._Stream(right))
    yield a, b
    a.close()
    b.close()


def test_channel_carries_frames_with_their_attachments_in_order(channels) -> None:
    sender, receiver = channels
    big = np.arange(300_000, dtype=np.int64)
    large_body = bytes(range(256)) * 1000  # above SMALL_FRAME: written without joining
    received: list[tuple[bytes, tuple[bytearray, ...]]] = []

    def read() -> None:
        for _ in range(3):
            frame, attachments = receiver.recv_frame()
            received.append((bytes(frame), attachments))

    reader = threading.Thread(target=read)
    reader.start()
    sender.send(b"fi", b"rst", (memoryview(big).cast("B"), b"tail"))
    sender.send(b"second")
    sender.send(b"head", large_body)
    reader.join(10)
    (f1, att1), (f2, att2), (f3, att3) = received
    assert f1 == b"first" and f2 == b"second" and f3 == b"head" + large_body
    assert np.array_equal(np.frombuffer(att1[0], dtype=np.int64), big) and bytes(att1[1]) == b"tail"
    assert att2 == () and att3 == ()
    received_big = pickle.loads(pickle.dumps(big, protocol=5, buffer_callback=lambda b: False), buffers=[att1[0]])
    received_big[0] = -1  # received memory is writable, whatever kind it is
    assert received_big[0] == -1 and np.array_equal(received_big[1:], big[1:])
    assert memoryview(att1[0]).nbytes == big.nbytes >= transport.HUGE_BUFFER  # the large-buffer path


def test_channel_refuses_compressed_frames(channels) -> None:
    sender, receiver = channels
    sender.stream.write(sender.FRAME_HEADER.pack(3, 1) + b"abc\n")
    with pytest.raises(EOFError, match="kind 1"):
        receiver.recv_frame()


def test_buffered_reads_reassemble_frames_of_every_size_from_arbitrary_chunks(channels) -> None:
    sender, receiver = channels
    rng = np.random.default_rng(7)
    half = transport.RECV_BUFFER // 2
    sizes = [0, 1, 5, 300, half - 10, half - 1, half, half + 1, transport.RECV_BUFFER, 3 * transport.RECV_BUFFER]
    sizes += [int(n) for n in rng.integers(0, 2 * transport.RECV_BUFFER, 30)]
    bodies = [rng.bytes(n) for n in sizes]
    wire = b"".join(sender.FRAME_HEADER.pack(len(b), 0) + b + sender.FLUSHER for b in bodies)
    cuts = np.sort(rng.integers(0, len(wire), 60))

    def write_in_chunks() -> None:  # frames split at random points, as TCP may deliver them
        start = 0
        for cut in [*cuts, len(wire)]:
            sender.stream.write(wire[start:cut])
            start = cut

    writer = threading.Thread(target=write_in_chunks)
    writer.start()
    received = [bytes(receiver.recv_frame()[0]) for _ in bodies]
    writer.join(10)
    assert received == bodies


class _Registered:
    def __init__(self, value: int) -> None:
        self.value = value


def test_cloudpickle_type_reducers_and_later_copyreg_registrations_apply() -> None:
    import copyreg
    import logging

    # types plain pickle refuses, which cloudpickle's own reducers handle
    view = {"a": 1, "b": 2}.keys()
    logger = logging.getLogger("pynode.test_payload")
    assert list(payloads.loads(*payloads.dumps(view))) == ["a", "b"]
    assert payloads.loads(*payloads.dumps(logger)) is logger
    # a reducer registered with copyreg after pynode was imported is used
    copyreg.pickle(_Registered, lambda obj: (_Registered, (obj.value + 1,)))
    try:
        assert payloads.loads(*payloads.dumps(_Registered(41))).value == 42
    finally:
        del copyreg.dispatch_table[_Registered]


def test_plain_payloads_take_the_c_pickler_and_anything_else_cloudpickle(monkeypatch) -> None:
    plain = ("math:hypot", (3.0, 4.0, None, b"x"), {"scale": 2, "label": "y"})
    calls: list[object] = []
    monkeypatch.setattr(payloads._Pickler, "dump", lambda self, obj: calls.append(obj) or pickle.Pickler.dump(self, obj))
    assert payloads.loads(*payloads.dumps(plain)) == plain
    assert calls == [], "a payload of plain values went through cloudpickle"
    # a lambda at any depth, or a container nested deeper than PLAIN_DEPTH, goes by value
    for payload in [("m:f", (lambda: 3,), {}), ("m:f", (), {"k": lambda: 3}), ("m:f", ([[lambda: 3]],), {})]:
        rebuilt = payloads.loads(*payloads.dumps(payload))
        found = rebuilt[1][0] if rebuilt[1] else rebuilt[2]["k"]
        while isinstance(found, list):
            found = found[0]
        assert found() == 3
    assert len(calls) == 3
