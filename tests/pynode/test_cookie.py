import stat
from pathlib import Path

import pytest

from pynode import cookie
from pynode.errors import CookieError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cookie.COOKIE_ENV, raising=False)
    return tmp_path


def test_argument_wins_over_environment_and_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cookie.COOKIE_ENV, "from-env")
    assert cookie.resolve("from-arg") == "from-arg"
    assert not (home / cookie.COOKIE_FILE_NAME).exists()


def test_environment_wins_over_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / cookie.COOKIE_FILE_NAME
    path.write_text("from-file\n")
    path.chmod(0o400)
    monkeypatch.setenv(cookie.COOKIE_ENV, "from-env")
    assert cookie.resolve() == "from-env"


def test_missing_file_is_created_owner_read_only_with_a_random_cookie(
    home: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cookie.resolve()
    path = home / cookie.COOKIE_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert path.read_text().strip() == first
    assert len(first) == 2 * cookie.GENERATED_COOKIE_BYTES
    assert cookie.resolve() == first  # read back, not regenerated
    other_home = tmp_path_factory.mktemp("other-home")
    monkeypatch.setenv("HOME", str(other_home))
    assert cookie.resolve() != first


@pytest.mark.parametrize("mode", [0o440, 0o404, 0o644, 0o600 | 0o002])
def test_file_readable_or_writable_by_others_is_refused(home: Path, mode: int) -> None:
    path = home / cookie.COOKIE_FILE_NAME
    path.write_text("secret\n")
    path.chmod(mode)
    with pytest.raises(CookieError, match=r"chmod 400") as info:
        cookie.resolve()
    assert str(path) in str(info.value)


def test_owner_read_write_file_is_accepted_and_first_line_stripped(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_text("  s3cret  \nignored\n")
    path.chmod(0o600)
    assert cookie.read_cookie_file(path) == "s3cret"


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_empty_cookie_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c"
    path.write_text(content)
    path.chmod(0o400)
    with pytest.raises(CookieError, match="empty"):
        cookie.read_cookie_file(path)


def test_missing_cookie_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CookieError, match="nope"):
        cookie.read_cookie_file(tmp_path / "nope")


def test_empty_argument_is_refused(home: Path) -> None:
    with pytest.raises(CookieError, match="empty"):
        cookie.resolve("")
