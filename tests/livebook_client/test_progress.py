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
    assert "chain 0" in text and "chain 1" in text and "chain 2" not in text
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
    assert "chain 1: 60/100 sampling, 3 divergences" in repr(latest)
    assert "<progress value='60' max='100'" in latest._repr_html_()
    board.close(completed=True)
    final = display.shown[-1]
    assert "remote sampling: done" in repr(final)
    assert "chain 0: 100/100" in repr(final) and "chain 1: 100/100" in repr(final)


def test_notebook_display_stopped_says_so():
    display = RecordingDisplay()
    board = NotebookProgress(1, 100, display=display)
    board.update(ChainProgress(0, 30, 100, "warmup"))
    board.close(completed=False)
    assert "remote sampling: stopped" in repr(display.shown[-1])
    assert "chain 0: 30/100" in repr(display.shown[-1])


def test_progress_disabled_gives_nothing_and_terminal_outside_jupyter():
    assert make_progress(4, 100, enabled=False) is None
    display = make_progress(1, 100, enabled=True)
    try:
        assert isinstance(display, TerminalProgress)
    finally:
        display.close(completed=False)


def test_chains_waiting_for_a_worker_show_as_queued_not_as_warmup():
    display = RecordingDisplay()
    board = NotebookProgress(3, 100, display=display)
    first = repr(display.shown[0])
    assert "chain 0: 0/100 queued" in first and "chain 2: 0/100 queued" in first
    assert "warmup" not in first
    board.update(ChainProgress(0, 5, 100, "warmup"))
    board.close(completed=False)
    assert "chain 0: 5/100 warmup" in repr(display.shown[-1])
    assert "chain 1: 0/100 queued" in repr(display.shown[-1])
    out = io.StringIO()
    bars = TerminalProgress(2, 30, file=out)
    bars.close(completed=False)
    assert "queued" in out.getvalue()


def test_warmup_and_sampling_divergences_are_shown_apart():
    display = RecordingDisplay()
    board = NotebookProgress(1, 100, display=display)
    board.update(ChainProgress(0, 50, 100, "warmup", 7, 0.3))
    board.update(ChainProgress(0, 60, 100, "sampling", 0, 0.3))
    board.update(ChainProgress(0, 90, 100, "sampling", 2, 0.3))
    board.close(completed=True)
    assert "chain 0: 100/100 sampling, 2 divergences (7 in warmup), step 0.3" in repr(display.shown[-1])


def test_exmc_throttle_sends_the_last_warmup_event_at_the_switch():
    from exmc.nuts.progress import Throttle

    events = []
    throttle = Throttle(events.append, interval=3600)
    for i in range(1, 11):
        throttle(0, i, 20, "warmup", i // 3, 0.5)
    for i in range(11, 21):
        throttle(0, i, 20, "sampling", 0, 0.5)
    assert [(e.iteration, e.phase, e.divergences) for e in events] == [
        (1, "warmup", 0), (10, "warmup", 3), (20, "sampling", 0)]
    assert events[-1].done and not events[1].done


def test_a_real_chain_reports_warmup_divergences_that_the_display_keeps():
    import exmc
    from exmc import Builder, Dist

    ir = Builder.new_ir()
    ir = Builder.rv(ir, "x", Dist.Normal, {"mu": 0.0, "sigma": 1.0})
    events = []
    exmc.NUTS.Sampler.sample_chains(ir, 1, num_samples=20, num_warmup=30, parallel=False,
                                    progress=events.append)
    warmup = [e for e in events if e.phase == "warmup"]
    assert warmup[-1].iteration == 30  # the switch event is always sent


def test_live_trace_redraws_in_place_throttled_and_renders_a_png(tmp_path):
    import numpy as np

    from exmc.nuts.stream import DrawBatch
    from livebook_client.progress import LIVE_TRACE_REFRESH_SECONDS, LiveTrace

    now = [0.0]
    display = RecordingDisplay()
    live = LiveTrace("mu", display=display, clock=lambda: now[0])
    rng = np.random.default_rng(0)

    def batch(chain, start, n):
        return DrawBatch(chain, start, {"mu": rng.normal(size=n), "theta": rng.normal(size=(n, 3))},
                         {"lp": np.zeros(n)}, 500)

    live.add(batch(0, 0, 100))
    assert len(display.shown) == 1  # first picture at once
    live.add(batch(1, 0, 80))
    live.add(batch(0, 100, 50))
    assert len(display.shown) == 1  # throttled
    now[0] = LIVE_TRACE_REFRESH_SECONDS
    live.add(batch(1, 80, 20))
    assert len(display.shown) == 2
    assert [len(live.values[c]) for c in (0, 1)] == [150, 100]
    live.add(batch(1, 0, 10))  # chain 1 rerun elsewhere: starts again
    live.close()
    assert len(live.values[1]) == 10 and len(display.shown) == 3
    png = live.render()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "live.png").write_bytes(png)
    with pytest.raises(KeyError, match="'sigma'"):
        LiveTrace("sigma", display=display).add(batch(0, 0, 5))


def test_notes_say_which_node_was_lost_in_both_displays():
    from exmc.nuts.multinode import NodeLost

    lost = NodeLost("exmc@b", "NoConnection: gone", {1: "exmc@a", 4: "exmc@c"})
    display = RecordingDisplay()
    board = NotebookProgress(5, 100, display=display)
    board.update(ChainProgress.queued(1, 100, "exmc@a"))
    board.note(lost.describe())
    shown = display.shown[-1]
    assert "node exmc@b was lost" in repr(shown) and "chain 1 → exmc@a, chain 4 → exmc@c" in repr(shown)
    assert "chain 1: 0/100 queued on exmc@a" in repr(shown)
    assert "livebook-note" in shown._repr_html_()
    out = io.StringIO()
    bars = TerminalProgress(2, 10, file=out)
    bars.note(lost.describe())
    bars.close(completed=False)
    assert "node exmc@b was lost" in out.getvalue()
