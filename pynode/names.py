"""Node names: ``alive@host``, as in Erlang.

``alive`` is the name registered with the port mapper on ``host``; ``host`` is the address the
node listens on. pynode only uses numeric IPv4 addresses or plain host names (no ``:port``
suffixes: ports come from the port mapper).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pynode.errors import BadNodeName

# Erlang accepts letters, digits, '_' and '-' in the alive part of a name (net_kernel:is_name/1
# rejects anything else in practice), and epmd limits it to 255 bytes (MAXSYMLEN).
MAX_ALIVE_LEN = 255
# RFC 1035: a host name is at most 253 characters of dot-separated labels.
MAX_HOST_LEN = 253

_ALIVE_RE = re.compile(r"[A-Za-z0-9_\-]+")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


class NodeName(NamedTuple):
    """A parsed node name; ``str()`` gives ``alive@host`` back."""

    alive: str
    host: str

    def __str__(self) -> str:
        return f"{self.alive}@{self.host}"


def parse(name: str) -> NodeName:
    """Parse and validate ``alive@host``.

    Raises :class:`BadNodeName` (a ``ValueError``) naming the input when it is not a string, has no
    or several ``@``, an empty or over-long part, or characters Erlang would not accept.
    """
    if not isinstance(name, str):
        raise BadNodeName(f"node name must be a str like 'alive@host', got {type(name).__name__} {name!r}")
    alive, sep, host = name.partition("@")
    if not sep or "@" in host:
        raise BadNodeName(f"bad node name {name!r}: expected exactly one '@' as in 'alive@host'")
    if not alive or len(alive) > MAX_ALIVE_LEN or not _ALIVE_RE.fullmatch(alive):
        raise BadNodeName(
            f"bad node name {name!r}: the part before '@' must be 1-{MAX_ALIVE_LEN} letters, digits, '_' or '-'"
        )
    if not _valid_host(host):
        raise BadNodeName(f"bad node name {name!r}: {host!r} is not a host name or IPv4 address")
    return NodeName(alive, host)


def _valid_host(host: str) -> bool:
    if not host or len(host) > MAX_HOST_LEN:
        return False
    return all(_HOST_LABEL_RE.fullmatch(label) for label in host.split("."))
