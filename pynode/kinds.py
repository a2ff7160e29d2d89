"""Which peers a question is about, as in Erlang: ``"visible"`` peers, ``"hidden"`` ones (the
connection is hidden when either end is a hidden node), or every ``"connected"`` one. Used by
``Node.list`` and by node monitoring."""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["visible", "hidden", "connected"]
KINDS: tuple[Kind, ...] = get_args(Kind)


def check(kind: str, asker: str) -> None:
    """Raise ValueError naming ``kind`` (and ``asker``, the API that got it) unless it is a Kind."""
    if kind not in KINDS:
        raise ValueError(f"{asker} kind must be 'visible', 'hidden' or 'connected', not {kind!r}")


def includes(kind: Kind, hidden: bool) -> bool:
    """Whether a peer whose connection is ``hidden`` (or not) is one of ``kind``."""
    return kind == "connected" or (kind == "hidden") == hidden
