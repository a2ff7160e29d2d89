"""Signals as they travel: exit reasons (exceptions rebuilt as erpc rebuilds them), and a SIGNAL
frame that carries anything but a pynode signal refused."""

from __future__ import annotations

import threading

import pytest

from pynode import payload as payloads
from pynode import signals
from pynode.errors import EncodeError, RemoteError
from pynode.mailbox import Pid


class Unrebuildable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def roundtrip(reason):
    return signals.decode_reason(payloads.loads(*payloads.dumps(signals.encode_reason(reason))), "far@127.0.0.2")


def test_plain_reasons_travel_as_they_are() -> None:
    for reason in ("normal", "killed", ("shutdown", 3), {"why": [1, 2]}):
        assert roundtrip(reason) == reason


def test_an_exception_reason_is_rebuilt_with_a_note_naming_its_node() -> None:
    kind, exc = roundtrip(("exception", ValueError("bad value")))
    assert kind == "exception" and isinstance(exc, ValueError) and str(exc) == "bad value"
    assert any("far@127.0.0.2" in note for note in exc.__notes__)
    kind, exc = roundtrip(("exception", Unrebuildable("odd")))
    assert isinstance(exc, RemoteError) and "Unrebuildable" in str(exc) and exc.node == "far@127.0.0.2"


def test_an_unpicklable_reason_is_refused_naming_it() -> None:
    with pytest.raises(EncodeError, match="exit reason <unlocked _thread.lock"):
        signals.encode_reason(threading.Lock())


def test_decode_accepts_only_pynode_signals() -> None:
    signal = signals.Exit(Pid("a@127.0.0.1", 1), Pid("b@127.0.0.1", 2), "normal", True)
    assert signals.decode(*signals.encode(signal)) == signal
    with pytest.raises(ValueError, match="a SIGNAL frame carried a tuple"):
        signals.decode(*payloads.dumps(("Exit", 1, 2)))
