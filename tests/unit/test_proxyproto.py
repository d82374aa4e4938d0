"""PROXY protocol v1/v2 parsing (worker/proxyproto.py) and its read on real sockets (proxyread.py)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from sockserve.worker import proxyproto
from sockserve.worker.proxypolicy import TrustedPeers, expects
from sockserve.worker.proxyproto import SIGNATURE_V2, HeaderError, parse, remaining, take
from sockserve.worker.proxyread import read_header

V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n"


def v2(command: int = 1, family: int = 0x11, block: bytes | None = None, tlvs: bytes = b"",
       length: int | None = None) -> bytes:
    if block is None:
        block = socket.inet_aton("192.0.2.7") + socket.inet_aton("198.51.100.1") \
            + struct.pack("!HH", 51234, 443)
    body = block + tlvs
    return SIGNATURE_V2 + bytes([0x20 | command, family]) + struct.pack("!H", len(body) if length is None
                                                                          else length) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def whole(data: bytes) -> proxyproto.Header:
    """Feed ``data`` one byte at a time through remaining/take, as the reader does; then parse."""
    buf = b""
    for i in range(len(data)):
        if not remaining(buf):
            break
        assert take(buf, data[i:i + 1]) == 1
        buf += data[i:i + 1]
    assert remaining(buf) == 0 and buf == data[:len(buf)]
    return parse(buf)


# ------------------------------------------------------------------ v1
@pytest.mark.parametrize("line, family, source, destination", [
    (V1, "AF_INET", ("192.0.2.7", 51234), ("198.51.100.1", 443)),
    (b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n", "AF_INET6", ("2001:db8::7", 65535), ("::1", 0)),
])
def test_v1_headers_name_the_client(line, family, source, destination):
    header = whole(line + b"GET / HTTP/1.1\r\n\r\n")
    assert (header.version, header.command, header.family) == (1, "PROXY", family)
    assert (header.source, header.destination, header.length) == (source, destination, len(line))
    assert header.relayed


def test_v1_unknown_keeps_the_real_endpoints():
    header = whole(b"PROXY UNKNOWN ffff:f...f:ffff 65535\r\n")
    assert header.family == "UNSPEC" and not header.relayed and header.source is None


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.0.2.7 198.51.100.1 51234\r\n",  # a field missing
    b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",  # v6 address in TCP4
    b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",  # port out of range
    b"PROXY TCP4 192.0.2.7 198.51.100.1 0080 2\r\n",  # leading zero
    b"PROXY TCP4 192.0.2.7 198.51.100.1 +80 2\r\n",
    b"PROXY TCP4  192.0.2.7 198.51.100.1 80 2\r\n",  # two spaces
    b"PROXY UDP4 192.0.2.7 198.51.100.1 80 2\r\n",
    b"PROXY TCP4 192.0.2.\xff 198.51.100.1 80 2\r\n",
])
def test_v1_malformed_lines_are_refused(line):
    with pytest.raises(HeaderError):
        whole(line)


def test_v1_without_crlf_within_107_bytes_is_oversized():
    line = b"PROXY TCP6 " + b"f" * 200
    with pytest.raises(HeaderError, match="107"):
        take(b"", line)
    with pytest.raises(HeaderError, match="107"):  # the same when it trickles in
        whole(line)
    longest = b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(longest) == 104 and whole(longest).source == ("ffff:" * 7 + "ffff", 65535)


# ------------------------------------------------------------------ v2
def test_v2_inet_with_tlvs():
    data = v2(tlvs=tlv(0x01, b"h2") + tlv(0x05, b"id-1"))
    header = whole(data + b"\x16\x03\x01")  # a TLS record after it stays unread
    assert (header.version, header.command, header.family) == (2, "PROXY", "AF_INET")
    assert header.transport == "STREAM"
    assert header.source == ("192.0.2.7", 51234) and header.destination == ("198.51.100.1", 443)
    assert header.tlvs == ((0x01, b"h2"), (0x05, b"id-1")) and header.length == len(data)


def test_v2_inet6_and_unix():
    block = socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "::1") \
        + struct.pack("!HH", 1, 2)
    assert whole(v2(family=0x21, block=block)).source == ("2001:db8::7", 1)
    block = b"/run/client.sock".ljust(108, b"\0") + b"/run/s.sock".ljust(108, b"\0")
    header = whole(v2(family=0x31, block=block))
    assert (header.family, header.source) == ("AF_UNIX", "/run/client.sock")
    assert header.destination == "/run/s.sock"


def test_v2_local_and_unspec_keep_the_real_endpoints():
    local = whole(v2(command=0))  # HAProxy's health checks: LOCAL, addresses ignored
    assert local.command == "LOCAL" and not local.relayed and local.source is None
    assert not whole(v2(command=0, family=0x00, block=b"")).relayed
    assert whole(v2(command=0, block=b"", tlvs=b"\x01")).command == "LOCAL"  # the block is not read
    unspec = whole(v2(family=0x00, block=b"", tlvs=tlv(0x04, b"")))
    assert unspec.family == "UNSPEC" and not unspec.relayed and unspec.tlvs == ((0x04, b""),)


def test_v2_crc32c_is_checked():
    assert proxyproto.crc32c(b"123456789") == 0xE3069283  # the standard check value
    data = bytearray(v2(tlvs=tlv(0x03, b"\0\0\0\0")))
    data[-4:] = struct.pack("!I", proxyproto.crc32c(bytes(data)))
    assert whole(bytes(data)).tlvs[0][0] == 0x03
    data[20] ^= 1  # one bit of the source address
    with pytest.raises(HeaderError, match="CRC32C"):
        whole(bytes(data))


@pytest.mark.parametrize("data, why", [
    (v2(tlvs=b"\x01\x00"), "truncated TLV"),
    (v2(tlvs=b"\x01\x00\x09ab"), "overruns"),
    (v2(family=0x21), "cannot hold"),  # 12 bytes of v4 under an AF_INET6 family
    (SIGNATURE_V2 + b"\x31\x11\x00\x00", "version 3"),
    (SIGNATURE_V2 + b"\x22\x11\x00\x00", "unknown command"),
    (v2(family=0x41), "unknown address family"),  # the spec: other values are rejected
    (v2(family=0x13), "unknown address family"),
])
def test_v2_malformed_headers_are_refused(data, why):
    with pytest.raises(HeaderError, match=why):
        whole(data)


def test_v2_claiming_65535_bytes_is_oversized_before_reading_them():
    start = SIGNATURE_V2 + b"\x21\x11\xff\xff"
    with pytest.raises(HeaderError, match="65535"):
        remaining(start)
    with pytest.raises(HeaderError, match="65535"):
        take(b"", start + b"x" * 100)


@pytest.mark.parametrize("data", [V1, v2(), v2(tlvs=tlv(0x05, b"x" * 300))])
def test_truncated_headers_ask_for_more(data):
    for cut in range(len(data)):
        assert remaining(data[:cut]) > 0
        with pytest.raises(HeaderError, match="incomplete"):
            parse(data[:cut])


@pytest.mark.parametrize("start", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00", b"PROXY\r\n",
                                   b"\r\n\r\n\x00\r\nQUIT\r"])
def test_garbage_is_refused_at_its_first_wrong_byte(start):
    with pytest.raises(HeaderError, match="no PROXY header"):
        whole(start)


# ------------------------------------------------------------------ on real sockets
def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    conn.setblocking(False)
    return client, conn


@pytest.mark.parametrize("data", [V1, v2(tlvs=tlv(0x02, b"example.org"))])
def test_a_header_fed_byte_by_byte_over_tcp_is_read_exactly(data):
    """One byte per send, the reader woken for each: the header, and not one byte more."""
    client, conn = _pair()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def main() -> proxyproto.Header:
        loop = asyncio.get_running_loop()
        reading = asyncio.ensure_future(read_header(loop, conn))
        for i in range(len(data)):
            client.send(data[i:i + 1])
            await asyncio.sleep(0.001)
        client.send(b"GET / HTTP/1.1\r\n\r\n")
        return await asyncio.wait_for(reading, 5)

    with client, conn:
        header = asyncio.run(main())
        assert header.source == ("192.0.2.7", 51234) and header.length == len(data)
        conn.setblocking(True)
        assert conn.recv(100) == b"GET / HTTP/1.1\r\n\r\n"  # the protocol's bytes are still there


def test_a_peer_closing_mid_header_is_eof():
    client, conn = _pair()

    async def main() -> None:
        client.send(V1[:10])
        client.close()
        await asyncio.wait_for(read_header(asyncio.get_running_loop(), conn), 5)

    with conn, pytest.raises(EOFError):
        asyncio.run(main())


# ------------------------------------------------------------------ which listeners, which peers
def test_listeners_are_named_by_key_address_or_all():
    assert expects(["web"], "web", "127.0.0.1:8000") and expects(["127.0.0.1:8000"], "web", "127.0.0.1:8000")
    assert expects(["all"], "x", "unix:/run/x.sock") and not expects(["api"], "web", "127.0.0.1:8000")
    assert expects(["edge"], "[::1]:80", "[::1]:80", "edge")  # a name shared by several sockets: not a key


def test_trusted_peers_read_forwarded_allow_ips_as_uvicorn_does():
    peers = TrustedPeers("127.0.0.1, 10.0.0.0/8,::1")
    assert "127.0.0.1" in peers and "10.2.3.4" in peers and "::1" in peers and "::ffff:127.0.0.1" in peers
    assert "192.0.2.7" not in peers and None not in peers and "" not in peers
    assert None in TrustedPeers("*") and "192.0.2.7" in TrustedPeers("*")


def test_mutated_headers_raise_only_header_error():
    """Random byte flips, cuts and growths of valid headers: a Header or HeaderError, nothing else."""
    import random

    rng = random.Random(16)
    seeds = [V1, v2(), v2(family=0x31, block=b"/a".ljust(216, b"\0")), v2(tlvs=tlv(0x03, b"abcd")),
             b"PROXY TCP6 ::1 ::2 1 2\r\n"]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256) if rng.random() < 0.8 else data[at] ^ 0x20
        tail = bytes(rng.randrange(256) for _ in range(rng.randint(0, 8)))
        data = bytes(data[:rng.randint(1, len(data))]) + tail
        try:
            buf = b""
            while need := remaining(buf):
                chunk = data[len(buf):len(buf) + need]
                if not chunk:
                    break
                buf += chunk[:take(buf, chunk)]
            else:
                assert parse(buf).length == len(buf)
        except HeaderError:
            pass


def test_refusals_past_the_burst_are_counted_in_one_line(monkeypatch, caplog):
    from sockserve.worker import proxyread

    monkeypatch.setattr(proxyread, "LOG_WINDOW", 0.2)

    async def main() -> None:
        gate = proxyread.ProxyGate(asyncio.get_running_loop(), {})
        for i in range(proxyread.LOG_BURST + 3):
            a, b = socket.socketpair()
            a.close()
            gate._refuse(b, ("192.0.2.1", i), "no PROXY header")
        await asyncio.sleep(0.4)  # the window ends: the count is told without another refusal
        assert gate.refused == proxyread.LOG_BURST + 3

    with caplog.at_level("WARNING", logger="sockserve.worker"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:proxyread.LOG_BURST] == [f"PROXY: connection from 192.0.2.1:{i} refused: no PROXY header"
                                          for i in range(proxyread.LOG_BURST)]
    summary = "PROXY: 3 more connections refused in 0.2s (not logged one by one)"
    assert lines[proxyread.LOG_BURST:] == [summary]
