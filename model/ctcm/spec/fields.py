"""Declarative header/message field tables.

Every on-the-wire structure the model knows is described exactly once, as a
:class:`Header`: a name, a length in bytes and a list of :class:`Field` rows
(name, byte offset, bit offset, width in bits), in the style of the Linux
kernel's IBTA CM field declarations (``IBA_FIELD_BLOC``/``CM_FIELD32_LOC``).
Bit offsets count from the most significant bit of the byte (bit 0 = MSB), as
IBTA and the facts sheet do.

The same table drives decoding (:meth:`Header.decode`), encoding
(:meth:`Header.encode`), the scapy layers (``ctcm.io.scapy_layers``), the hot-path
offsets (``ctcm.dataplane.packet``) and the documentation. Bytes not covered by a field
are reserved: they encode as zero and are ignored on decode.
"""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress

__all__ = ["Field", "Header"]

# Display formats, used by summaries and field-level diffs.
FMT_DEC = "dec"
FMT_HEX = "hex"
FMT_MAC = "mac"
FMT_IPV4 = "ipv4"
FMT_IPV6 = "ipv6"  # 16 bytes; also used for GIDs
FMT_BYTES = "bytes"


@dataclass(frozen=True)
class Field:
    """One field: ``width`` bits starting at bit ``bit`` of byte ``byte``.

    Fields wider than 64 bits must be byte aligned and are values of type
    ``bytes``; all others are ``int``.
    """

    name: str
    byte: int
    bit: int
    width: int
    fmt: str = FMT_HEX
    doc: str = ""

    @property
    def is_bytes(self) -> bool:
        return self.width > 64

    @property
    def first_bit(self) -> int:
        return self.byte * 8 + self.bit

    @property
    def end_bit(self) -> int:
        return self.first_bit + self.width

    @property
    def nbytes(self) -> int:
        """Number of bytes the field's bits span."""
        return (self.end_bit + 7) // 8 - self.byte

    @property
    def shift(self) -> int:
        """Right shift that moves the field to bit 0 of its spanning bytes."""
        return (self.byte + self.nbytes) * 8 - self.end_bit

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def format(self, value) -> str:
        """Human form of a value of this field (summaries and diffs)."""
        if self.is_bytes or isinstance(value, (bytes, bytearray)):
            b = bytes(value)
            if self.fmt == FMT_IPV6 and len(b) == 16:
                return str(ipaddress.IPv6Address(b))
            return b.hex()
        if self.fmt == FMT_DEC:
            return str(value)
        if self.fmt == FMT_IPV4:
            return str(ipaddress.IPv4Address(value))
        if self.fmt == FMT_MAC:
            return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))
        digits = (self.width + 3) // 4
        return f"0x{value:0{digits}x}"


class Header:
    """A fixed-length header or message described by a field table."""

    def __init__(self, name: str, length: int, fields: list[Field], doc: str = ""):
        self.name = name
        self.length = length
        self.fields = tuple(fields)
        self.doc = doc
        self.by_name = {}
        for f in self.fields:
            if f.name in self.by_name:
                raise ValueError(f"{name}: duplicate field {f.name}")
            if not (0 <= f.bit < 8) or f.width <= 0:
                raise ValueError(f"{name}.{f.name}: bad bit offset/width")
            if f.end_bit > length * 8:
                raise ValueError(f"{name}.{f.name}: past the end of the {length}-byte header")
            if f.is_bytes and (f.bit or f.width % 8):
                raise ValueError(f"{name}.{f.name}: fields over 64 bits must be whole bytes")
            self.by_name[f.name] = f
        spans = sorted((f.first_bit, f.end_bit, f.name) for f in self.fields)
        for (s0, e0, n0), (s1, _e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise ValueError(f"{name}: fields {n0} and {n1} overlap")
        # Precomputed accessors: (name, start, end, shift, mask, is_bytes).
        self._plan = tuple(
            (f.name, f.byte, f.byte + f.nbytes, f.shift, f.mask, f.is_bytes) for f in self.fields
        )
        # For encode(): per field, its left shift in the header read as one
        # big-endian integer, its mask, and whether it is a byte string.
        self._encode_plan = {f.name: (length * 8 - f.end_bit, f.mask, f.is_bytes) for f in self.fields}

    def __repr__(self) -> str:
        return f"<Header {self.name} {self.length} bytes, {len(self.fields)} fields>"

    def __getitem__(self, name: str) -> Field:
        return self.by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def __iter__(self):
        return iter(self.fields)

    # -- decoding ---------------------------------------------------------
    def decode(self, buf, offset: int = 0) -> dict:
        """Decode every field of the header found at ``buf[offset:]``.

        Raises ``ValueError`` when fewer than ``length`` bytes remain; callers
        that must never raise (the packet decoder) check the length first.
        """
        if len(buf) - offset < self.length:
            raise ValueError(
                f"{self.name}: need {self.length} bytes at offset {offset}, have {max(0, len(buf) - offset)}"
            )
        mv = memoryview(buf)
        out = {}
        for name, start, end, shift, mask, is_bytes in self._plan:
            chunk = mv[offset + start : offset + end]
            if is_bytes:
                out[name] = bytes(chunk)
            else:
                out[name] = (int.from_bytes(chunk, "big") >> shift) & mask
        return out

    def get(self, buf, name: str, offset: int = 0):
        """Decode one field."""
        f = self.by_name[name]
        chunk = bytes(buf[offset + f.byte : offset + f.byte + f.nbytes])
        if len(chunk) < f.nbytes:
            raise ValueError(f"{self.name}.{name}: buffer too short")
        if f.is_bytes:
            return chunk
        return (int.from_bytes(chunk, "big") >> f.shift) & f.mask

    # -- encoding ---------------------------------------------------------
    def check(self, name: str, value):
        """Validate ``value`` for field ``name``; raise ValueError naming it."""
        f = self.by_name.get(name)
        if f is None:
            raise ValueError(f"{self.name}: unknown field {name!r}")
        if f.is_bytes:
            if isinstance(value, str):
                value = _text_to_bytes(f, value)
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise ValueError(f"{self.name}.{name}: expected bytes, got {type(value).__name__}")
            value = bytes(value)
            if len(value) > f.width // 8:
                raise ValueError(
                    f"{self.name}.{name}: {len(value)} bytes do not fit in {f.width // 8} bytes"
                )
            return value.ljust(f.width // 8, b"\0")
        if isinstance(value, str) and f.fmt in (FMT_IPV4, FMT_MAC):
            value = _text_to_int(f, value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.name}.{name}: expected an integer, got {value!r}")
        if value < 0 or value > f.mask:
            raise ValueError(
                f"{self.name}.{name}: value {value:#x} does not fit in {f.width} bits"
            )
        return value

    def encode_into(self, buf: bytearray, offset: int = 0, values: dict | None = None, **kw) -> None:
        """Write the given fields into ``buf`` at ``offset``; others are untouched."""
        if values:
            kw = {**values, **kw}
        if len(buf) - offset < self.length:
            raise ValueError(f"{self.name}: buffer too short to encode into")
        for name, value in kw.items():
            value = self.check(name, value)
            f = self.by_name[name]
            start = offset + f.byte
            end = start + f.nbytes
            if f.is_bytes:
                buf[start:end] = value
                continue
            cur = int.from_bytes(buf[start:end], "big")
            cur = (cur & ~(f.mask << f.shift)) | (value << f.shift)
            buf[start:end] = cur.to_bytes(f.nbytes, "big")

    def encode(self, values: dict | None = None, **kw) -> bytes:
        """Encode a header; fields not given are zero (reserved bytes too).

        The same bytes and errors as :meth:`encode_into` on a zeroed buffer,
        built as one integer: fields never overlap and unnamed bits are zero,
        so OR-ing each shifted field value gives the header (a test checks
        both paths agree). Anything but an in-range int goes through
        :meth:`check` (text conversion, or the error naming the field)."""
        if values:
            kw = {**values, **kw}
        plan = self._encode_plan
        acc = 0
        for name, value in kw.items():
            p = plan.get(name)
            if p is None or p[2] or type(value) is not int or value < 0 or value > p[1]:
                value = self.check(name, value)
                p = plan[name]
                if p[2]:
                    value = int.from_bytes(value, "big")
            acc |= value << p[0]
        return acc.to_bytes(self.length, "big")

    def format(self, values: dict) -> dict:
        """Human-readable strings for a decoded dict (for summaries, diffs)."""
        return {k: self.by_name[k].format(v) for k, v in values.items() if k in self.by_name}

    def reserved_ranges(self):
        """(first_bit, end_bit) ranges not covered by any field."""
        spans = sorted((f.first_bit, f.end_bit) for f in self.fields)
        pos, out = 0, []
        for s, e in spans:
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < self.length * 8:
            out.append((pos, self.length * 8))
        return out


def _text_to_bytes(f: Field, text: str) -> bytes:
    try:
        if f.fmt == FMT_IPV6:
            # An IPv4 address sits in the last 4 of 16 bytes (RDMA CM IP header).
            return ipaddress.ip_address(text).packed.rjust(16, b"\0")
        return bytes.fromhex(text)
    except ValueError as e:
        raise ValueError(f"{f.name}: cannot read {text!r} as {f.fmt}: {e}") from None


def _text_to_int(f: Field, text: str) -> int:
    try:
        if f.fmt == FMT_IPV4:
            return int(ipaddress.IPv4Address(text))
        return int(text.replace(":", "").replace("-", ""), 16)
    except ValueError as e:
        raise ValueError(f"{f.name}: cannot read {text!r} as {f.fmt}: {e}") from None
