"""Shared pytest fixtures: session-wide isolation and the ``local_cluster`` factory.

Isolation, set up before any test runs (``pytest_configure``), so that node processes started by
tests inherit it:

- ``PYNODE_EPMD_PORT`` points at a free port: tests never touch a system ``epmd`` on 4369, and
  port mappers they start are killed at the end of the session (on every loopback host used).
- ``HOME`` points at a temporary directory, so cookie lookups (``~/.pynode.cookie``) never read or
  create the developer's real cookie.
- ``PYNODE_COOKIE`` is removed, so each test chooses its cookie explicitly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from pynode.testing import LocalCluster, free_port, kill_portmappers

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

_SAVED: dict[str, str | None] = {}
_SESSION_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    for key in ("PYNODE_EPMD_PORT", "HOME", "PYNODE_COOKIE"):
        _SAVED[key] = os.environ.get(key)
    home = tempfile.mkdtemp(prefix="pynode-test-home-")
    _SESSION_HOME.append(home)
    os.environ["HOME"] = home
    os.environ["PYNODE_EPMD_PORT"] = str(free_port())
    os.environ.pop("PYNODE_COOKIE", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    kill_portmappers(int(os.environ["PYNODE_EPMD_PORT"]))
    for home in _SESSION_HOME:
        shutil.rmtree(home, ignore_errors=True)
    for key, value in _SAVED.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def local_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """Factory: ``local_cluster(["a@127.0.0.21", "b@127.0.0.22"], cookie=..., preload=...)``.

    Takes the same arguments as :class:`pynode.testing.LocalCluster`, starts the cluster (waiting
    for every node's ready line) and returns it; every cluster made is stopped when the test ends,
    whether it passed or failed.
    """
    clusters: list[LocalCluster] = []

    def make(*args: object, **kwargs: object) -> LocalCluster:
        cluster = LocalCluster(*args, **kwargs)  # type: ignore[arg-type]
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in reversed(clusters):
        cluster.stop()


@pytest.fixture
def ipython_shell() -> Iterator["InteractiveShell"]:
    """A fresh headless IPython shell (history in memory), discarded after the test so that
    extensions and magics state never leak from one test into another."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    yield shell
    InteractiveShell.clear_instance()
