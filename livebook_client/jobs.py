"""Detached runs from the notebook: ``session.start``, ``session.jobs()``, ``session.job(name)``.

A detached run is an :mod:`exmc.nuts.jobs` job on the attached compute node: a pynode process
there, registered as ``exmc.job:<name>`` while it runs. It belongs to the node, so it goes on
when this notebook exits or its kernel restarts. A :class:`Job` is only a
handle (the node's name and the job's name): any process attached to the node can build one with
``session.job(name)`` and follow it from where it is.

Every call is an ``erpc.call`` of a function of :mod:`exmc.nuts.jobs` by name; their failure
modes are erpc's (``NoConnection`` when the node is gone — and with it the job; ``ErpcTimeout``)
plus those each method names.
"""
from __future__ import annotations

import html
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pynode import erpc

from .progress import ChainProgress, ProgressDisplay, make_progress

if TYPE_CHECKING:
    from exmc.nuts.stream import DrawBatch
    from exmc.nuts.trace import Chains

# Deadline of the short calls (start, state, cancel): a node answers in milliseconds.
CALL_TIMEOUT = 10.0
# How often a followed job's progress is asked for (s): the display's own refresh rate.
FOLLOW_SECONDS = 0.2


class Job:
    """A detached run on ``node`` named ``name``. ``result()`` follows its progress and returns
    its ``Chains``; ``cancel()`` stops it, keeping the chains that had finished."""

    def __init__(self, node: str, name: str) -> None:
        self.node = node
        self.name = name
        self._result: Chains | None = None

    def __repr__(self) -> str:
        return f"<Job {self.name!r} on {self.node}>"

    def state(self) -> dict[str, Any]:
        """The job's description and each chain's latest progress (a dict). Raises KeyError
        when the node has no such job (e.g. it restarted)."""
        return erpc.call(self.node, "exmc.nuts.jobs:state", self.name, timeout=CALL_TIMEOUT)

    @property
    def status(self) -> str:
        """``running``, ``done``, ``failed``, ``cancelled``, ``fetched`` or ``evicted``."""
        return self.state()["status"]

    def draws(self, poll: float = FOLLOW_SECONDS) -> Iterator[DrawBatch]:
        """Yield the job's sampling draws as they are made, as ``exmc.nuts.stream.DrawBatch``
        es (per chain, in order, at most every 0.2 s each; a chain rerun on another node after a
        node was lost starts again with ``start == 0``), until the job ends. Ask every ``poll``
        seconds. Draws already made when called come first."""
        cursor = None
        while True:
            answer = erpc.call(self.node, "exmc.nuts.jobs:draws", self.name, cursor, timeout=CALL_TIMEOUT)
            cursor = answer["cursor"]
            yield from answer["batches"]
            if answer["status"] != "running" and not answer["batches"]:
                return
            if not answer["batches"]:
                time.sleep(poll)

    def result(self, timeout: float | None = None, progress: bool | ProgressDisplay = True,
               live_trace: str | None = None) -> Chains:
        """Wait for the job (showing its live progress from where it is) and return its
        ``Chains``; a cancelled job's are partial (``Chains.warnings()`` says so).

        ``timeout`` seconds (None: until it ends). Raises ``TimeoutError`` when it still runs
        then — the job goes on, call again; the job's own exception for a failed job;
        ``LookupError`` when its result was fetched by another process or evicted. The result
        is fetched once from the node (it then leaves the node) and kept in this handle.
        ``live_trace``: a variable whose running trace is drawn (in Jupyter, redrawn in place at
        most once a second; see :class:`~livebook_client.progress.LiveTrace`).
        """
        if self._result is not None:
            return self._result
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self.state()
        display = None
        if state["status"] == "running":
            total = state["iterations_total"] // max(1, state["chains"])
            display = (make_progress(state["chains"], total, enabled=progress) if isinstance(progress, bool)
                       else progress)
        completed = False
        trace_view = None
        cursor = None
        if live_trace is not None and state["status"] == "running":
            from .progress import LiveTrace

            trace_view = LiveTrace(live_trace)
        try:
            notes_shown = 0
            while state["status"] == "running":
                if trace_view is not None:
                    answer = erpc.call(self.node, "exmc.nuts.jobs:draws", self.name, cursor, timeout=CALL_TIMEOUT)
                    cursor = answer["cursor"]
                    for batch in answer["batches"]:
                        trace_view.add(batch)
                if display is not None:
                    for event in state["progress"]:
                        node = state["placed"].get(event["chain"])
                        display.update(ChainProgress.from_event(event, node=node))
                    for note in state["notes"][notes_shown:]:
                        if hasattr(display, "note"):
                            display.note(note)
                    notes_shown = len(state["notes"])
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.name!r} on {self.node} still running after {timeout} s "
                                       "(it goes on; call result() again)")
                time.sleep(FOLLOW_SECONDS)
                state = self.state()
            self._result = erpc.call(self.node, "exmc.nuts.jobs:result", self.name, 0, timeout=None)
            completed = state["status"] == "done"
            return self._result
        finally:
            if display is not None:
                display.close(completed=completed)
            if trace_view is not None:
                trace_view.close()

    def cancel(self) -> dict[str, Any]:
        """Stop the job: an exit signal to its process on the node (its chains stop within
        ~0.1 s); what they had drawn stays as a partial result for :meth:`result`. Returns the
        job's description once it has stopped."""
        return erpc.call(self.node, "exmc.nuts.jobs:cancel", self.name, timeout=CALL_TIMEOUT + 30)

    def forget(self) -> None:
        """Drop the job from the node (cancelling it if it runs) and free its name."""
        erpc.call(self.node, "exmc.nuts.jobs:forget", self.name, timeout=CALL_TIMEOUT + 30)


class DrawStream:
    """What ``session.sample(..., stream=True)`` returns: iterate it for ``DrawBatch`` es as the
    chains make them; ``result()`` then gives the ``Chains``. Leaving the loop early (``break``,
    an exception, Ctrl-C) or ``close()`` cancels the sampling on the node."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._finished = False

    def __iter__(self) -> Iterator[DrawBatch]:
        try:
            yield from self.job.draws()
            self._finished = True
        finally:
            if not self._finished:
                self.close()

    def close(self) -> None:
        """Cancel the sampling unless it finished (the partial result stays available)."""
        if not self._finished:
            self.job.cancel()

    def result(self, timeout: float | None = None) -> Chains:
        return self.job.result(timeout, progress=False)


class JobList(list):
    """The jobs of a node (a list of their descriptions), as a table."""

    COLUMNS = ("name", "status", "started", "progress", "node(s)")

    def _cells(self, job: dict[str, Any]) -> list[str]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["started"]))
        done, total = job["iterations_done"], job["iterations_total"]
        share = f"{100 * done / total:.0f}% of {job['chains']} chains" if total else "?"
        nodes = ", ".join(job["nodes"] or [job.get("host", "")])
        return [job["name"], job["status"], started, share, nodes]

    def names(self) -> list[str]:
        return [job["name"] for job in self]

    def __repr__(self) -> str:
        rows = [list(self.COLUMNS)] + [self._cells(job) for job in self]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.COLUMNS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(job)) + "</tr>"
                       for job in self)
        return f"<table class='livebook-jobs'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def list_jobs(node: str) -> JobList:
    """The jobs on ``node``, running and finished, in start order."""
    rows = erpc.call(node, "exmc.nuts.jobs:jobs", timeout=CALL_TIMEOUT)
    for row in rows:
        row["host"] = node
    return JobList(rows)
