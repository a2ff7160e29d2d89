"""Code objects of shipped functions, pickled once per sender and rebuilt once per receiver.

cloudpickle pickles a closure by value: its code object field by field, then its state (captured
cells, referenced globals, defaults, ...). The bench's trivial ``erpc.call(node, lambda: None)``
spent about a third of its pickling time on the code object, and the receiver as long again
rebuilding it, although a call site sends the same code object every time.

A code object is immutable (its constants are too: numbers, strings, bytes, tuples, frozensets,
code), so its pickle depends on nothing else and can be cached, and one rebuilt code object can
serve every function unpickled from it: that is how CPython itself shares one code object among
all closures created by one ``def`` or ``lambda``. Everything mutable a function carries (cells,
globals, defaults, ``__dict__``) is *not* cached: cloudpickle pickles it afresh on every call, so
call semantics are unchanged. (Caching rebuilt *functions* by a digest of their pickle would not
be: a closure over a list must see the list as it is at each call.)

- sender: :func:`reduce_code` maps a code object to ``load_code(blob)``, ``blob`` being its
  cloudpickle pickle, computed once per live code object (dropped when the code object dies);
- receiver: :func:`load_code` rebuilds ``blob`` once and keeps the last CODE_CACHE_SIZE code
  objects by their exact pickle bytes.

Failure modes: a blob that does not unpickle to a code object raises ``pickle.UnpicklingError``
(the call fails like any undecodable payload); the cache never changes what a call computes.
"""

from __future__ import annotations

import pickle
import threading
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable

import cloudpickle

# Code objects kept by a receiving node: a notebook session ships tens to hundreds of distinct
# functions; each entry is a code object of a few kB.
CODE_CACHE_SIZE = 512

_blobs: dict[int, bytes] = {}  # id(code) -> its pickle, while the code object lives
_blob_lock = threading.Lock()
_codes: OrderedDict[bytes, types.CodeType] = OrderedDict()  # least recently used first
_code_lock = threading.Lock()


def reduce_code(code: types.CodeType) -> tuple[Callable[[bytes], types.CodeType], tuple[bytes]]:
    """The pickle reduction of ``code``: ``load_code(blob)``, with ``blob`` cached."""
    key = id(code)
    blob = _blobs.get(key)
    if blob is None:
        blob = cloudpickle.dumps(code, protocol=pickle.HIGHEST_PROTOCOL)
        with _blob_lock:
            if key not in _blobs:
                weakref.finalize(code, _blobs.pop, key, None)  # before a reused id could clash
                _blobs[key] = blob
    return load_code, (blob,)


def load_code(blob: bytes) -> types.CodeType:
    """The code object pickled in ``blob``, rebuilt at most once while it stays cached.

    Raises pickle.UnpicklingError when ``blob`` is not a pickled code object.
    """
    with _code_lock:
        code = _codes.get(blob)
        if code is not None:
            _codes.move_to_end(blob)
            return code
    code = pickle.loads(blob)
    if type(code) is not types.CodeType:
        raise pickle.UnpicklingError(f"expected a pickled code object, got {type(code).__name__}")
    with _code_lock:
        _codes[blob] = code
        if len(_codes) > CODE_CACHE_SIZE:
            _codes.popitem(last=False)
    return code
