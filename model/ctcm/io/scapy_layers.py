"""Scapy layers for DETH, MAD and every CM message, generated from the field tables.

Offsets live only in :mod:`ctcm.spec.headers`; this module turns each table into
a scapy ``fields_desc`` (reserved gaps become ``reserved_<bit>`` fields) and
binds the layers below scapy.contrib.roce's BTH::

    Ether()/IP()/UDP(dport=4791)/BTH(opcode=0x64, dqpn=1)/DETH()/MAD()/CM_REQ(local_qpn=0x99)

builds a valid 322-byte CM MAD with a correct ICRC (scapy's BTH computes it).
Importing this module registers the bindings.
"""

from __future__ import annotations

from scapy.contrib.roce import BTH
from scapy.fields import BitField, StrFixedLenField, XBitField
from scapy.packet import Packet, bind_layers

from ctcm.spec import headers as H
from ctcm.spec.fields import Header

__all__ = ["DETH", "MAD", "CM_LAYERS", "fields_desc_of", "layer_for"]


def fields_desc_of(header: Header) -> list:
    """scapy fields for a table, in wire order, gaps filled with reserved fields."""
    items = [(f.first_bit, f.end_bit, f) for f in header.fields]
    items += [(s, e, None) for s, e in header.reserved_ranges()]
    out = []
    for start, end, f in sorted(items, key=lambda x: x[0]):
        width = end - start
        if f is None:
            if start % 8 == 0 and width % 8 == 0 and width > 64:
                out.append(StrFixedLenField(f"reserved_{start}", b"\0" * (width // 8), width // 8))
            else:
                out.append(_bits(f"reserved_{start}", width, hex_=True))
        elif f.is_bytes:
            out.append(StrFixedLenField(f.name, b"\0" * (f.width // 8), f.width // 8))
        else:
            out.append(_bits(f.name, f.width, hex_=f.fmt != "dec"))
    return out


def _bits(name: str, width: int, hex_: bool):
    # Scapy's BitField handles any width and alignment; runs of bit fields
    # must end on a byte boundary, which every table here guarantees.
    return (XBitField if hex_ else BitField)(name, 0, width)


def layer_for(header: Header, name: str | None = None, defaults: dict | None = None) -> type:
    """A scapy Packet class for a table."""
    fd = fields_desc_of(header)
    for fld in fd:
        if defaults and fld.name in defaults:
            fld.default = defaults[fld.name]
    return type(name or header.name, (Packet,), {"name": header.name, "fields_desc": fd,
                                                 "__doc__": header.doc})


DETH = layer_for(H.DETH, "DETH", {"qkey": 0x80010000, "src_qp": 1})
MAD = layer_for(H.MAD, "MAD", {"base_version": 1, "mgmt_class": 0x07, "class_version": 2, "method": 0x03})

CM_LAYERS: dict[int, type] = {}
for _attr, _hdr in H.CM_MESSAGES.items():
    _cls = layer_for(_hdr)
    globals()[_hdr.name] = _cls
    CM_LAYERS[_attr] = _cls
    __all__.append(_hdr.name)
    # MAD/CM_x sets the MAD's attribute ID automatically.
    bind_layers(MAD, _cls, mgmt_class=0x07, attr_id=_attr)

bind_layers(BTH, DETH, opcode=0x64)  # UD SEND_ONLY
bind_layers(DETH, MAD)
