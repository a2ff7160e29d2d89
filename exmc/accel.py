"""Which implementation computes the fused gradient kernels: numpy, or numba (the ``fast`` extra).

:data:`GRAD_ENV` (``EXMC_GRAD``) is read when a model is compiled, by the kernel factories that
have a compiled twin in :mod:`exmc.dist.kernels_numba` (today the StudentT likelihood on the log
scale and the GaussianRandomWalk prior): ``numpy`` gives the numpy kernels (the reference, always
complete), ``numba`` the compiled ones (``ImportError`` when numba is missing), ``auto`` (the
default, also when unset or empty) ``numba`` when numba imports, else ``numpy``. A compiled
model records what it got: ``Model.grad_kernel`` is ``"numba"`` when any of its terms runs a
compiled kernel, else ``"numpy"``, and ``Trace.info["grad_kernel"]`` reports it.

Why a switch of its own rather than :data:`exmc.nuts.tree.TREE_ENV`: the tree kernel is chosen per
chain and changes no result (it is bit for bit the numpy tree); this one is chosen per model and
changes the last bits of the log-density and gradient, hence the draws. Keeping them apart lets a
user (or a test) pin the numpy gradient, e.g. to reproduce draws made without numba, and keep the
fast tree, and tells from ``Trace.info`` which of the two made a difference.

Pool workers compile the model they receive themselves, so they read their own environment
(inherited from the process that started the pool): set the variable before the pool starts.
"""
from __future__ import annotations

import importlib
import os
import threading

__all__ = ["GRAD_ENV", "GRAD_KERNELS", "grad_kernel", "import_error", "mark", "warm_up"]

#: Environment variable choosing the gradient kernels (see the module docstring).
GRAD_ENV = "EXMC_GRAD"
GRAD_KERNELS = ("numpy", "numba")

#: Guards :data:`_imports`. Two threads may ask at once (a pool worker's warm-up thread and its
#: first model): a second thread's ``import`` of a module that another thread is still importing
#: waits, then gets that module object even when its import failed, so each module is tried once,
#: under this lock, and the outcome kept.
_imports_lock = threading.Lock()
#: Module name -> ``None`` (it imported) or its ``ImportError``. Written under :data:`_imports_lock`.
_imports: dict[str, ImportError | None] = {}

#: The module of the compiled kernels.
KERNELS_MODULE = "exmc.dist.kernels_numba"


def import_error(module: str) -> ImportError | None:
    """Import ``module`` once per process: ``None`` when it imports, else its ``ImportError``
    (the same answer on every later call). Any optional compiled module can use it."""
    with _imports_lock:
        if module not in _imports:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                _imports[module] = exc
            else:
                _imports[module] = None
        return _imports[module]


def grad_kernel(choice: str | None = None) -> str:
    """``"numpy"`` or ``"numba"``: what ``choice`` (default: :data:`GRAD_ENV`'s value) selects here.

    Raises ``ValueError`` naming the variable for a value other than ``auto``, ``numpy`` and
    ``numba``, and ``ImportError`` for ``numba`` when numba (or the kernels) do not import."""
    raw = os.environ.get(GRAD_ENV, "") if choice is None else choice
    value = raw.strip().lower() or "auto"
    if value not in ("auto",) + GRAD_KERNELS:
        source = f"{GRAD_ENV}={raw!r}" if choice is None else f"gradient kernel {raw!r}"
        raise ValueError(f"{source}: expected auto, numpy or numba")
    if value == "numpy":
        return "numpy"
    error = import_error(KERNELS_MODULE)
    if error is None:
        return "numba"
    if value == "numba":
        raise error
    return "numpy"


def mark(kernel, engine: str):
    """``kernel`` with ``engine`` recorded as its ``grad_kernel`` attribute (read by the program
    builder, :mod:`exmc.program`); partials and functions both take attributes."""
    kernel.grad_kernel = engine
    return kernel


def warm_up() -> None:
    """Load (or compile, the first time on a checkout) the compiled kernels when they are the
    ones selected; nothing otherwise (``make install`` calls it)."""
    if grad_kernel() == "numba":
        from exmc.dist import kernels_numba

        kernels_numba.warm_up()
