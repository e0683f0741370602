"""ctcm: executable reference model of RDMA CM connection tracking and RoCEv2
CNP generation (a Python re-creation of libconntrack-cm).

Pythonic API first; the C library's names are importable as thin aliases
(``ctcm_parse_packets``, ``ctcm_fill_cnp_template``, ``ctcm_generate_cnp`` ...).
"""

from __future__ import annotations

from .cnp import CnpGenerator, fill_cnp_template, generate_cnp
from .icrc import icrc, icrc_bytes, verify_icrc
from .packet import (
    CM, MALFORMED, NOT_ROCE, ROCE, Decoded, Parsed, build_cm, build_roce, classify, decode,
    ip_cm_private_data,
)

__version__ = "0.1.0"


def parse_packets(packets) -> list[Parsed]:
    """Classify each frame (bytes-like); see :func:`ctcm.packet.classify`."""
    return [classify(p) for p in packets]


# --- C API parity aliases ----------------------------------------------------

def ctcm_parse_packets(ctx, packets) -> list[Parsed]:
    """``ctcm_parse_packets(ctx, packets)``: ``ctx`` is accepted for parity and unused."""
    return parse_packets(packets)


def ctcm_fill_cnp_template(ctx=None, buf: bytearray | None = None, **template_kw) -> bytearray:
    """Fill ``buf`` (IPv4: at least 60 bytes) with the CNP template, or return a new one."""
    t = fill_cnp_template(**template_kw)
    if buf is None:
        return t
    if len(buf) < len(t):
        raise ValueError(f"buffer of {len(buf)} bytes is shorter than the {len(t)}-byte CNP template")
    buf[: len(t)] = t
    return buf


def ctcm_generate_cnp(ctx, buf: bytearray, dest_qpn: int) -> None:
    """Set the destination QPN and ICRC of ``buf`` in place (IP checksum left to offload)."""
    generate_cnp(buf, dest_qpn, out=buf)


__all__ = [
    "CM", "MALFORMED", "NOT_ROCE", "ROCE", "Decoded", "Parsed", "CnpGenerator",
    "build_cm", "build_roce", "classify", "decode", "ip_cm_private_data", "parse_packets",
    "fill_cnp_template", "generate_cnp", "icrc", "icrc_bytes", "verify_icrc",
    "ctcm_parse_packets", "ctcm_fill_cnp_template", "ctcm_generate_cnp",
]
