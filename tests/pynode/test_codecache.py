"""Code objects pickled once and rebuilt once, without changing what a shipped function does."""

from __future__ import annotations

import gc
import pickle
import sys

import cloudpickle
import pytest

from pynode import codecache
from pynode import payload as payloads

# Functions defined here travel by value, as a notebook's do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def ship(obj: object) -> object:
    return payloads.loads(*payloads.dumps(obj))


def make_counter_reader(state: list[int]):
    return lambda: sum(state)


def test_captured_state_is_pickled_afresh_on_every_call() -> None:
    state = [1, 2]
    reader = make_counter_reader(state)
    first = ship(reader)
    state.append(10)
    second = ship(reader)
    assert (first(), second()) == (3, 13)  # the second copy sees the list as it is now
    assert first.__code__ is second.__code__  # only the immutable code object is shared


def test_globals_and_defaults_are_not_cached() -> None:
    def scaled(x, factor=[2]):
        return x * factor[0] * GLOBAL_OFFSET[0]

    GLOBAL_OFFSET[0] = 1
    assert ship(scaled)(5) == 10
    scaled.__defaults__[0][0] = 3
    GLOBAL_OFFSET[0] = 7
    assert ship(scaled)(5) == 105


GLOBAL_OFFSET = [1]


def test_a_code_object_is_pickled_once_while_it_lives() -> None:
    namespace: dict[str, object] = {}
    exec("def f():\n    return 42\n", namespace)
    code = namespace["f"].__code__
    first, second = codecache.reduce_code(code), codecache.reduce_code(code)
    assert first[1][0] is second[1][0]
    assert codecache.load_code(first[1][0]).co_consts == code.co_consts
    key = id(code)
    del namespace, code, first, second
    gc.collect()
    assert key not in codecache._blobs


def test_receiver_keeps_at_most_code_cache_size_code_objects(monkeypatch) -> None:
    monkeypatch.setattr(codecache, "CODE_CACHE_SIZE", 2)
    monkeypatch.setattr(codecache, "_codes", type(codecache._codes)())
    blobs = [cloudpickle.dumps(compile(f"{i}", "<test>", "eval")) for i in range(3)]
    codes = [codecache.load_code(b) for b in blobs]
    assert list(codecache._codes) == blobs[1:]  # the least recently used one went
    assert codecache.load_code(blobs[2]) is codes[2]
    assert eval(codecache.load_code(blobs[0])) == 0  # rebuilt again on demand


def test_a_blob_that_is_not_a_code_object_is_refused() -> None:
    with pytest.raises(pickle.UnpicklingError, match="expected a pickled code object, got list"):
        codecache.load_code(pickle.dumps([1, 2]))
