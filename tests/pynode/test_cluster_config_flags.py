"""ticktime and connect_all in a cluster file: for the whole cluster, per node, checked."""

from __future__ import annotations

import pytest

from pynode import cluster_config
from pynode.errors import ClusterConfigError


def commands(data: dict) -> dict[str, list[str]]:
    return {e.spec.name: e.spec.command() for e in cluster_config.parse(data).nodes}


def test_cluster_values_reach_every_node_and_a_node_overrides_them() -> None:
    got = commands(
        {
            "cluster": {"ticktime": 4, "connect_all": False},
            "node": [{"name": "a@127.0.1.11"}, {"name": "b@127.0.1.12", "ticktime": 2.5, "connect_all": True}],
        }
    )
    a, b = got["a@127.0.1.11"], got["b@127.0.1.12"]
    assert a[a.index("--ticktime") + 1] == "4.0" and "--no-connect-all" in a
    assert b[b.index("--ticktime") + 1] == "2.5" and "--no-connect-all" not in b


def test_without_them_a_node_gets_neither_flag() -> None:
    [cmd] = commands({"node": [{"name": "a@127.0.1.11"}]}).values()
    assert "--ticktime" not in cmd and "--no-connect-all" not in cmd


@pytest.mark.parametrize(
    "node, match",
    [
        ({"ticktime": 0.5}, r"\(a@127.0.1.11\): ticktime must be at least 1 s, got 0.5"),
        ({"ticktime": "soon"}, r"\(a@127.0.1.11\): ticktime must be a number of seconds, got 'soon'"),
        ({"connect_all": "no"}, r"\(a@127.0.1.11\): connect_all must be true or false"),
    ],
)
def test_bad_values_are_refused_naming_the_node(node: dict, match: str) -> None:
    with pytest.raises(ClusterConfigError, match=match):
        cluster_config.parse({"node": [{"name": "a@127.0.1.11", **node}]})
