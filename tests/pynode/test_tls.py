"""TLS: the throwaway CA, contexts, and the handshake inside TLS on real socket pairs."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pynode import handshake, tls, transport
from pynode.cli import main
from pynode.errors import HandshakeError, TLSError

A = "alpha@127.0.3.1"
B = "beta@127.0.3.2"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    tls.init(directory, ["a", "b"])
    return directory


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls-other")
    tls.init(directory, ["x"])
    return directory


def config(directory: Path, name: str, ca: Path | None = None) -> tls.TLS:
    return tls.TLS.in_directory(directory, name, ca=ca)


def run_pair(initiator: Callable[[socket.socket], Any], acceptor: Callable[[socket.socket], Any]) -> tuple[Any, Any]:
    left, right = socket.socketpair()
    results: dict[str, Any] = {}

    def side(key: str, fn: Callable[[socket.socket], Any], sock: socket.socket) -> None:
        try:
            results[key] = fn(sock)
        except Exception as exc:
            results[key] = exc
            sock.close()

    threads = [threading.Thread(target=side, args=("ini", initiator, left)),
               threading.Thread(target=side, args=("acc", acceptor, right))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results["ini"], results["acc"]


def handshake_pair(ini_tls: tls.TLS | None, acc_tls: tls.TLS | None) -> tuple[Any, Any]:
    return run_pair(
        lambda s: handshake.initiate(s, A, B, "k", hidden=False,
                                     tls=ini_tls.client_context() if ini_tls else None),
        lambda s: handshake.accept(s, B, lambda peer: "k", hidden=False,
                                   tls=acc_tls.server_context() if acc_tls else None),
    )


def test_init_writes_a_ca_and_certificates_with_owner_only_keys(certs: Path) -> None:
    names = sorted(p.name for p in certs.iterdir())
    assert names == ["a.key", "a.pem", "b.key", "b.pem", "ca.key", "ca.pem"]
    for key in ("a.key", "b.key", "ca.key"):
        assert stat.S_IMODE(os.stat(certs / key).st_mode) == 0o600
    with pytest.raises(TLSError, match="already holds"):
        tls.init(certs, ["a"])


def test_handshake_runs_inside_tls_and_both_ends_carry_data(certs: Path) -> None:
    ini, acc = handshake_pair(config(certs, "a"), config(certs, "b"))
    (isock, ipeer), (asock, apeer) = ini, acc
    try:
        assert ipeer == handshake.PeerInfo(B, False, tls=True) and apeer == handshake.PeerInfo(A, False, tls=True)
        assert isinstance(isock, transport.ssl.SSLSocket) and isock.version() == "TLSv1.3"
        assert asock.getpeercert() is not None  # mutual: the acceptor saw the initiator's certificate
        isock.sendall(b"hello inside")
        assert asock.recv(100) == b"hello inside"
    finally:
        isock.close()
        asock.close()


def test_cookie_proofs_are_never_sent_in_clear(certs: Path) -> None:
    """Everything after the two hellos is TLS records (content types 20-23), never raw proofs."""
    left, right = socket.socketpair()
    tap_left, tap_right = socket.socketpair()
    seen = bytearray()  # what the initiator sent
    other = bytearray()

    def relay(src: socket.socket, dst: socket.socket, seen: bytearray) -> None:
        try:
            while data := src.recv(65536):
                seen.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    threading.Thread(target=relay, args=(right, tap_left, seen), daemon=True).start()
    threading.Thread(target=relay, args=(tap_left, right, other), daemon=True).start()
    ini_ctx, acc_ctx = config(certs, "a").client_context(), config(certs, "b").server_context()
    results: dict[str, Any] = {}
    t = threading.Thread(target=lambda: results.setdefault(
        "acc", handshake.accept(tap_right, B, lambda p: "k", hidden=False, tls=acc_ctx)))
    t.start()
    sock, _ = handshake.initiate(left, A, B, "k", hidden=False, tls=ini_ctx)
    t.join(10)
    sock.close()
    hello_i = handshake._hello(A, False, tls=True)
    assert bytes(seen[: len(hello_i)]) == hello_i  # only the initiator's hello is in clear
    assert seen[len(hello_i)] == 0x16  # then a TLS handshake record
    hello_a = handshake._hello(B, False, tls=True)
    assert bytes(other[: len(hello_a)]) == hello_a and other[len(hello_a)] == 0x16


@pytest.mark.parametrize("tls_side", ["initiator", "acceptor"])
def test_tls_and_plain_refuse_each_other_saying_so_on_both_sides(certs: Path, tls_side: str) -> None:
    ini_tls = config(certs, "a") if tls_side == "initiator" else None
    acc_tls = config(certs, "b") if tls_side == "acceptor" else None
    ini, acc = handshake_pair(ini_tls, acc_tls)
    assert isinstance(ini, HandshakeError) and isinstance(acc, HandshakeError)
    if tls_side == "initiator":
        assert f"peer {B} does not speak TLS, we do" in str(ini)
        assert f"peer {A} (from" in str(acc) and "speaks TLS, we do not" in str(acc)
    else:
        assert f"peer {B} speaks TLS, we do not" in str(ini)
        assert f"peer {A} (from" in str(acc) and "does not speak TLS, we do" in str(acc)


def test_a_certificate_from_another_ca_is_refused(certs: Path, other_ca: Path) -> None:
    ini, acc = handshake_pair(config(other_ca, "x", ca=certs), config(certs, "b"))
    assert isinstance(acc, HandshakeError) and "TLS handshake" in str(acc)
    assert isinstance(ini, HandshakeError)


def test_bad_files_are_named(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(TLSError, match="nope.pem"):
        tls.TLS(str(tmp_path / "nope.pem"), str(certs / "a.key"), str(certs / "ca.pem")).server_context()
    with pytest.raises(TLSError, match="a.pem.*b.key"):
        tls.TLS(str(certs / "a.pem"), str(certs / "b.key"), str(certs / "ca.pem")).client_context()
    with pytest.raises(TLSError, match="cafile missing"):
        tls.from_env({tls.CERTFILE_ENV: "x", tls.KEYFILE_ENV: "y"})
    assert tls.from_env({}) is None


def test_cli_tls_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tls", "init", str(tmp_path / "c"), "--name", "n1", "--host", "127.0.3.5"]) == 0
    out = capsys.readouterr().out
    assert "--tls-certfile" in out and (tmp_path / "c" / "n1.pem").exists()
    assert main(["tls", "init", str(tmp_path / "c")]) == 1  # would overwrite: refused


def test_verify_peer_false_only_encrypts(certs: Path, other_ca: Path) -> None:
    lax_ini = tls.TLS.in_directory(other_ca, "x", verify_peer=False)
    lax_acc = tls.TLS.in_directory(certs, "b", verify_peer=False)
    ini, acc = handshake_pair(lax_ini, lax_acc)
    assert not isinstance(ini, Exception) and not isinstance(acc, Exception), (ini, acc)
    assert ini[1].tls and acc[1].tls
    ini[0].close()
    acc[0].close()


def test_node_start_with_unusable_tls_files_starts_nothing(tmp_path: Path) -> None:
    import pynode

    with pytest.raises(TLSError, match="missing.pem"):
        pynode.Node.start("tlsfail@127.0.3.33", cookie="k",
                          tls=pynode.TLS(str(tmp_path / "missing.pem"), str(tmp_path / "k"), str(tmp_path / "c")))
    assert not pynode.Node.alive()


def test_a_relay_holding_a_cluster_certificate_but_no_cookie_cannot_sit_between_two_nodes(certs: Path) -> None:
    """A man in the middle with a certificate of the cluster's CA terminates TLS with each node and
    relays every byte of the cookie handshake: the proofs are bound to each TLS channel, so both
    nodes refuse (without the binding, both would accept and the relay would read everything)."""
    a_side, relay_a = socket.socketpair()
    relay_b, b_side = socket.socketpair()
    relay_tls = config(certs, "b")  # any certificate the CA signed

    def relay() -> None:
        try:
            hello_i = relay_a.recv(handshake.HELLO_MAX)  # the hellos go across in clear
            relay_b.sendall(hello_i)
            hello_a = relay_b.recv(handshake.HELLO_MAX)
            relay_a.sendall(hello_a)
            to_a = relay_tls.server_context().wrap_socket(relay_a, server_side=True)
            to_b = relay_tls.client_context().wrap_socket(relay_b)
            to_a.settimeout(5)
            to_b.settimeout(5)
            to_a.sendall(to_b.recv(handshake.CHALLENGE_BYTES))  # challenge_a
            to_b.sendall(to_a.recv(handshake.CHALLENGE_BYTES + handshake.PROOF_BYTES))  # challenge_i, proof_i
            to_a.sendall(to_b.recv(1 + handshake.PROOF_BYTES))  # status, proof_a
        except OSError:
            pass

    threading.Thread(target=relay, daemon=True).start()
    results: dict[str, Any] = {}

    def side(key: str, fn: Callable[[], Any]) -> None:
        try:
            results[key] = fn()
        except Exception as exc:
            results[key] = exc

    threads = [
        threading.Thread(target=side, args=("ini", lambda: handshake.initiate(
            a_side, A, B, "k", hidden=False, tls=config(certs, "a").client_context()))),
        threading.Thread(target=side, args=("acc", lambda: handshake.accept(
            b_side, B, lambda peer: "k", hidden=False, tls=config(certs, "b").server_context()))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert isinstance(results["acc"], HandshakeError) and "failed to prove the cookie" in str(results["acc"])
    assert isinstance(results["ini"], HandshakeError)


def test_in_directory_names_the_files_init_wrote(certs: Path, other_ca: Path) -> None:
    mine = tls.TLS.in_directory(certs, "a")
    assert (mine.certfile, mine.keyfile, mine.cafile) == (str(certs / "a.pem"), str(certs / "a.key"), str(certs / "ca.pem"))
    assert mine.verify_peer
    assert all(Path(f).is_file() for f in (mine.certfile, mine.keyfile, mine.cafile))
    crossed = tls.TLS.in_directory(other_ca, "x", ca=certs, verify_peer=False)
    assert (crossed.certfile, crossed.cafile, crossed.verify_peer) == (str(other_ca / "x.pem"), str(certs / "ca.pem"), False)
    with pytest.raises(TLSError, match="nobody.pem"):
        tls.TLS.in_directory(certs, "nobody").server_context()
