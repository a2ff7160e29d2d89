"""Functions pickled by value through pynode.fnpickle rebuild as cloudpickle's do.

Every by-value case is shipped twice from the same object: through ``payload.dumps`` /
``payload.loads`` (which must use fnpickle: checked on the payload) and through plain
``cloudpickle.dumps`` / ``pickle.loads``; the two rebuilt functions are compared attribute by
attribute, cell by cell, global by global, and by calling them. Functions of this module are
importable (cloudpickle pickles them by reference), so by-value functions are made nested
(``<locals>`` in their qualname), in ``exec``'d namespaces named ``__main__`` (how notebook
functions look), or in a throwaway module registered with ``cloudpickle.register_pickle_by_value``.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import importlib
import inspect
import json
import os
import pickle
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from pynode import erpc, fnpickle
from pynode import payload as payloads
from pynode.testing import LocalCluster, this_node

# What a payload holds when fnpickle rebuilds a function, and when cloudpickle's own reduction does.
FNPICKLE_MARK = b"pynode.fnpickle"
CLOUDPICKLE_SETSTATE = b"_function_setstate"
# Attributes a by-value function carries besides its code, closure and globals.
ATTRIBUTES = ("__name__", "__qualname__", "__module__", "__doc__", "__defaults__", "__kwdefaults__",
              "__annotations__", "__dict__")
EMPTY = "<empty cell>"  # how cells() shows a cell without a value


def ship(obj: object) -> Any:
    """``obj`` through pynode's transport, asserting that fnpickle built the payload."""
    data, buffers = payloads.dumps(obj)
    assert FNPICKLE_MARK in data and CLOUDPICKLE_SETSTATE not in data
    return payloads.loads(data, buffers)


def via_cloudpickle(obj: object) -> Any:
    return pickle.loads(cloudpickle.dumps(obj, protocol=payloads.PICKLE_PROTOCOL))


def both(obj: object) -> tuple[Any, Any]:
    """``obj`` rebuilt by fnpickle (through the transport) and by cloudpickle."""
    return ship(obj), via_cloudpickle(obj)


def cells(fn: types.FunctionType) -> dict[str, Any]:
    """The closure of ``fn`` by free variable name; EMPTY for an empty cell."""
    values: dict[str, Any] = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            values[name] = cell.cell_contents
        except ValueError:
            values[name] = EMPTY
    return values


def comparable(value: Any) -> Any:
    """``value`` with the functions in a dict or tuple replaced by their qualnames: two rebuilds
    of one function are different objects."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(comparable(item) for item in value)
    return value.__qualname__ if isinstance(value, types.FunctionType) else value


def assert_equivalent(
    original: types.FunctionType, ours: types.FunctionType, theirs: types.FunctionType
) -> None:
    """``ours`` (fnpickle's) is a new function equal to ``theirs`` (cloudpickle's) in every
    attribute, in its closure's cells (values compared with ``==``) and in its globals' keys."""
    assert type(ours) is types.FunctionType and ours is not original
    assert ours.__code__ == original.__code__
    for name in ATTRIBUTES:
        assert comparable(getattr(ours, name)) == comparable(getattr(theirs, name)), name
        assert type(getattr(ours, name)) is type(getattr(theirs, name)), name
    assert ours.__dict__ is not original.__dict__
    assert (ours.__closure__ is None) == (theirs.__closure__ is None) == (original.__closure__ is None)
    assert cells(ours).keys() == cells(theirs).keys()
    for name, value in cells(ours).items():
        other = cells(theirs)[name]
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other)
        elif not callable(value):  # rebuilt functions are compared by their own tests
            assert value == other, name
    assert ours.__globals__.keys() == theirs.__globals__.keys()
    assert ours.__globals__ is not original.__globals__
    assert ours.__globals__["__builtins__"] is theirs.__globals__["__builtins__"] is builtins.__dict__


def assert_same_calls(ours: Callable[..., Any], theirs: Callable[..., Any], *calls: tuple[Any, ...]) -> None:
    for args in calls:
        assert ours(*args) == theirs(*args), args


def main_namespace(source: str, **names: Any) -> dict[str, Any]:
    """The globals of ``source`` executed as a notebook cell is: a fresh dict named ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__", **names}
    exec(compile(textwrap.dedent(source), "<cell>", "exec", dont_inherit=True), namespace)
    return namespace


def module_level_function(x: int) -> int:
    return x + 1


# --- closures and plain lambdas ------------------------------------------------------------------


def test_lambda_without_closure() -> None:
    double = lambda x: x * 2  # noqa: E731
    ours, theirs = both(double)
    assert_equivalent(double, ours, theirs)
    assert ours.__closure__ is None
    assert_same_calls(ours, theirs, (0,), (21,), ("ab",))
    assert ours(21) == 42


def test_closure_over_an_int() -> None:
    offset = 7

    def add(x):
        return x + offset

    ours, theirs = both(add)
    assert_equivalent(add, ours, theirs)
    assert cells(ours) == {"offset": 7}
    assert_same_calls(ours, theirs, (0,), (-7,), (100,))


def test_closure_over_a_list_carries_its_value_at_pickling_time() -> None:
    items = [1]

    def total():
        return sum(items)

    items.append(2)  # mutated after the definition, before pickling: travels
    ours, theirs = both(total)
    items.append(100)  # after pickling: does not
    assert_equivalent(total, ours, theirs)
    assert (ours(), theirs(), total()) == (3, 3, 103)
    assert cells(ours)["items"] is not items


@pytest.mark.parametrize("size", [10, 100_000], ids=["in-band", "out-of-band"])
def test_closure_over_a_numpy_array(size: int) -> None:
    weights = np.linspace(0.0, 1.0, size)

    def weighted(scale):
        return float((weights * scale).sum())

    ours, theirs = both(weighted)
    assert_equivalent(weighted, ours, theirs)
    np.testing.assert_array_equal(cells(ours)["weights"], weights)
    assert cells(ours)["weights"].dtype == weights.dtype
    assert_same_calls(ours, theirs, (1.0,), (-2.5,))


def test_defaults_and_keyword_only_defaults() -> None:
    base = 10

    def combine(a, b=2, *rest, c=3, d, **extra):
        return (base, a, b, rest, c, d, sorted(extra.items()))

    ours, theirs = both(combine)
    assert_equivalent(combine, ours, theirs)
    assert (ours.__defaults__, ours.__kwdefaults__) == ((2,), {"c": 3})
    assert ours(1, d=4) == theirs(1, d=4) == (10, 1, 2, (), 3, 4, [])
    assert ours(1, 5, 6, 7, d=0) == theirs(1, 5, 6, 7, d=0) == (10, 1, 5, (6, 7), 3, 0, [])
    assert ours(1, c=0, d=4, z=9) == combine(1, c=0, d=4, z=9)
    with pytest.raises(TypeError):
        ours(1)  # d has no default, as before


def test_keyword_only_argument_without_default_keeps_kwdefaults_none() -> None:
    def keyword(*, d):
        return d

    ours, theirs = both(keyword)
    assert_equivalent(keyword, ours, theirs)
    assert ours.__kwdefaults__ is None and ours.__defaults__ is None


def test_mutable_default_is_the_one_at_pickling_time() -> None:
    def append(x, seen=[]):  # noqa: B006 - the shared default is what is tested
        seen.append(x)
        return list(seen)

    append(1)
    ours, theirs = both(append)
    append(2)
    assert_equivalent(append, ours, theirs)
    assert ours.__defaults__ == ([1],)
    assert ours(3) == theirs(3) == [1, 3]


def test_annotations_travel() -> None:
    namespace = main_namespace(
        """
        def annotated(x: int, y: list[float] = None) -> dict[str, int]:
            return {"x": x}
        """
    )
    annotated = namespace["annotated"]
    ours, theirs = both(annotated)
    assert_equivalent(annotated, ours, theirs)
    assert ours.__annotations__ == {"x": int, "y": list[float], "return": dict[str, int]}

    def stringly(x: np.ndarray) -> int:  # strings: this module imports annotations from __future__
        return 1

    ours, theirs = both(stringly)
    assert_equivalent(stringly, ours, theirs)
    assert ours.__annotations__ == {"x": "np.ndarray", "return": "int"}


def test_function_without_annotations_has_an_empty_dict() -> None:
    plain = lambda: 1  # noqa: E731
    ours, theirs = both(plain)
    assert ours.__annotations__ == theirs.__annotations__ == {}
    ours.__annotations__["x"] = int  # a dict of its own, writable
    assert plain.__annotations__ == {}


def test_docstring_travels_and_a_cleared_one_stays_cleared() -> None:
    def documented():
        """Says what it does."""
        return 1

    ours, theirs = both(documented)
    assert_equivalent(documented, ours, theirs)
    assert ours.__doc__ == "Says what it does."

    documented.__doc__ = None  # the code still starts with the string constant
    ours, theirs = both(documented)
    assert_equivalent(documented, ours, theirs)
    assert ours.__doc__ is None

    documented.__doc__ = "Replaced."
    assert ship(documented).__doc__ == "Replaced."


def test_lambda_returning_a_string_has_no_docstring() -> None:
    text = lambda: "text"  # noqa: E731
    assert text.__doc__ is None
    ours, theirs = both(text)
    assert_equivalent(text, ours, theirs)
    assert ours.__doc__ is None
    assert ours() == "text"


def test_renamed_function_keeps_its_names() -> None:
    def original():
        return "renamed"

    original.__name__ = "other"
    original.__qualname__ = "X.other"
    ours, theirs = both(original)
    assert_equivalent(original, ours, theirs)
    assert (ours.__name__, ours.__qualname__) == ("other", "X.other")
    assert ours.__code__.co_name == "original"
    assert "X.other" in repr(ours)


def test_function_attributes_travel_in_a_dict_of_their_own() -> None:
    def tagged():
        return tagged.count

    tagged.count = 3
    tagged.tags = ["a", "b"]
    tagged.me = tagged
    ours, theirs = both(tagged)
    assert ours.__dict__.keys() == theirs.__dict__.keys() == {"count", "tags", "me"}
    assert (ours.count, ours.tags) == (theirs.count, theirs.tags) == (3, ["a", "b"])
    assert ours.me is ours and theirs.me is theirs
    assert ours() == 3  # reads itself through its own closure cell
    assert cells(ours)["tagged"] is ours
    ours.count = 5
    assert (ours(), tagged()) == (5, 3)
    ours, ours_dict = ship([tagged, tagged.__dict__])  # the attributes are copied, not adopted
    theirs, theirs_dict = via_cloudpickle([tagged, tagged.__dict__])
    assert ours.__dict__ is not ours_dict and theirs.__dict__ is not theirs_dict
    assert ours_dict["me"] is ours


def test_wrapped_function_keeps_functools_wraps_metadata() -> None:
    def inner(x: int) -> int:
        """Inner."""
        return x * 3

    @functools.wraps(inner)
    def wrapper(*args):
        return inner(*args) + 1

    ours, theirs = both(wrapper)
    assert_equivalent(wrapper, ours, theirs)
    assert (ours.__name__, ours.__doc__) == ("inner", "Inner.")
    assert ours.__annotations__ == {"x": "int", "return": "int"}
    assert ours.__wrapped__(2) == 6 and ours(2) == theirs(2) == 7
    assert ours.__wrapped__ is cells(ours)["inner"]  # one rebuilt inner, shared


def test_module_attribute_set_to_main_or_to_an_unknown_module() -> None:
    def relocated():
        return 1

    for module in ("__main__", "no_such_module_anywhere"):
        relocated.__module__ = module
        ours, theirs = both(relocated)
        assert_equivalent(relocated, ours, theirs)
        assert ours.__module__ == module


# --- empty cells -----------------------------------------------------------------------------------


def test_cell_assigned_only_after_pickling_stays_empty() -> None:
    def enclosing():
        def reader():
            return later

        rebuilt = both(reader)
        later = "assigned after pickling"
        return reader, rebuilt

    reader, (ours, theirs) = enclosing()
    assert reader() == "assigned after pickling"
    assert cells(ours) == cells(theirs) == {"later": EMPTY}
    for rebuilt in (ours, theirs):
        with pytest.raises(NameError, match="later"):
            rebuilt()


def test_deleted_variable_leaves_an_empty_cell_between_full_ones() -> None:
    def enclosing(drop):
        first, gone, last = "a", "b", "c"

        def reader(use_gone=False):
            return gone if use_gone else first + last

        if drop:
            del gone
        return reader

    reader = enclosing(drop=True)
    ours, theirs = both(reader)
    assert_equivalent(reader, ours, theirs)
    assert cells(ours) == {"first": "a", "gone": EMPTY, "last": "c"}
    assert ours() == theirs() == "ac"
    for rebuilt in (ours, theirs):
        with pytest.raises(NameError, match="gone"):
            rebuilt(use_gone=True)


def test_a_cell_holding_none_next_to_an_empty_one_keeps_its_none() -> None:
    """An empty cell travels as its index (its slot among the values is None): a cell that
    really holds None must come back holding None, and only the empty one stays empty."""

    def enclosing():
        nothing = None

        def holder(use_later=False):
            return later if use_later else nothing

        return holder
        later = 1  # noqa: F841 - never assigned: its cell stays empty

    holder = enclosing()
    ours, theirs = both(holder)
    assert cells(ours) == cells(theirs) == {"later": EMPTY, "nothing": None}
    assert ours() is None and theirs() is None
    with pytest.raises(NameError, match="later"):
        ours(use_later=True)


# --- recursion and shared globals -----------------------------------------------------------------


def test_recursive_nested_function_refers_to_its_rebuilt_self() -> None:
    def factorial(n):
        return 1 if n <= 1 else n * factorial(n - 1)

    ours, theirs = both(factorial)
    assert_equivalent(factorial, ours, theirs)
    assert cells(ours)["factorial"] is ours
    assert_same_calls(ours, theirs, (0,), (1,), (10,))
    assert ours(10) == 3628800


def test_mutually_recursive_main_functions_share_one_globals_dict() -> None:
    namespace = main_namespace(
        """
        def even(n):
            return True if n == 0 else odd(n - 1)

        def odd(n):
            return False if n == 0 else even(n - 1)

        unrelated = "not referenced"
        """
    )
    even = namespace["even"]
    ours, theirs = both(even)
    assert_equivalent(even, ours, theirs)
    ours_odd = ours.__globals__["odd"]
    assert ours_odd is not namespace["odd"]
    assert ours_odd.__globals__ is ours.__globals__
    assert ours_odd.__globals__["even"] is ours
    assert set(ours.__globals__) == {"__name__", "__builtins__", "odd", "even"}
    assert_same_calls(ours, theirs, (0,), (7,), (10,))
    assert_same_calls(ours_odd, theirs.__globals__["odd"], (0,), (7,), (10,))


def test_functions_of_one_payload_share_their_globals_and_separate_payloads_do_not() -> None:
    namespace = main_namespace(
        """
        counter = [0]
        scale = 2

        def bump():
            counter[0] += 1
            return counter[0]

        def scaled(x):
            return x * scale
        """
    )
    bump, scaled = namespace["bump"], namespace["scaled"]
    ours_bump, ours_scaled = ship((bump, scaled))
    theirs_bump, theirs_scaled = via_cloudpickle((bump, scaled))
    assert ours_bump.__globals__ is ours_scaled.__globals__
    assert theirs_bump.__globals__ is theirs_scaled.__globals__
    assert ours_bump.__globals__.keys() == theirs_bump.__globals__.keys() == {
        "__name__", "__builtins__", "counter", "scale"}
    assert (ours_bump(), ours_bump(), ours_scaled(4)) == (1, 2, 8)
    assert namespace["counter"] == [0]
    assert ship(bump).__globals__ is not ship(bump).__globals__


def test_functions_of_different_globals_in_one_payload_keep_them_apart() -> None:
    first = main_namespace("value = 1\ndef get():\n    return value\n")["get"]
    second = main_namespace("value = 2\ndef get():\n    return value\n")["get"]
    ours_first, ours_second = ship([first, second])
    assert ours_first.__globals__ is not ours_second.__globals__
    assert (ours_first(), ours_second()) == (1, 2)


def test_only_referenced_globals_and_module_keys_travel() -> None:
    namespace = main_namespace(
        """
        import json
        LIMIT = 3
        unused = object()

        def encode(values):
            inner = lambda v: min(v, LIMIT)  # a global seen only from a nested code object
            return json.dumps([inner(v) for v in values])
        """,
        __package__=None,
        __file__="/notebook/cell.py",
    )
    encode = namespace["encode"]
    ours, theirs = both(encode)
    assert_equivalent(encode, ours, theirs)
    assert set(ours.__globals__) == {"__name__", "__package__", "__file__", "__builtins__", "json", "LIMIT"}
    assert ours.__globals__["__file__"] == "/notebook/cell.py"
    assert ours.__globals__["json"] is json
    assert ours([1, 5]) == theirs([1, 5]) == "[1, 3]"


def test_globals_carry_their_value_at_pickling_time() -> None:
    namespace = main_namespace("factor = 2\ndef times(x):\n    return x * factor\n")
    ours, theirs = both(namespace["times"])
    namespace["factor"] = 100
    assert ours(3) == theirs(3) == 6


def test_builtins_work_in_the_rebuilt_function() -> None:
    namespace = main_namespace(
        "def stats(xs):\n    return len(xs), max(xs), sorted(xs), isinstance(xs, list)\n"
    )
    ours, theirs = both(namespace["stats"])
    assert ours.__globals__["__builtins__"] is builtins.__dict__
    assert ours([3, 1, 2]) == theirs([3, 1, 2]) == (3, 3, [1, 2, 3], True)


def test_global_missing_at_pickling_time_raises_name_error_when_called() -> None:
    namespace = main_namespace("def late():\n    return defined_later\n")
    ours, theirs = both(namespace["late"])
    namespace["defined_later"] = 1
    assert namespace["late"]() == 1
    assert "defined_later" not in ours.__globals__ and "defined_later" not in theirs.__globals__
    for rebuilt in (ours, theirs):
        with pytest.raises(NameError, match="defined_later"):
            rebuilt()


def test_submodule_reached_through_a_global_package_works() -> None:
    namespace = main_namespace("def join(*parts):\n    return os.path.join(*parts)\n", os=os)
    ours, theirs = both(namespace["join"])
    assert_equivalent(namespace["join"], ours, theirs)
    assert_same_calls(ours, theirs, ("a", "b"), ("/x", "y", "z"))


def test_submodule_is_imported_by_a_fresh_interpreter_that_unpickles_the_function() -> None:
    importlib.import_module("xml.dom.minidom")  # a submodule the function needs, imported here
    namespace = main_namespace(
        "def root_tag(text):\n    return xml.dom.minidom.parseString(text).documentElement.tagName\n",
        xml=sys.modules["xml"],
    )
    data, buffers = payloads.dumps(namespace["root_tag"])
    assert FNPICKLE_MARK in data and not buffers
    receiver = textwrap.dedent(
        """
        import sys
        from pynode import payload as payloads
        data = sys.stdin.buffer.read()
        before = "xml.dom.minidom" in sys.modules
        fn = payloads.loads(data)
        print(before, fn("<root><child/></root>"))
        """
    )
    done = subprocess.run([sys.executable, "-c", receiver], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["False", "root"]


# --- generators, coroutines, classes ----------------------------------------------------------------


def test_generator_function() -> None:
    step = 3

    def multiples(n):
        for i in range(n):
            yield i * step

    ours, theirs = both(multiples)
    assert_equivalent(multiples, ours, theirs)
    assert inspect.isgeneratorfunction(ours)
    assert list(ours(4)) == list(theirs(4)) == [0, 3, 6, 9]


def test_coroutine_function() -> None:
    offset = 1

    async def later(x):
        await asyncio.sleep(0)
        return x + offset

    ours, theirs = both(later)
    assert_equivalent(later, ours, theirs)
    assert inspect.iscoroutinefunction(ours)
    assert asyncio.run(ours(41)) == asyncio.run(theirs(41)) == 42


def test_methods_of_a_class_pickled_by_value() -> None:
    class Base:
        def describe(self):
            return "base"

    class Child(Base):
        factor = 2

        def describe(self):
            return "child of " + super().describe()  # a __class__ cell: the class being pickled

        @staticmethod
        def double(x):
            return 2 * x

        @classmethod
        def make(cls):
            return cls()

        @property
        def scaled(self):
            return self.factor * 10

    original = Child.__dict__["describe"]
    rebuilt_class = ship(Child)
    # cloudpickle tracks classes it pickled: in the same process the rebuilt class is the
    # original one, its attributes replaced by the rebuilt ones (fnpickle's functions here).
    assert rebuilt_class is Child
    describe = Child.__dict__["describe"]
    assert describe is not original and describe.__code__ == original.__code__
    assert cells(describe)["__class__"] is Child
    instance = Child.make()
    assert (instance.describe(), Child.double(4), instance.scaled) == ("child of base", 8, 20)
    bound = ship(instance.describe)
    assert bound.__func__ is not describe and bound() == "child of base"


def test_partial_of_a_lambda() -> None:
    power = functools.partial(lambda base, exponent: base**exponent, exponent=3)
    ours, theirs = both(power)
    assert ours(2) == theirs(2) == 8
    assert ours.keywords == {"exponent": 3}


def test_a_rebuilt_function_ships_again() -> None:
    bias = 5

    def biased(x, *, k=2):
        """Biased."""
        return x * k + bias

    biased.label = "b"
    once = ship(biased)
    twice, theirs = both(once)
    assert_equivalent(once, twice, theirs)
    assert (twice(1), twice.label, twice.__doc__, twice.__kwdefaults__) == (7, "b", "Biased.", {"k": 2})


# --- which functions go by value ---------------------------------------------------------------------


def test_importable_function_goes_by_reference_in_a_small_pickle() -> None:
    for fn in (os.path.join, module_level_function):
        data, buffers = payloads.dumps(fn)
        assert FNPICKLE_MARK not in data and not buffers
        assert fn.__name__.encode() in data and len(data) < 150
        assert payloads.loads(data) is fn


def test_function_whose_qualname_finds_another_object_goes_by_value() -> None:
    def impostor(x):
        return -x

    impostor.__module__ = __name__
    impostor.__qualname__ = "module_level_function"  # the lookup finds a different function
    ours, theirs = both(impostor)
    assert_equivalent(impostor, ours, theirs)
    assert ours is not module_level_function and ours(3) == -3


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A throwaway package, importable from ``tmp_path`` and registered to pickle by value."""
    name = "fnpickle_probe_package"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(
        textwrap.dedent(
            '''
            """A throwaway package."""
            import os

            SCALE = 3


            def helper(x):
                return x + 1


            def scaled(x, *, offset=1):
                """Scale x."""
                return helper(x) * SCALE + offset


            def even(n):
                return True if n == 0 else odd(n - 1)


            def odd(n):
                return False if n == 0 else even(n - 1)


            def joined(*parts):
                return os.path.join(*parts)


            def replaced():
                return "old"


            stale = replaced


            def replaced():
                return "new"
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    try:
        yield module
    finally:
        sys.modules.pop(name, None)


def test_functions_of_a_module_registered_by_value(probe_package: types.ModuleType) -> None:
    cloudpickle.register_pickle_by_value(probe_package)
    try:
        ours, theirs = both(probe_package.scaled)
        assert_equivalent(probe_package.scaled, ours, theirs)
        assert ours.__module__ == probe_package.__name__
        expected_keys = {"__name__", "__package__", "__path__", "__file__", "__builtins__", "helper", "SCALE"}
        assert set(ours.__globals__) == expected_keys
        assert ours.__globals__["__path__"] == probe_package.__path__
        assert ours.__globals__["__file__"] == probe_package.__file__
        helper = ours.__globals__["helper"]
        assert helper is not probe_package.helper and helper.__globals__ is ours.__globals__
        assert_same_calls(ours, theirs, (1,), (5,))
        assert ours(5, offset=0) == 18

        ours_even, theirs_even = both(probe_package.even)
        assert ours_even.__globals__["odd"].__globals__ is ours_even.__globals__
        assert_same_calls(ours_even, theirs_even, (0,), (9,), (12,))

        ours_joined, theirs_joined = both(probe_package.joined)
        assert_same_calls(ours_joined, theirs_joined, ("p", "q"))
    finally:
        cloudpickle.unregister_pickle_by_value(probe_package)
    assert payloads.loads(*payloads.dumps(probe_package.scaled)) is probe_package.scaled


def test_replaced_module_function_goes_by_value(probe_package: types.ModuleType) -> None:
    stale = probe_package.stale  # its qualname now finds the newer definition
    assert stale() == "old"
    ours, theirs = both(stale)
    assert_equivalent(stale, ours, theirs)
    assert ours() == theirs() == "old"
    assert payloads.loads(*payloads.dumps(probe_package.replaced)) is probe_package.replaced


# --- make_function -------------------------------------------------------------------------------------


def test_make_function_rejects_a_closure_cell_count_mismatch() -> None:
    def enclosing():
        value = 1
        return lambda: value

    code = enclosing().__code__
    with pytest.raises(TypeError):  # a closure is missing
        fnpickle.make_function(code, {}, -1)
    for ncells in (0, 2):
        with pytest.raises(ValueError, match="closure of length 1"):
            fnpickle.make_function(code, {}, ncells)
    with pytest.raises(ValueError, match="closure of length 0"):
        fnpickle.make_function((lambda: 1).__code__, {}, 1)
    assert cells(fnpickle.make_function(code, {}, 1)) == {"value": EMPTY}


# --- end to end ----------------------------------------------------------------------------------------

REMOTE = "fnpickle_node@127.0.0.171"
ME = "fnpickle_test@127.0.0.170"


def test_a_closure_with_defaults_a_docstring_and_an_array_runs_on_a_real_node(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = local_cluster([REMOTE])
    weights = np.arange(5.0)

    def weighted(x, *, scale=2.0):
        """Weighted sum."""
        return weighted.__doc__, float((weights * x).sum() * scale), os.getpid()

    with this_node(ME, cookie=cluster.cookie):
        doc, total, pid = erpc.call(REMOTE, weighted, 3.0, timeout=30)
    assert (doc, total, pid) == ("Weighted sum.", 60.0, cluster.pid(REMOTE))
