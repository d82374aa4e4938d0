"""PROXY protocol v1/v2 header: a sans-I/O parser (HAProxy's proxy-protocol.txt).

A listener in ``--proxy-protocol`` gets, before any HTTP (or stream) byte, one header
from the proxy (HAProxy's ``send-proxy`` / ``send-proxy-v2``) naming the client's
address.  The version is detected as HAProxy's ``accept-proxy`` does: the 12-byte v2
signature, or ``"PROXY "``.  Reading is split so that not one byte past the header is
consumed (the bytes after it, TLS included, are the protocol's):

- ``remaining(buf)``: 0 once ``buf`` is a whole header, else how many bytes to peek;
- ``take(buf, peeked)``: how many of the peeked bytes belong to the header;
- ``parse(buf)``: the ``Header``.

Any of them raises ``HeaderError`` (one line saying what is wrong) as soon as the bytes
cannot start a valid header.  Limits: v1 ≤ 107 bytes (the spec's), v2 ≤ 16 + ``V2_MAX``
(HAProxy's own buffer, 16 KiB, bounds it the same way).  Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_V1 = b"PROXY "
V1_MAX = 107  # bytes, CRLF included (the spec's worst case: TCP6 with the longest addresses)
V2_MAX = 16384 - 16  # bytes after the 16-byte fixed part (HAProxy's tune.bufsize default)
FAMILIES = {0x0: "UNSPEC", 0x1: "AF_INET", 0x2: "AF_INET6", 0x3: "AF_UNIX"}
TRANSPORTS = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}
ADDRESS_SIZE = {"AF_INET": 12, "AF_INET6": 36, "AF_UNIX": 216}
PP2_TYPE_CRC32C = 0x03


class HeaderError(ValueError):
    """Not a valid PROXY header; ``str()`` says what is wrong."""


@dataclass(frozen=True)
class Header:
    """A parsed header.

    ``command``: ``PROXY`` (addresses relayed) or ``LOCAL`` (the proxy's own connection,
    a health check: the socket's real endpoints stand).  ``family``: ``AF_INET``,
    ``AF_INET6``, ``AF_UNIX`` or ``UNSPEC`` (v1 ``UNKNOWN``).  ``source`` / ``destination``:
    ``(host, port)`` for IP families, a path for ``AF_UNIX``, None otherwise.  ``tlvs``:
    v2's ``(type, value)`` pairs in order.  ``length``: bytes the header took.
    """

    version: int
    command: str
    family: str
    transport: str
    source: tuple[str, int] | str | None
    destination: tuple[str, int] | str | None
    tlvs: tuple[tuple[int, bytes], ...]
    length: int

    @property
    def relayed(self) -> bool:
        """Whether the header names the client (else the real endpoints are used, as the spec says)."""
        return self.command == "PROXY" and self.family in ADDRESS_SIZE


def _v2_total(buf: bytes) -> int:
    """The whole v2 header's length from its 16-byte fixed part (validated)."""
    if buf[12] >> 4 != 2:
        raise HeaderError(f"PROXY v2: version {buf[12] >> 4}, not 2")
    if buf[12] & 0xF not in (0, 1):
        raise HeaderError(f"PROXY v2: unknown command {buf[12] & 0xF}")
    length = struct.unpack_from("!H", buf, 14)[0]
    if length > V2_MAX:
        raise HeaderError(f"PROXY v2: header claims {length} bytes, more than {V2_MAX}")
    return 16 + length


def _check_prefix(data: bytes) -> int:
    """1 or 2 for a valid start of a v1 / v2 header (0: cannot tell yet); HeaderError for garbage."""
    for version, magic in ((1, PREFIX_V1), (2, SIGNATURE_V2)):
        if data[:len(magic)] == magic[:len(data)]:
            return version if len(data) >= len(magic) else 0
    raise HeaderError(f"no PROXY header: the connection starts with {data[:16]!r}")


def remaining(buf: bytes) -> int:
    """0 when ``buf`` holds a whole header, else the most bytes the header may still need."""
    version = _check_prefix(buf) if buf else 0
    if version == 1:
        return 0 if buf.endswith(b"\r\n") else V1_MAX - len(buf)
    if version == 2 and len(buf) >= 16:
        return _v2_total(buf) - len(buf)
    return V1_MAX - len(buf)  # not known yet: at least as much as the longer of the two starts


def take(buf: bytes, peeked: bytes) -> int:
    """How many leading bytes of ``peeked`` (available after ``buf``) belong to the header (≥ 1)."""
    data = buf + peeked
    version = _check_prefix(data[:16])
    if version == 1:
        end = data.find(b"\r\n", max(len(buf) - 1, 0))
        if end < 0 and len(data) >= V1_MAX or end + 2 > V1_MAX:
            raise HeaderError(f"PROXY v1: no CRLF within {V1_MAX} bytes")
        return (end + 2 if end >= 0 else len(data)) - len(buf)
    if version == 2 and len(data) >= 16:
        return min(len(data), _v2_total(data)) - len(buf)
    return len(peeked)


def parse(buf: bytes) -> Header:
    """The header in ``buf`` (exactly one whole header, as ``remaining`` said)."""
    if remaining(buf):
        raise HeaderError("PROXY header incomplete")
    return _parse_v1(buf) if buf.startswith(PREFIX_V1) else _parse_v2(buf)


def _parse_v1(buf: bytes) -> Header:
    """``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` or ``PROXY UNKNOWN...\\r\\n``."""
    try:
        line = buf[6:-2].decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("PROXY v1: not ASCII") from None
    parts = line.split(" ")
    if parts[0] == "UNKNOWN":  # the spec: the rest of the line is ignored
        return Header(1, "PROXY", "UNSPEC", "UNSPEC", None, None, (), len(buf))
    if parts[0] not in ("TCP4", "TCP6") or len(parts) != 5:
        raise HeaderError(f"PROXY v1: expected 'TCP4|TCP6 SRC DST SPORT DPORT', got {line[:60]!r}")
    family = "AF_INET" if parts[0] == "TCP4" else "AF_INET6"
    source = (_v1_host(parts[1], family), _v1_port(parts[3]))
    destination = (_v1_host(parts[2], family), _v1_port(parts[4]))
    return Header(1, "PROXY", family, "STREAM", source, destination, (), len(buf))


def _v1_host(text: str, family: str) -> str:
    if family == "AF_INET":  # the common case, without ipaddress's cost (~10 us here)
        octets = text.split(".")
        if len(octets) == 4 and all(o.isdigit() and o.isascii() and len(o) <= 3 and int(o) <= 255
                                    and (o == "0" or o[0] != "0") for o in octets):
            return text
        raise HeaderError(f"PROXY v1: {text[:46]!r} is not an {family} address")
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise HeaderError(f"PROXY v1: {text[:46]!r} is not an {family} address") from None


def _v1_port(text: str) -> int:
    if not (text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535) \
            or (text.startswith("0") and text != "0"):
        raise HeaderError(f"PROXY v1: {text[:8]!r} is not a port")
    return int(text)


def _parse_v2(buf: bytes) -> Header:
    if buf[13] >> 4 not in FAMILIES or buf[13] & 0xF not in TRANSPORTS:  # the spec: reject them
        raise HeaderError(f"PROXY v2: unknown address family/transport 0x{buf[13]:02x}")
    if not buf[12] & 0xF:  # LOCAL: the proxy's own (health check); the spec: discard the block
        return Header(2, "LOCAL", "UNSPEC", "UNSPEC", None, None, (), len(buf))
    family, transport = FAMILIES[buf[13] >> 4], TRANSPORTS[buf[13] & 0xF]
    size = ADDRESS_SIZE.get(family, 0)
    if len(buf) - 16 < size:
        raise HeaderError(f"PROXY v2: {len(buf) - 16} bytes cannot hold an {family} address")
    source, destination = _v2_addresses(family, buf[16:16 + size])
    return Header(2, "PROXY", family, transport, source, destination, _tlvs(buf, 16 + size), len(buf))


def _v2_addresses(family: str, block: bytes) -> tuple[object, object]:
    if family == "AF_INET":
        src, dst, sport, dport = struct.unpack("!4s4sHH", block)
        return (".".join(map(str, src)), sport), (".".join(map(str, dst)), dport)
    if family == "AF_INET6":
        src, dst, sport, dport = struct.unpack("!16s16sHH", block)
        return (str(ipaddress.IPv6Address(src)), sport), (str(ipaddress.IPv6Address(dst)), dport)
    if family == "AF_UNIX":
        return (block[:108].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
                block[108:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    return None, None


def _tlvs(buf: bytes, offset: int) -> tuple[tuple[int, bytes], ...]:
    """v2's TLVs after the address block: each must fit exactly; a CRC32C one must match."""
    found = []
    while offset < len(buf):
        if len(buf) - offset < 3:
            raise HeaderError("PROXY v2: truncated TLV")
        kind, size = buf[offset], struct.unpack_from("!H", buf, offset + 1)[0]
        if offset + 3 + size > len(buf):
            raise HeaderError(f"PROXY v2: TLV 0x{kind:02x} of {size} bytes overruns the header")
        found.append((kind, buf[offset + 3:offset + 3 + size]))
        if kind == PP2_TYPE_CRC32C:
            _check_crc(buf, offset + 3, size)
        offset += 3 + size
    return tuple(found)


def _check_crc(buf: bytes, at: int, size: int) -> None:
    """The spec: CRC32C of the whole header with the checksum field zeroed."""
    if size != 4:
        raise HeaderError("PROXY v2: CRC32C TLV is not 4 bytes")
    if crc32c(buf[:at] + b"\0\0\0\0" + buf[at + 4:]) != struct.unpack_from("!I", buf, at)[0]:
        raise HeaderError("PROXY v2: CRC32C mismatch")


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return tuple(table)


_CRC32C = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as PP2_TYPE_CRC32C uses it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
