"""Progress records and both displays, driven with recorded events (no network)."""
from __future__ import annotations

import io

import pytest

from livebook_client import progress as progress_module
from livebook_client.progress import ChainProgress, NotebookProgress, TerminalProgress, make_progress


def test_event_becomes_a_record_with_its_postfix():
    late = ChainProgress.from_event({"chain": 1, "iteration": 540, "total": 1500, "phase": "sampling",
                                     "divergences": 2, "step_size": 0.71})
    assert (late.chain, late.done, late.total, late.divergences) == (1, 540, 1500, 2)
    assert late.describe() == "sampling, 2 divergences, step 0.71"
    first = ChainProgress.from_event({"chain": 0, "iteration": 1, "total": 10, "phase": "warmup",
                                      "divergences": 1, "step_size": None})
    assert first.describe() == "warmup, 1 divergence"


def test_event_with_unknown_phase_is_refused_by_name():
    with pytest.raises(ValueError, match="'tuning'"):
        ChainProgress.from_event({"chain": 0, "iteration": 1, "total": 2, "phase": "tuning"})


def test_event_missing_a_field_names_it():
    with pytest.raises(KeyError, match="total"):
        ChainProgress.from_event({"chain": 0, "iteration": 1, "phase": "warmup"})


def test_terminal_bars_follow_each_chain_and_finish_full():
    out = io.StringIO()
    bars = TerminalProgress(2, 30, file=out)
    bars.update(ChainProgress(0, 10, 30, "warmup", 0, 0.3))
    bars.update(ChainProgress(1, 25, 30, "sampling", 1, 0.4))
    assert [bar.n for bar in bars._bars] == [10, 25]
    bars.close(completed=True)
    text = out.getvalue()
    assert "chain 1" in text and "chain 2" in text
    assert "30/30" in text
    assert "1 divergence," in text


def test_terminal_bars_stopped_keep_where_they_were():
    out = io.StringIO()
    bars = TerminalProgress(1, 30, file=out)
    bars.update(ChainProgress(0, 7, 30, "warmup"))
    bars.close(completed=False)
    assert "7/30" in out.getvalue()
    assert "30/30" not in out.getvalue()


class RecordingDisplay:
    """Stands in for IPython.display.display: records what a notebook would show."""

    def __init__(self):
        self.shown = []

    def __call__(self, obj, display_id=False):
        assert display_id is True
        self.shown.append(obj)
        return self

    def update(self, obj):
        self.shown.append(obj)


def test_notebook_display_updates_in_place_throttled_and_finishes():
    now = [0.0]
    display = RecordingDisplay()
    board = NotebookProgress(2, 100, display=display, clock=lambda: now[0])
    assert len(display.shown) == 1
    board.update(ChainProgress(0, 10, 100, "warmup"))
    assert len(display.shown) == 1  # too soon after the first draw
    now[0] = progress_module.NOTEBOOK_REFRESH_SECONDS
    board.update(ChainProgress(1, 60, 100, "sampling", 3, 0.2))
    assert len(display.shown) == 2
    latest = display.shown[-1]
    assert "chain 2: 60/100 sampling, 3 divergences" in repr(latest)
    assert "<progress value='60' max='100'" in latest._repr_html_()
    board.close(completed=True)
    final = display.shown[-1]
    assert "remote sampling: done" in repr(final)
    assert "chain 1: 100/100" in repr(final) and "chain 2: 100/100" in repr(final)


def test_notebook_display_stopped_says_so():
    display = RecordingDisplay()
    board = NotebookProgress(1, 100, display=display)
    board.update(ChainProgress(0, 30, 100, "warmup"))
    board.close(completed=False)
    assert "remote sampling: stopped" in repr(display.shown[-1])
    assert "chain 1: 30/100" in repr(display.shown[-1])


def test_progress_disabled_gives_nothing_and_terminal_outside_jupyter():
    assert make_progress(4, 100, enabled=False) is None
    display = make_progress(1, 100, enabled=True)
    try:
        assert isinstance(display, TerminalProgress)
    finally:
        display.close(completed=False)
