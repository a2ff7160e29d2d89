"""The %%remote cell machinery: splitting, free names, shipping, running (no network)."""
from __future__ import annotations

import threading

import cloudpickle
import numpy as np
import pytest
from IPython.core.error import UsageError

from livebook_client import magics



def test_split_cell_separates_the_last_expression():
    assert magics.split_cell("x = 1\ny = x + 1\ny * 2\n") == ("x = 1\ny = x + 1", "y * 2")
    assert magics.split_cell("x = 1\n") == ("x = 1", None)


def test_split_cell_refuses_bad_syntax_before_sending():
    with pytest.raises(SyntaxError):
        magics.split_cell("x = (\n")


def test_free_names_are_loaded_but_not_bound_by_the_cell():
    source = "import math\nz = math.sqrt(a)\ndef f(q):\n    return q + b\n[f(i) for i in range(z)]\n"
    assert magics.free_names(source) == ["a", "b", "range"]


def test_captured_values_ship_only_notebook_names_the_cell_reads():
    user_ns = {"data": np.arange(3), "unused": 5, "len": len}
    assert set(magics.captured_values("len(data) + missing", user_ns)) == {"data"}


def test_captured_values_name_an_unpicklable_variable():
    with pytest.raises(TypeError, match="'lock'.*lock"):
        magics.captured_values("lock.acquire()", {"lock": threading.Lock()})


def test_remote_cell_function_runs_by_value_and_returns_last_expression():
    statements, expression = magics.split_cell("import numpy as np\ntotal = np.sum(data)\ntotal * 2")
    shipped = cloudpickle.loads(cloudpickle.dumps(magics._remote_cell_fn(statements, expression)))
    assert shipped({"data": np.arange(4)}) == 12
    assert cloudpickle.loads(cloudpickle.dumps(magics._remote_cell_fn("x = 1", None)))({}) is None


def test_magics_need_a_target(ipython_shell):
    shell = ipython_shell
    shell.extension_manager.load_extension("livebook_client")
    with pytest.raises(UsageError, match="needs a node"):
        shell.run_cell_magic("remote", "", "1 + 1")
    with pytest.raises(UsageError, match="needs a node name"):
        shell.run_line_magic("attach", "")
    with pytest.raises(UsageError, match="'--port'"):
        shell.run_line_magic("attach", "exmc@127.0.0.14 --port 3")


def test_attach_help_shows_the_whole_docstring(ipython_shell):
    shell = ipython_shell
    shell.extension_manager.load_extension("livebook_client")
    info = shell.object_inspect("%attach")  # what `%attach?` shows
    assert info["found"]
    text = info["docstring"]
    assert text.startswith("%attach NODE [--name NAME] [--cookie COOKIE]")
    for part in ("Failure modes", "AttachError", "IncompatibleNode", "port mapper", "--cookie"):
        assert part in text, part


def test_remote_help_states_both_default_timeouts(ipython_shell):
    shell = ipython_shell
    shell.extension_manager.load_extension("livebook_client")
    text = shell.object_inspect("%%remote")["docstring"]
    assert "default 60" in text and "session.sample" in text and "no deadline by" in text
    assert magics.DEFAULT_CALL_TIMEOUT == 60.0


def test_readme_states_both_default_timeouts():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "`%%remote` waits 60 s" in readme and "`session.sample` waits until the chains finish" in readme
