"""Where a node's cookie comes from, and the file-permission rule.

The cookie is the shared secret of a cluster: two nodes connect only when each proves it knows the
other's cookie (see :mod:`pynode.handshake`). Sources, in order (as Erlang: ``-setcookie``, then
``$HOME/.erlang.cookie``):

1. the ``cookie=`` argument of ``Node.start`` (or ``--cookie``/``--cookie-file`` on the CLI);
2. the ``PYNODE_COOKIE`` environment variable;
3. the file ``~/.pynode.cookie``, created with mode 0400 and a random cookie when missing, and
   refused when group or others may read or write it (Erlang refuses ``.erlang.cookie`` likewise).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from pynode.errors import CookieError

log = logging.getLogger(__name__)

COOKIE_ENV = "PYNODE_COOKIE"
COOKIE_FILE_NAME = ".pynode.cookie"
# Owner read-only, as Erlang creates .erlang.cookie.
COOKIE_FILE_MODE = 0o400
# Any permission bit for group or others makes the file unusable (Erlang: "Cookie file ... must be
# accessible by owner only").
FORBIDDEN_MODE_BITS = stat.S_IRWXG | stat.S_IRWXO
# 128 bits of randomness, written as 32 hex characters.
GENERATED_COOKIE_BYTES = 16


def default_cookie_path() -> Path:
    """``~/.pynode.cookie`` (``~`` from ``$HOME``)."""
    return Path.home() / COOKIE_FILE_NAME


def resolve(cookie: str | None = None) -> str:
    """Return the cookie from the first source that has one (see the module docstring).

    Raises :class:`CookieError` when the argument or variable is empty, or the cookie file is
    unusable (see :func:`read_cookie_file`).
    """
    if cookie is not None:
        return _checked(cookie, "the cookie argument")
    from_env = os.environ.get(COOKIE_ENV)
    if from_env is not None:
        return _checked(from_env, f"${COOKIE_ENV}")
    path = default_cookie_path()
    if not path.exists():
        _create_cookie_file(path)
    return read_cookie_file(path)


def read_cookie_file(path: str | os.PathLike[str]) -> str:
    """Read a cookie file: the first line, stripped.

    Raises :class:`CookieError` naming the file when it cannot be read, is empty, or has any
    permission bit for group or others (mode must be like 0400 or 0600).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CookieError(f"cannot read cookie file {str(path)!r}: {exc.strerror}") from exc
    if mode & FORBIDDEN_MODE_BITS:
        raise CookieError(
            f"cookie file {str(path)!r} has mode {stat.S_IMODE(mode):04o}: it must be accessible by its owner "
            f"only (chmod 400 {path})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CookieError(f"cannot read cookie file {str(path)!r}: {exc}") from exc
    first_line = text.splitlines()[0] if text else ""
    return _checked(first_line.strip(), f"cookie file {str(path)!r}")


def _checked(cookie: str, source: str) -> str:
    if not isinstance(cookie, str):
        raise CookieError(f"{source} must be a str, got {type(cookie).__name__}")
    if not cookie:
        raise CookieError(f"{source} is empty: a cookie must be a non-empty string")
    return cookie


def _create_cookie_file(path: Path) -> None:
    """Create ``path`` atomically with a random cookie and mode 0400.

    The file is written under a temporary name and hard-linked into place, so a concurrent reader
    never sees it empty and two nodes starting together agree on one cookie (the loser of the race
    reads the winner's file).
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, COOKIE_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(GENERATED_COOKIE_BYTES) + "\n")
        try:
            os.link(tmp, path)
            log.info("created cookie file %s with a random cookie", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
