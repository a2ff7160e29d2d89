"""pynode.beam.exports: which Python function an Erlang MFA runs, and the exception reason."""

from __future__ import annotations

import pytest

from pynode.beam import exports


@pytest.fixture(autouse=True)
def clean_exports():
    yield
    for module, function in [("Elixir.My.Mod", "fun"), ("math", "sqrt"), ("Elixir.Table", "f")]:
        exports.unexport(module, function)


def test_module_path_rule():
    import os.path

    assert exports.resolve("os.path", "join", 2) is os.path.join


def test_an_export_takes_precedence_and_can_be_per_arity():
    exports.export("math", "sqrt", lambda x: "mine")
    assert exports.resolve("math", "sqrt", 1)(4) == "mine"
    exports.export("Elixir.My.Mod", "fun", lambda: "any arity")
    exports.export("Elixir.My.Mod", "fun", lambda a: "arity 1", arity=1)
    assert exports.resolve("Elixir.My.Mod", "fun", 1)(0) == "arity 1"
    assert exports.resolve("Elixir.My.Mod", "fun", 0)() == "any arity"


def test_unknown_functions_are_undefined():
    with pytest.raises(exports.Undefined, match="not exported"):
        exports.resolve("Elixir.Nobody", "f", 0)  # Elixir names are never module paths
    with pytest.raises(exports.Undefined, match="no Python module"):
        exports.resolve("no_such_module_p12", "f", 0)
    with pytest.raises(exports.Undefined, match="has no function"):
        exports.resolve("math", "no_such_function", 1)
    with pytest.raises(TypeError):
        exports.export("m", "f", 42)


def test_export_tables_name_functions_by_string():
    exports.export_table({("Elixir.Table", "f"): "math:hypot"})
    assert exports.resolve("Elixir.Table", "f", 2)(3, 4) == 5.0
    with pytest.raises(AttributeError):
        exports.export_table({("Elixir.Table", "f"): "math:no_such"})


def test_the_exception_reason_names_class_message_and_traceback():
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        python, name, message, tb = exports.exception_reason(exc)
    assert (python, name, message) == ("python", "ValueError", "bad value")
    assert "Traceback" in tb and "raise ValueError" in tb

    class Custom(Exception):
        pass

    assert exports.exception_reason(Custom("x"))[1].endswith("Custom")
