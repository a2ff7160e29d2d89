"""Running shipped calls and rebuilding their outcomes (no network)."""

from __future__ import annotations

import threading

import pytest

from pynode import outcome, transport
from pynode import payload as payloads
from pynode.errors import EncodeError, RemoteError, UnencodableResult


def run(fn, *args, **kwargs):
    data, buffers = payloads.dumps((fn, args, kwargs))
    status, (rdata, rbuffers) = outcome.run_call("remote@127.0.0.9", data, buffers)
    return outcome.unpack("remote@127.0.0.9", status, rdata, rbuffers)


def test_value_round_trips() -> None:
    assert run(lambda a, b=0: a * 10 + b, 4, b=2) == 42


def test_module_function_string_is_resolved_on_the_node() -> None:
    assert run("math:hypot", 3, 4) == 5.0
    assert run("os.path:join", "a", "b") == "a/b"


def test_remote_value_error_arrives_as_itself_with_node_and_traceback() -> None:
    def fail() -> None:
        raise ValueError("bad sigma")

    with pytest.raises(ValueError, match="bad sigma") as info:
        run(fail)
    note = "\n".join(info.value.__notes__)
    assert "remote@127.0.0.9" in note and "in fail" in note and "Traceback" in note


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def test_exception_that_cannot_be_rebuilt_becomes_remote_error() -> None:
    def fail() -> None:
        raise Unpicklable()

    with pytest.raises(RemoteError, match="holds a lock") as info:
        run(fail)
    assert info.value.node == "remote@127.0.0.9"
    assert info.value.type_name.endswith("Unpicklable")
    assert "in fail" in info.value.remote_traceback


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("no_such_module_xyz:f", ModuleNotFoundError, "no module 'no_such_module_xyz' on node remote@127.0.0.9"),
        ("math:no_such_function", AttributeError, "no function 'math:no_such_function' on node"),
        ("math:pi", TypeError, "is not callable"),
        ("just-a-string", TypeError, "module:function"),
    ],
)
def test_bad_function_references_give_clear_errors(spec: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        run(spec)


def test_unpicklable_result_raises_encode_error_naming_the_function() -> None:
    def make_lock():
        return threading.Lock()

    with pytest.raises(EncodeError, match="make_lock") as info:
        run(make_lock)
    # also a RemoteError: what could be said of the failure met on the remote node
    assert isinstance(info.value, RemoteError) and isinstance(info.value, UnencodableResult)
    assert info.value.node == "remote@127.0.0.9" and info.value.type_name == "TypeError"
    assert "cannot pickle" in info.value.remote_traceback


class _StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class _EverythingRaises(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt

    def __repr__(self) -> str:
        raise KeyboardInterrupt

    def __reduce__(self):
        raise SystemExit


@pytest.mark.parametrize("exc", [_StrRaises(), _EverythingRaises(), RecursionError("deep")])
def test_encode_error_never_raises_and_says_what_it_can(exc: BaseException) -> None:
    data, buffers = outcome.encode_error(exc)
    with pytest.raises(BaseException) as info:
        outcome.unpack("remote@127.0.0.9", outcome.ERROR, data, buffers)
    if isinstance(exc, RecursionError):
        assert isinstance(info.value, RecursionError)
    else:
        assert isinstance(info.value, RemoteError)
        assert type(exc).__name__ in info.value.type_name


def test_huge_exception_text_is_cut_to_fit() -> None:
    def fail() -> None:
        raise ValueError("x" * 10_000_000)

    data, buffers = payloads.dumps((fail, (), {}))
    status, payload = outcome.run_call("remote@127.0.0.9", data, buffers, limit=2 << 20)
    assert status == outcome.ERROR and transport.payload_size(payload) < 2 << 20
    with pytest.raises(RemoteError) as info:  # its pickle is too large to travel: type and text do
        outcome.unpack("remote@127.0.0.9", status, *payload)
    assert info.value.type_name == "ValueError" and "more characters cut" in str(info.value)[-200:]


def test_result_over_the_callers_limit_is_an_encode_error() -> None:
    data, buffers = payloads.dumps((lambda: bytes(3 << 20), (), {}))
    status, payload = outcome.run_call("remote@127.0.0.9", data, buffers, limit=2 << 20)
    with pytest.raises(EncodeError, match="max_message_size of 2097152 bytes") as info:
        outcome.unpack("remote@127.0.0.9", status, *payload)
    assert isinstance(info.value, RemoteError) and info.value.type_name == "MessageTooLarge"


def test_undecodable_error_reply_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match="cannot be decoded"):
        outcome.unpack("remote@127.0.0.9", outcome.ERROR, b"\x80\x05garbage", ())


class _ExitsOnLoad:
    def __reduce__(self):
        return (exit, (3,))


def test_a_result_that_raises_system_exit_when_loaded_is_a_remote_error() -> None:
    data, buffers = payloads.dumps(_ExitsOnLoad())
    with pytest.raises(RemoteError, match="cannot be unpickled here"):
        outcome.unpack("remote@127.0.0.9", outcome.OK, data, buffers)
