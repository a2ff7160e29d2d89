"""``session.status()``: what the cluster is doing, as a table (HTML in Jupyter, text elsewhere).

For each node — the attached one and every other connected visible node — one row: whether it
answers, its exmc chain workers busy/free, load average, memory (available of total, and the
node process's own resident size), and the sampling runs in progress there. A node that does not
answer within the timeout is listed as unreachable with the reason; nothing fails. Runs are the
samplings in progress there: ``session.sample`` calls, shares of runs over nodes, and running
detached jobs.
"""
from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def _remote_status_fn() -> Callable[[], dict[str, Any]]:
    """The function each node runs (shipped by value: the node needs exmc, not livebook_client)."""

    def node_status() -> dict[str, Any]:
        import os

        from exmc.nuts import jobs, pool, runs

        def meminfo() -> dict[str, int]:
            values = {}
            try:
                with open("/proc/meminfo") as f:
                    for line in f:
                        key, _, rest = line.partition(":")
                        values[key] = int(rest.split()[0]) * 1024
            except OSError:
                pass
            return values

        def rss() -> int | None:
            try:
                with open("/proc/self/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            return int(line.split()[1]) * 1024
            except OSError:
                pass
            return None

        workers = pool.get_pool()
        memory = meminfo()
        return {
            "workers": max(workers.size, pool.default_workers()), "busy": workers.busy(), "cores": os.cpu_count(),
            "load": os.getloadavg(), "mem_total": memory.get("MemTotal"),
            "mem_available": memory.get("MemAvailable"), "rss": rss(),
            "runs": runs.snapshot() + [
                {"label": f"job {job['name']}", "chains": list(range(job["chains"])), "started": job["started"],
                 "done": []} for job in jobs.jobs() if job["status"] == "running"],
        }

    return node_status


@dataclass
class NodeStatus:
    """One node's row. ``error`` is set (and the rest None) when the node did not answer."""

    node: str
    error: str | None = None
    workers: int | None = None
    busy: int | None = None
    cores: int | None = None
    load: tuple[float, float, float] | None = None
    mem_total: int | None = None
    mem_available: int | None = None
    rss: int | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def free(self) -> int | None:
        return None if self.workers is None else self.workers - (self.busy or 0)

    def cells(self) -> list[str]:
        if self.error is not None:
            return [self.node, "unreachable", "", "", "", self.error]
        gib = 1024 ** 3
        memory = (f"{self.mem_available / gib:.1f} of {self.mem_total / gib:.1f} GiB free"
                  if self.mem_total else "?")
        if self.rss:
            memory += f" (node {self.rss / 1024 ** 2:.0f} MiB)"
        load = " ".join(f"{value:.2f}" for value in self.load) if self.load else "?"
        now = time.time()
        runs = "; ".join(f"{run['label']}: chains {run['chains']} ({len(run['done'])} done, "
                         f"{now - run['started']:.0f} s)" for run in self.runs) or "none"
        return [self.node, f"{self.busy} busy / {self.free} free", f"{self.cores} cores, load {load}",
                memory, str(len(self.runs)), runs]


COLUMNS = ["node", "exmc workers", "cpu", "memory", "runs", "running"]


class ClusterStatus:
    """The rows of :meth:`Session.status`, in node order (the attached node first)."""

    def __init__(self, nodes: Sequence[NodeStatus]) -> None:
        self.nodes = list(nodes)

    def __getitem__(self, node: str) -> NodeStatus:
        for row in self.nodes:
            if row.node == node:
                return row
        raise KeyError(f"no node {node!r} in this status (nodes: {[r.node for r in self.nodes]})")

    def __repr__(self) -> str:
        rows = [COLUMNS] + [row.cells() for row in self.nodes]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row.cells()) + "</tr>"
                       for row in self.nodes)
        return f"<table class='livebook-status'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def collect(nodes: Sequence[str], timeout: float) -> ClusterStatus:
    """Ask every node in ``nodes`` at once (``erpc.multicall``) and build the table."""
    from pynode import erpc

    rows = []
    for node, (kind, value) in zip(nodes, erpc.multicall(nodes, _remote_status_fn(), timeout=timeout)):
        if kind == "ok":
            value["load"] = tuple(value["load"])
            rows.append(NodeStatus(node, **value))
        else:
            rows.append(NodeStatus(node, error=f"{type(value).__name__}: {value}"))
    return ClusterStatus(rows)
