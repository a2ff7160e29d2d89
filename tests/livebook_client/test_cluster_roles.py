"""Picking the notebook and compute nodes out of a cluster file."""
from __future__ import annotations

import pytest

from livebook_client.cluster_roles import load_roles
from livebook_client.errors import ConfigError

SEED = """
[cluster]
epmd_port = 4411

[[node]]
name = "livebook@127.0.0.13"
start = false

[[node]]
name = "helper@127.0.0.15"

[[node]]
name = "exmc@127.0.0.14"
preload = ["exmc"]
"""


def write(tmp_path, text):
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_roles_pick_the_unstarted_node_and_the_exmc_node(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNODE_COOKIE", "test-cookie")
    monkeypatch.delenv("PYNODE_EPMD_PORT", raising=False)
    roles = load_roles(write(tmp_path, SEED))
    assert (roles.notebook, roles.compute) == ("livebook@127.0.0.13", "exmc@127.0.0.14")
    assert (roles.cookie, roles.epmd_port) == ("test-cookie", 4411)


def test_compute_falls_back_to_the_first_started_node(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNODE_COOKIE", "test-cookie")
    text = SEED.replace('preload = ["exmc"]', "")
    assert load_roles(write(tmp_path, text)).compute == "helper@127.0.0.15"


def test_missing_notebook_node_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PYNODE_COOKIE", "test-cookie")
    path = write(tmp_path, SEED.replace("start = false", ""))
    with pytest.raises(ConfigError, match="start = false"):
        load_roles(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="nowhere.toml"):
        load_roles(tmp_path / "nowhere.toml")
