import pytest

from pynode import names
from pynode.errors import BadNodeName


@pytest.mark.parametrize(
    "text, alive, host",
    [
        ("livebook@127.0.0.13", "livebook", "127.0.0.13"),
        ("exmc_1-b@localhost", "exmc_1-b", "localhost"),
        ("n@my-host.example.org", "n", "my-host.example.org"),
    ],
)
def test_parse_valid_names_round_trip(text: str, alive: str, host: str) -> None:
    parsed = names.parse(text)
    assert parsed == (alive, host)
    assert str(parsed) == text


@pytest.mark.parametrize(
    "bad",
    [
        "nohost",
        "@127.0.0.1",
        "name@",
        "a@b@c",
        "sp ace@127.0.0.1",
        "name@127.0.0.1:4369",
        "na.me@127.0.0.1",
        "x" * 256 + "@127.0.0.1",
        "name@-host",
        "name@host..org",
    ],
)
def test_parse_rejects_malformed_names_naming_the_input(bad: str) -> None:
    with pytest.raises(BadNodeName) as info:
        names.parse(bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(BadNodeName, match="int"):
        names.parse(42)  # type: ignore[arg-type]
