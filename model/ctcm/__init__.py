"""ctcm: executable reference model of RDMA CM connection tracking and RoCEv2
CNP generation (a Python re-creation of libconntrack-cm).

Pythonic API first; the C library's names are importable as thin aliases
(``ctcm_parse_packets``, ``ctcm_fill_cnp_template``, ``ctcm_generate_cnp`` ...).
"""

from __future__ import annotations

from ctcm.dataplane.cnp import CnpGenerator, fill_cnp_template, generate_cnp
from ctcm.dataplane.icrc import icrc, icrc_bytes, verify_icrc
from ctcm.dataplane.packet import (
    CM, MALFORMED, NOT_ROCE, ROCE, Decoded, Parsed, build_cm, build_roce, classify, decode,
    ip_cm_private_data,
)

from ctcm.dataplane.config import Config, load_config
from ctcm.dataplane.pipeline import Pipeline, Result
from ctcm.spec import Counter, Geometry, Msg, State
from ctcm.dataplane.tracker import FROM_HOST, FROM_NET, Direction, Event, Tracker

__version__ = "0.1.0"

CTCM_FROM_HOST = FROM_HOST
CTCM_FROM_NET = FROM_NET


def parse_packets(packets) -> list[Parsed]:
    """Classify each frame (bytes-like); see :func:`ctcm.dataplane.packet.classify`."""
    return [classify(p) for p in packets]


# --- C API parity aliases ----------------------------------------------------

def ctcm_parse_packets(ctx, packets) -> list[Parsed]:
    """``ctcm_parse_packets(ctx, packets)``: ``ctx`` is accepted for parity and unused."""
    return parse_packets(packets)


def ctcm_create(**kw) -> Tracker:
    """``ctcm_create()``: a new tracker (keyword options as :class:`Tracker`)."""
    return Tracker(**kw)


def ctcm_destroy(ctx: Tracker) -> None:
    """``ctcm_destroy(ctx)``."""
    ctx.close()


def ctcm_process_packets(ctx: Tracker, direction, packets, num_packets: int | None = None, now_us: int = 0) -> int:
    """``ctcm_process_packets(ctx, dir, packets, num_packets)``: returns CM messages processed."""
    if num_packets is not None:
        packets = list(packets)[:num_packets]
    return ctx.process_packets(direction, packets, now_us)


def ctcm_query_ipv4(ctx: Tracker, dest_ip, dqpn: int) -> int:
    """``ctcm_query_ipv4(ctx, dest_ip, dqpn)``: local QPN, 0 when unknown."""
    return ctx.query_ipv4(dest_ip, dqpn)


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
    "ctcm_create", "ctcm_destroy", "ctcm_process_packets", "ctcm_query_ipv4", "CTCM_FROM_HOST", "CTCM_FROM_NET",
    "FROM_HOST", "FROM_NET", "Direction", "Geometry", "State", "Msg", "Counter", "Tracker", "Event", "Config", "load_config",
    "Pipeline", "Result",
]
