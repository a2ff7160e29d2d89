"""pynode's wire and connection layers import only what lies below them (docs/design.md).

Each module listed in LAYERS may import (at run time or under TYPE_CHECKING) only pynode modules
of a lower layer, or the leaf modules in BASE. A module above them (the node, erpc, processes,
tooling) may import anything below it; it is not listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pynode

# Leaf modules: they import no pynode module but errors (and each other's constants).
BASE = {"errors", "names", "kinds", "execution", "bufferpool", "codecache", "fnpickle", "cookie", "limits"}
# Bottom up; a module may import the modules of the layers before its own.
LAYERS = [
    ["handshake"],
    ["transport"],
    ["payload"],
    ["protocol"],
    ["readtoken", "pending", "outcome", "ticks"],
    ["reading"],
    ["connection"],
    ["mesh"],
]
RANK = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}


def pynode_imports(module: str) -> set[str]:
    source = (Path(pynode.__file__).parent / f"{module}.py").read_text()
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "pynode":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("pynode."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("pynode."))
    return found


@pytest.mark.parametrize("module", list(RANK))
def test_a_lower_layer_never_imports_a_higher_one(module: str) -> None:
    rank = RANK[module]
    for imported in pynode_imports(module):
        if imported in BASE:
            continue
        assert imported in RANK, f"pynode.{module} imports pynode.{imported}, which is above the connection layer"
        assert RANK[imported] < rank, f"pynode.{module} imports pynode.{imported} (same layer or above it)"


def test_the_protocol_imports_only_frames_errors_and_the_send_shield() -> None:
    assert pynode_imports("protocol") <= {"transport", "execution", "errors", "names"}
