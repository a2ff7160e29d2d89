"""Errors raised by livebook_client.

Everything the client raises on its own account derives from :class:`LivebookClientError`;
errors of the runtime underneath (``pynode.errors.NoConnection``, ``ErpcTimeout``, a remote
``ValueError`` ...) pass through unchanged so that callers can handle them as pynode documents.
"""
from __future__ import annotations


class LivebookClientError(Exception):
    """Base of the errors livebook_client raises itself."""


class AttachError(LivebookClientError, ConnectionError):
    """The target node cannot be attached: unreachable, not running, or it refused our cookie.

    The message names the target node and the reason pynode reported.
    """


class IncompatibleNode(LivebookClientError):
    """The target is a pynode node but cannot run remote sampling for this client.

    Raised when exmc is missing on the target or its version differs from the client's in
    major or minor number (the IR and the ``Chains`` type travel pickled between them).
    """


class ConfigError(LivebookClientError, ValueError):
    """A cluster configuration file is missing a field the demo needs, or names it badly."""
