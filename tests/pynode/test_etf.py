"""pynode.etf: the external term format, against itself, against hostile bytes, and against a
real ``erl`` (``term_to_binary``/``binary_to_term`` in a port program; skipped without erl)."""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from pynode import Pid, etf
from pynode.errors import DecodeError, EncodeError
from pynode.etf import Atom, BeamPid, BitBinary, Export, ImproperList, Port, Ref

ESCRIPT = shutil.which("escript")
PORT_PROGRAM = Path(__file__).parent / "erl" / "etf_port.escript"
needs_erl = pytest.mark.skipif(ESCRIPT is None, reason="erl not installed (apt-get install erlang-base)")


# --- the mapping, in Python ----------------------------------------------------------------


@pytest.mark.parametrize(
    "term, encoded",
    [
        (1, b"\x83a\x01"),
        (-1, b"\x83b\xff\xff\xff\xff"),
        (2**31, b"\x83n\x04\x00\x00\x00\x00\x80"),
        (-(2**64), b"\x83n\x09\x01" + b"\x00" * 8 + b"\x01"),
        (1.5, b"\x83F?\xf8\x00\x00\x00\x00\x00\x00"),
        (Atom("ok"), b"\x83w\x02ok"),
        (None, b"\x83w\x03nil"),
        (True, b"\x83w\x04true"),
        ("hé", b"\x83m\x00\x00\x00\x03h\xc3\xa9"),
        ([], b"\x83j"),
        ([1, 2], b"\x83k\x00\x02\x01\x02"),
        ([Atom("a")], b"\x83l\x00\x00\x00\x01w\x01aj"),
        (ImproperList((1,), Atom("b")), b"\x83l\x00\x00\x00\x01a\x01w\x01b"),
        ((), b"\x83h\x00"),
        ({}, b"\x83t\x00\x00\x00\x00"),
    ],
)
def test_known_encodings(term, encoded):
    assert etf.encode(term) == encoded
    back = etf.decode(encoded)
    assert back == (term.encode() if isinstance(term, str) and type(term) is not Atom else term)


def test_atoms_booleans_and_nil():
    assert type(etf.decode(etf.encode(Atom("undefined")))) is Atom  # only nil means None
    assert etf.decode(etf.encode(None)) is None
    assert etf.decode(b"\x83d\x00\x04true") is True  # old Latin-1 atom tags decode too
    assert etf.decode(b"\x83s\x03caf") == Atom("caf")
    long_utf8 = Atom("é" * 200)  # 400 bytes: ATOM_UTF8_EXT with a 2-byte length
    assert etf.encode(long_utf8)[1] == etf.ATOM_UTF8_EXT
    assert etf.decode(etf.encode(long_utf8)) == long_utf8
    with pytest.raises(EncodeError, match="longer than 255"):
        etf.encode(Atom("a" * 256))


def test_pids_of_the_local_node_map_to_pynode_pids():
    local = etf.Local("py@127.0.4.1", 77)
    mine = Pid("py@127.0.4.1", 5 | 3 << 32)
    raw = etf.encode(mine, local)
    assert raw.endswith(struct.pack(">III", 5, 3, 77))
    assert etf.decode(raw, local) == mine
    other = etf.decode(raw)  # another node sees a pid of a node that is not itself
    assert other == BeamPid("py@127.0.4.1", 5, 3, 77)
    assert etf.encode(other) == raw


def test_numpy_goes_out_as_nested_lists_of_floats():
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert etf.decode(etf.encode(array)) == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert etf.decode(etf.encode({Atom("x"): np.float64(2.5), Atom("n"): np.int64(3)})) == {"x": 2.5, "n": 3}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1, 2}, object(), lambda: 1, BitBinary(b"", 3)])
def test_values_without_an_erlang_form_are_refused_by_name(bad):
    with pytest.raises(EncodeError):
        etf.encode(bad)


def random_term(rng: random.Random, depth: int = 0):
    """A term that survives Python -> ETF -> Python unchanged (no str: it comes back as bytes)."""
    leaves = [
        lambda: rng.randint(0, 255),
        lambda: rng.randint(-(2**31), 2**31 - 1),
        lambda: rng.choice([1, -1]) * rng.getrandbits(rng.choice([33, 64, 100, 2100])),
        lambda: rng.uniform(-1e300, 1e300) if rng.random() < 0.5 else rng.random(),
        lambda: Atom(rng.choice(["ok", "error", "undefined", "Elixir.Foo", "ünï", "a b", ""])),
        lambda: rng.choice([True, False, None]),
        lambda: rng.randbytes(rng.randint(0, 40)),
        lambda: BitBinary(rng.randbytes(rng.randint(1, 5)), rng.randint(1, 7)),
        lambda: Ref("x@127.0.4.9", rng.getrandbits(32), tuple(rng.getrandbits(32) for _ in range(rng.randint(1, 5)))),
        lambda: BeamPid("x@127.0.4.9", rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32)),
        lambda: Port("x@127.0.4.9", rng.getrandbits(rng.choice([16, 60])), rng.getrandbits(32)),
        lambda: Export("lists", "map", rng.randint(0, 255)),
    ]
    if depth >= 3 or rng.random() < 0.4:
        value = rng.choice(leaves)()
        # BitBinary keeps only the used high bits: normalise so the round trip compares equal.
        if isinstance(value, BitBinary):
            last = value.data[-1] & (0xFF << (8 - value.bits)) & 0xFF
            value = BitBinary(value.data[:-1] + bytes([last]), value.bits)
        return value
    n = rng.randint(0, 6)
    kind = rng.choice(["list", "tuple", "map", "improper", "bytes-list"])
    if kind == "list":
        return [random_term(rng, depth + 1) for _ in range(n)]
    if kind == "bytes-list":
        return [rng.randint(0, 255) for _ in range(n)]
    if kind == "tuple":
        return tuple(random_term(rng, depth + 1) for _ in range(n))
    if kind == "improper":
        return ImproperList(tuple(random_term(rng, depth + 1) for _ in range(n + 1)), Atom("tail"))
    keys = [rng.choice([Atom(f"k{i}"), i, (i, Atom("t")), b"key%d" % i]) for i in range(n)]
    return {k: random_term(rng, depth + 1) for k in keys}


def test_random_terms_round_trip_in_python():
    rng = random.Random(12)
    for _ in range(2000):
        term = random_term(rng)
        assert etf.decode(etf.encode(term)) == term


def test_compressed_terms_decode():
    body = etf.encode(list(range(1000)))[1:]
    packed = b"\x83P" + struct.pack(">I", len(body)) + zlib.compress(body)
    assert etf.decode(packed) == list(range(1000))


# --- hostile input ---------------------------------------------------------------------------


def _decode_or_refuse(data: bytes) -> None:
    try:
        etf.decode(data)
    except DecodeError:
        pass


def test_random_and_truncated_and_mutated_input_raise_only_decode_error():
    rng = random.Random(7)
    samples = [etf.encode(random_term(rng)) for _ in range(200)]
    started = time.monotonic()
    for raw in samples:
        for cut in range(len(raw)):
            _decode_or_refuse(raw[:cut])  # every prefix: truncated
        for _ in range(20):
            mutated = bytearray(raw)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            _decode_or_refuse(bytes(mutated))
    for _ in range(5000):
        _decode_or_refuse(b"\x83" + rng.randbytes(rng.randint(0, 64)))
    assert time.monotonic() - started < 60  # no input makes it loop


@pytest.mark.parametrize(
    "forged",
    [
        b"\x83l\xff\xff\xff\xff",  # a list of 4 billion elements in 5 bytes
        b"\x83h\xff",  # a tuple of 255 elements with none present
        b"\x83i\xff\xff\xff\xffa\x01",
        b"\x83t\xff\xff\xff\xff",
        b"\x83m\xff\xff\xff\xff",  # a 4 GiB binary
        b"\x83o\xff\xff\xff\xff\x00",  # a 4 GiB big integer
        b"\x83P\xff\xff\xff\xff" + zlib.compress(b"a\x01"),  # announces 4 GiB inflated
        b"\x83P\x00\x00\x00\x02" + zlib.compress(b"j" * 10_000_000),  # inflates past what it announced
        b"\x83Z\x00\x00w\x01a\x00\x00\x00\x00",  # a reference of zero words
        b"\x83p\x00\x00\x00\x00",  # a fun shorter than its fields
        b"\x83R\x00",  # atom cache reference: no cache was negotiated
        b"\x83" + b"h\x01" * 100_000 + b"j",  # nested 100,000 deep
        b"\x83a\x01a\x02",  # trailing bytes
        b"\x82a\x01",  # wrong version
        b"",
    ],
)
def test_forged_lengths_and_depths_are_refused_without_allocating(forged):
    with pytest.raises(DecodeError):
        etf.decode(forged)


# --- against a real erl ----------------------------------------------------------------------


class ErlPort:
    """The port program ``erl/etf_port.escript``: term_to_binary/binary_to_term on demand."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([ESCRIPT, str(PORT_PROGRAM)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def request(self, op: int, payload: bytes) -> bytes:
        message = bytes([op]) + payload
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(struct.pack(">I", len(message)) + message)
        self.proc.stdin.flush()
        header = self.proc.stdout.read(4)
        assert len(header) == 4, "the erl port program died"
        reply = self.proc.stdout.read(struct.unpack(">I", header)[0])
        if reply[0] != 0:
            raise AssertionError(f"erl raised {etf.decode(reply[1:])!r}")
        return reply[1:]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def erl():
    port = ErlPort()
    yield port
    port.close()


def _has_multikey_map(term) -> bool:
    if isinstance(term, dict):
        return len(term) > 1 or any(_has_multikey_map(v) or _has_multikey_map(k) for k, v in term.items())
    if isinstance(term, (list, tuple)):
        return any(_has_multikey_map(x) for x in term)
    if isinstance(term, ImproperList):
        return any(_has_multikey_map(x) for x in term.items)
    return False


@needs_erl
def test_generated_terms_round_trip_through_erlang(erl):
    """Property: for generated terms T, binary_to_term on erl accepts our bytes and its
    term_to_binary of the result decodes back to T, byte for byte the same (maps of several keys
    excepted: erl writes their keys in its term order, we in insertion order)."""
    rng = random.Random(2024)
    for _ in range(400):
        term = random_term(rng)
        ours = etf.encode(term)
        theirs = erl.request(0, ours)
        assert etf.decode(theirs) == term
        if not _has_multikey_map(term):
            assert theirs == ours


@needs_erl
@pytest.mark.parametrize(
    "expression",
    [
        "{self(), make_ref(), hd(erlang:ports()), fun lists:map/2, fun(X) -> {X, self()} end}.",
        "[<<1:3>>, <<255, 7:5>>, <<>>, <<\"bin\">>, [a | b], [1, 2 | 3], \"charlist\", [256, 1]].",
        "[1 bsl 64, -(1 bsl 2048), 2147483647, -2147483648, 255, 256, -1, 0.1, -0.0, 1.0e300].",
        "['', 'ünïcødé', 'Elixir.Exmc.NUTS', true, false, nil, undefined, list_to_atom(lists:duplicate(255, $a))].",
        "{#{}, #{a => 1}, #{<<\"k\">> => [#{1 => 2}]}, list_to_tuple(lists:seq(1, 300))}.",
        "erlang:make_ref().",
    ],
)
def test_erlang_terms_decode_and_encode_back_to_the_same_bytes(erl, expression):
    theirs = erl.request(1, expression.encode())
    term = etf.decode(theirs)
    assert etf.encode(term) == theirs


@needs_erl
def test_compressed_terms_from_erlang(erl):
    theirs = erl.request(2, b"{lists:seq(1, 5000), lists:duplicate(3000, <<\"abc\">>)}.")
    assert theirs[1] == etf.COMPRESSED
    assert etf.decode(theirs) == (list(range(1, 5001)), [b"abc"] * 3000)


@needs_erl
@pytest.mark.parametrize(
    "term, expression",
    [
        ("héllo", '<<"héllo"/utf8>>.'),
        (None, "nil."),
        (Atom("undefined"), "undefined."),
        ({Atom("mu"): 0.0, "sigma": [1.5]}, '#{mu => 0.0, <<"sigma">> => [1.5]}.'),
        (np.array([[1, 2], [3, 4]]), "[[1.0, 2.0], [3.0, 4.0]]."),
        ((Atom("python"), Atom("ValueError"), "msg"), '{python, \'ValueError\', <<"msg">>}.'),
    ],
)
def test_python_values_are_the_erlang_terms_the_table_promises(erl, term, expression):
    ours = etf.encode(term)
    answer = erl.request(3, struct.pack(">I", len(ours)) + ours + expression.encode())
    assert etf.decode(answer) is True


@pytest.mark.parametrize(
    "array",
    [
        np.arange(7.0),
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.zeros((3, 0)),
        np.array([], dtype=float),
        np.array([True, False]),
        np.float32(1.5) * np.ones((2, 2), dtype=np.float32),
        np.array(3.0),
        np.random.default_rng(1).normal(size=(5, 3)),
    ],
)
def test_numpy_arrays_encode_as_their_plain_nested_lists(array):
    plain = etf.encode(etf._array_as_lists(array))  # the oracle: the element-by-element path
    assert etf.encode(array) == plain
    assert etf.decode(etf.encode(array)) == etf._array_as_lists(array)


def test_a_numpy_array_with_nan_is_refused():
    with pytest.raises(EncodeError, match="NaN"):
        etf.encode(np.array([1.0, float("nan")]))


def test_long_float_lists_decode_like_the_element_by_element_path():
    rng = np.random.default_rng(3)
    floats = rng.normal(size=100).tolist()
    raw = etf.encode(floats)
    fast = etf.decode(raw)
    class Plain(etf._Decoder):  # the element-by-element path as the oracle
        def float_run(self, pos, n):
            return None

    assert fast == Plain(raw, None).term(1, 0)[0] == floats
    mixed = floats[:50] + [Atom("x")] + floats[50:]  # not all floats: the plain path
    assert etf.decode(etf.encode(mixed)) == mixed
    assert etf.decode(etf.encode([floats, (floats,)])) == [floats, (floats,)]
    with pytest.raises(DecodeError):  # a run cut short is still refused
        etf.decode(raw[:-20])


def test_a_pynode_ref_crosses_as_an_erlang_reference_of_its_node_and_comes_back():
    from pynode.signals import Ref as PyRef

    local = etf.Local("a@h", 7)
    for ident in (1, 0x3FFFF, 0x40000, 123456789, (1 << 50) - 1):
        ref = PyRef("a@h", ident)
        data = etf.encode(ref, local)
        assert data[1] == 90  # NEWER_REFERENCE_EXT: an Erlang reference
        assert etf.decode(data, local) == ref
        plain = etf.decode(data)  # decoded elsewhere (another node): an Erlang reference
        assert plain == Ref("a@h", 7, (ident & 0x3FFFF, ident >> 18, etf.PYREF_MARK))
        assert etf.encode(plain, local) == data  # and it goes back as the same bytes
    # a reference of this node without the mark stays an Erlang reference
    other = Ref("a@h", 7, (1, 2, 3))
    assert etf.decode(etf.encode(other, local), local) == other
