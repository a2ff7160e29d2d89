"""IPython magics: ``%attach NODE`` and ``%%remote [NODE]``.

``%load_ext livebook_client`` registers them. ``%attach exmc@127.0.0.14 [--name N] [--cookie C]``
attaches (see :func:`livebook_client.attach`), returns the session and makes it the default for
``%%remote``. ``%%remote [NODE] [--timeout S]`` runs the cell on the node and returns the value of
its last expression (None when the cell ends in a statement), which IPython then displays.

How a remote cell sees data: the cell runs in a fresh namespace on the node. Names the cell reads
and does not assign first are taken from the notebook's namespace and shipped by value with
cloudpickle (modules by reference); names the notebook does not have are left for the cell's own
imports or builtins. Nothing the cell assigns comes back except the last expression's value.

Failure modes: a cell that does not parse raises ``SyntaxError`` here, before anything is sent;
a referenced notebook value that cannot be pickled raises ``TypeError`` naming the variable; a
remote exception is raised as itself (pynode attaches the remote traceback); without a node on
the line and no earlier ``%attach``, ``UsageError``.
"""
from __future__ import annotations

import ast
import builtins
import shlex
from typing import Any

import cloudpickle
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .session import DEFAULT_CALL_TIMEOUT, Session, attach

CELL_FILENAME = "<%%remote cell>"
_MISSING = object()


def split_cell(source: str) -> tuple[str, str | None]:
    """Split a cell into (statements, last expression or None), each as source text."""
    tree = ast.parse(source, filename=CELL_FILENAME)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop()
        return ast.unparse(tree), ast.unparse(last.value)
    return ast.unparse(tree), None


def free_names(source: str) -> list[str]:
    """Names the cell loads that no earlier statement in it binds, in first-use order.

    Conservative: a name bound anywhere before its first load (assignment, import, def, for,
    with, comprehension target) counts as the cell's own.
    """
    tree = ast.parse(source, filename=CELL_FILENAME)
    bound: set[str] = set()
    free: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                and node.id not in bound and node.id not in free):
            free.append(node.id)
    return free


def _remote_cell_fn(statements: str, expression: str | None) -> Any:
    def run_cell(namespace: dict[str, Any]) -> Any:
        namespace = dict(namespace, __name__="__remote_cell__")
        exec(compile(statements, CELL_FILENAME, "exec"), namespace)
        if expression is None:
            return None
        return eval(compile(expression, CELL_FILENAME, "eval"), namespace)

    return run_cell


def captured_values(source: str, user_ns: dict[str, Any]) -> dict[str, Any]:
    """The notebook values a cell needs, checked to pickle (``TypeError`` names the culprit)."""
    values = {}
    for name in free_names(source):
        if name in user_ns and user_ns[name] is not getattr(builtins, name, _MISSING):
            value = user_ns[name]
            try:
                cloudpickle.dumps(value)
            except Exception as error:
                raise TypeError(f"%%remote cannot ship notebook variable {name!r} "
                                f"({type(value).__name__}): {error}") from error
            values[name] = value
    return values


@magics_class
class LivebookMagics(Magics):
    """``%attach`` and ``%%remote``; the last attached session is the default target."""

    session: Session | None = None

    @line_magic
    def attach(self, line: str) -> Session:
        """%attach NODE [--name NAME] [--cookie COOKIE]

        Attach this kernel to the compute node NODE (e.g. ``%attach exmc@127.0.0.14``), return
        the :class:`~livebook_client.session.Session` and make it the default node of
        ``%%remote``. ``--name``: this kernel's node name; ``--cookie``: the cluster's cookie.
        The rest is :func:`livebook_client.attach`, whose documentation follows.
        """
        words = shlex.split(line)
        if not words:
            raise UsageError("%attach needs a node name, e.g. %attach exmc@127.0.0.14")
        options = {"--name": None, "--cookie": None}
        target, rest = words[0], words[1:]
        while rest:
            flag = rest.pop(0)
            if flag not in options or not rest:
                raise UsageError(f"%attach: unknown or incomplete option {flag!r}; "
                                 "use --name NAME and --cookie COOKIE")
            options[flag] = rest.pop(0)
        self.session = attach(target, name=options["--name"], cookie=options["--cookie"])
        return self.session

    @cell_magic
    def remote(self, line: str, cell: str) -> Any:
        """%%remote [NODE] [--timeout SECONDS]

        Run the cell on NODE (default: the node of the last ``%attach``) and return the value of
        its last expression. Names the cell reads and does not assign are taken from the
        notebook and shipped by value; nothing the cell assigns comes back.

        ``--timeout``: seconds to wait for the cell, default 60 (``DEFAULT_CALL_TIMEOUT``, as the
        seed's ``erpc.call(..., timeout=60)``); after it ``ErpcTimeout`` is raised and the cell is
        cancelled on the node (it may or may not have run, partly or completely). Use
        ``--timeout`` for longer cells. Sampling with ``session.sample(...)`` has no deadline by
        default (``timeout=None``: it waits until the chains finish; Ctrl-C / interrupting the
        cell cancels it on the node).

        Failure modes: a cell that does not parse raises ``SyntaxError`` here, before anything is
        sent; an unpicklable notebook value raises ``TypeError`` naming the variable; a remote
        exception is raised as itself (with the remote traceback); ``ErpcTimeout``;
        ``NoConnection`` when the node dies or cannot be reached; without a node on the line and
        no earlier ``%attach``, ``UsageError``.
        """
        words = shlex.split(line)
        timeout = DEFAULT_CALL_TIMEOUT
        if "--timeout" in words:
            at = words.index("--timeout")
            try:
                timeout = float(words[at + 1])
            except (IndexError, ValueError):
                raise UsageError("%%remote: --timeout needs a number of seconds") from None
            del words[at:at + 2]
        if words:
            session = attach(words[0])
        elif self.session is not None:
            session = self.session
        else:
            raise UsageError("%%remote needs a node (%%remote exmc@127.0.0.14) or an earlier %attach")
        statements, expression = split_cell(cell)
        values = captured_values(cell, self.shell.user_ns)
        return session.call(_remote_cell_fn(statements, expression), values, timeout=timeout)


# ``%attach?`` shows the magic's docstring: make it the whole story, the usage line followed by
# attach()'s arguments and failure modes.
LivebookMagics.attach.__doc__ = f"{LivebookMagics.attach.__doc__}\n    {attach.__doc__}"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext livebook_client``: register ``%attach`` and ``%%remote``."""
    ipython.register_magics(LivebookMagics)
