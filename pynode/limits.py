"""Limits a node puts on what its peers may make it do: message sizes and handshake slots.

A node is a remote code execution service for whoever holds the cookie, and a listener any
stranger can open connections to; these bounds keep a broken or hostile peer from exhausting the
node's memory or threads:

- ``max_message_size`` bounds one message: its frame, each out-of-band attachment and their sum.
  Each side announces its own in the handshake (:mod:`pynode.handshake`), so a sender refuses a
  message the receiver would refuse (:class:`~pynode.errors.MessageTooLarge`, nothing sent), and a
  receiver closes a connection whose frame header announces more, from the header alone, before
  it allocates anything (:mod:`pynode.transport`);
- ``handshake_slots`` bounds the connections that have not yet proved the cookie: each holds a
  thread for at most the handshake timeout, and more are closed as soon as they are accepted.
  Erlang's handshakes (:mod:`pynode.beam`) take the same slots: the listener runs them inside
  its authenticator;
- ``beam_max_calls`` bounds the Python functions one BEAM peer runs here at once (each
  ``:erpc.call``/``cast``, ``:rpc.call``, ``Node.spawn`` is a thread of its own,
  :mod:`pynode.beam.tasks`); one over it is refused with Erlang's ``system_limit``
  (``:erpc.call`` raises ``{:erpc, :system_limit}``, ``:rpc.call`` returns
  ``{:badrpc, :system_limit}``, a cast is dropped and logged) and no thread is started.
"""

from __future__ import annotations

import os

from pynode.errors import PynodeError

# Default largest message (bytes): a 1 GiB array still travels, a header announcing 4 GiB does not.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 30
# Smallest accepted max_message_size: an error reply (outcome.MAX_ERROR_TEXT of message and
# traceback text) and every fixed-size message must always fit.
MIN_MESSAGE_SIZE = 1 << 20
# Largest accepted max_message_size (the handshake field is a u64; one frame is at most 4 GiB - 1
# anyway, rpyc's frame length being a u32).
MAX_MESSAGE_SIZE = 1 << 62
# One frame's length field is a u32 (rpyc's frame header).
MAX_FRAME = (1 << 32) - 1
# Default number of connections allowed to be in their handshake at once (Erlang has no such
# bound; 64 concurrent connection set-ups is far more than a cluster of this kind needs, and 64
# threads stalled for the handshake timeout are cheap).
DEFAULT_HANDSHAKE_SLOTS = 64

# Default number of Python functions one BEAM peer may run here at once (threads; a notebook's
# erpc:multicall or a pool of Elixir tasks stays far below it).
DEFAULT_BEAM_MAX_CALLS = 256

MAX_MESSAGE_SIZE_ENV = "PYNODE_MAX_MESSAGE_SIZE"
BEAM_MAX_CALLS_ENV = "PYNODE_BEAM_MAX_CALLS"
HANDSHAKE_SLOTS_ENV = "PYNODE_HANDSHAKE_SLOTS"

_SUFFIXES = {"": 1, "K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str, where: str) -> int:
    """``"1073741824"``, ``"64M"``, ``"1GiB"`` -> bytes. Raises PynodeError naming ``where``."""
    raw = text.strip().upper().replace(" ", "")
    digits = raw.rstrip("KMGIB")
    suffix = raw[len(digits):]
    if not digits.isdigit() or suffix not in _SUFFIXES:
        raise PynodeError(f"{where} {text!r} is not a size in bytes (e.g. 1073741824, 64M, 1GiB)")
    return int(digits) * _SUFFIXES[suffix]


def max_message_size(value: int | str | None) -> int:
    """The node's limit: ``value``, else ``$PYNODE_MAX_MESSAGE_SIZE``, else the default; checked
    to lie in [MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE]. Raises PynodeError naming the bad value."""
    where = "max_message_size"
    if value is None:
        env = os.environ.get(MAX_MESSAGE_SIZE_ENV)
        if not env:
            return DEFAULT_MAX_MESSAGE_SIZE
        value, where = env, f"${MAX_MESSAGE_SIZE_ENV}"
    size = parse_size(value, where) if isinstance(value, str) else value
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_MESSAGE_SIZE <= size <= MAX_MESSAGE_SIZE:
        raise PynodeError(f"{where} {value!r} must be an integer from {MIN_MESSAGE_SIZE} to {MAX_MESSAGE_SIZE} bytes")
    return size


def handshake_slots(value: int | None) -> int:
    """``value``, else ``$PYNODE_HANDSHAKE_SLOTS``, else the default; at least 1."""
    return _positive(value, "handshake_slots", HANDSHAKE_SLOTS_ENV, DEFAULT_HANDSHAKE_SLOTS)


def beam_max_calls(value: int | None) -> int:
    """``value``, else ``$PYNODE_BEAM_MAX_CALLS``, else the default; at least 1."""
    return _positive(value, "beam_max_calls", BEAM_MAX_CALLS_ENV, DEFAULT_BEAM_MAX_CALLS)


def _positive(value: int | None, where: str, env_name: str, default: int) -> int:
    if value is None:
        env = os.environ.get(env_name)
        if not env:
            return default
        where = f"${env_name}"
        try:
            value = int(env)
        except ValueError:
            raise PynodeError(f"{where} {env!r} is not an integer") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PynodeError(f"{where} {value!r} must be a positive integer")
    return value
