"""Scenario files (YAML) -> timestamped stimulus frames.

A scenario names hosts and CM connections and gives a timeline of events;
:func:`compile_scenario` turns it into the stimulus: a list of
:class:`Stimulus` (time µs, ingress port, frame bytes, note). The format is
documented in docs/vectors.md. Invalid files raise :class:`ScenarioError`
whose message names the file, the line and the problem.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dataclasses import fields as dc_fields

from ctcm.dataplane.config import MAX_PORT
from ctcm.spec import headers as H
from ctcm.dataplane.packet import (
    MAD_BASE_VERSION, OPCODE_RC_SEND_ONLY, build_cm, build_roce, classify, ip_cm_private_data, ipv4_checksum,
)
from ctcm.spec import Geometry
from ctcm.io.yamlsrc import Ctx, Map, SourceError, load_yaml_text, plain, read_text

__all__ = ["ScenarioError", "Stimulus", "Scenario", "load_scenario", "parse_scenario", "compile_scenario",
           "stream_scenario", "scenario_packets", "Checkpoint",
           "check_options"]

# RDMA CM over IP service IDs (annex A11): 0x0000000001 || port space || port.
RDMA_IP_PS_TCP = 0x0000000001060000


class ScenarioError(SourceError):
    """One-line message: ``FILE:LINE: problem``."""


#: model time limit in µs (48 bits, like a P4 target's timestamps: about 8.9 years)
MAX_TIME_US = (1 << 48) - 1
#: RoCE payload limit in bytes (the largest IB MTU)
MAX_PAYLOAD = 4096


def check_name(ctx, node, name) -> str:
    """A vector name: it prefixes file names."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name \
            or name.startswith(".tmp-") or len(name.encode()) > 200:
        raise ctx.err(node, f"name {name!r} cannot be a file name prefix (no '/', not empty, at most 200 bytes)")
    return name


def _ranged(ctx, m, key, lo, hi, default=None, what=""):
    """An integer field in [lo, hi]."""
    v = ctx.typed(m, key, int, default)
    if v is not None and not lo <= v <= hi:
        raise ctx.err(m, f"{what}{key} {v} is out of range ({lo}..{hi})")
    return v


@dataclass
class Stimulus:
    t_us: int
    port: int
    frame: bytes
    note: str = ""


@dataclass
class Host:
    name: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    mac: str
    side: str  # "host" or "net"


@dataclass
class Conn:
    name: str
    host: Host
    peer: Host
    opener: str  # "host" or "peer"
    qpn: dict  # side -> QPN
    comm_id: dict
    psn: dict
    service_id: int
    vlan: int | None
    index: int
    data_psn: dict = field(default_factory=dict)
    tid: int = 0


@dataclass
class Scenario:
    name: str
    description: str
    path: str
    options: dict
    ports: dict  # {"host": int, "net": int}
    hosts: dict
    conns: dict
    timeline: list


# --- loading and validation ---------------------------------------------------

def load_scenario(path: str) -> Scenario:
    return parse_scenario(read_text(path, ScenarioError), path)


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    ctx = Ctx(path, ScenarioError)
    doc = load_yaml_text(text, path, ScenarioError)
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: a scenario is a YAML mapping")
    ctx.only(doc, {"name", "description", "options", "ports", "hosts", "connections", "timeline"})
    name = check_name(ctx, doc, ctx.req(doc, "name", str))
    ctx.typed(doc, "description", str)
    options = check_options(ctx, ctx.typed(doc, "options", dict, Map()))
    ports = ctx.typed(doc, "ports", dict, Map({"host": 1, "net": 2}))
    ctx.only(ports, {"host", "net"})
    ports = {"host": _ranged(ctx, ports, "host", 0, MAX_PORT, 1, "port "),
             "net": _ranged(ctx, ports, "net", 0, MAX_PORT, 2, "port ")}
    if ports["host"] == ports["net"]:
        raise ctx.err(doc.get("ports"), "host and net ports must differ")

    hosts = {}
    hmap = ctx.req(doc, "hosts", dict)
    for hname, h in hmap.items():
        if not isinstance(h, dict):
            raise ctx.err(hmap, f"host {hname!r} must be a mapping")
        ctx.only(h, {"ip", "mac", "side"})
        try:
            ip = ipaddress.ip_address(ctx.req(h, "ip", str))
        except ValueError:
            raise ctx.err(h, f"host {hname!r}: {h['ip']!r} is not an IP address") from None
        mac = ctx.typed(h, "mac", str, f"02:00:00:00:00:{len(hosts) + 1:02x}")
        digits = mac.replace(":", "").replace("-", "")
        if len(digits) != 12 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ctx.err(h, f"host {hname!r}: bad MAC {mac!r}")
        side = ctx.req(h, "side", str)
        if side not in ("host", "net"):
            raise ctx.err(h, f"host {hname!r}: side must be host or net")
        hosts[hname] = Host(str(hname), ip, mac, side)

    conns = {}
    cmap = ctx.typed(doc, "connections", dict, Map())
    for i, (cname, c) in enumerate(cmap.items()):
        if not isinstance(c, dict):
            raise ctx.err(cmap, f"connection {cname!r} must be a mapping")
        ctx.only(c, {"host", "peer", "opener", "host_qpn", "peer_qpn", "host_comm_id", "peer_comm_id",
                     "host_psn", "peer_psn", "service_id", "vlan"})
        hh = hosts.get(ctx.req(c, "host", str))
        pp = hosts.get(ctx.req(c, "peer", str))
        if hh is None or hh.side != "host":
            raise ctx.err(c, f"connection {cname!r}: 'host' must name a host with side: host")
        if pp is None or pp.side != "net":
            raise ctx.err(c, f"connection {cname!r}: 'peer' must name a host with side: net")
        if hh.ip.version != pp.ip.version:
            raise ctx.err(c, f"connection {cname!r}: host and peer IP versions differ")
        opener = ctx.typed(c, "opener", str, "host")
        if opener not in ("host", "peer"):
            raise ctx.err(c, f"connection {cname!r}: opener must be host or peer")
        vals = {}
        for k, width in (("host_qpn", 24), ("peer_qpn", 24), ("host_comm_id", 32), ("peer_comm_id", 32),
                         ("host_psn", 24), ("peer_psn", 24)):
            default = {"host_psn": 0, "peer_psn": 0}.get(k)
            v = ctx.typed(c, k, int, default) if default is not None else ctx.req(c, k, int)
            if not 0 <= v < (1 << width):
                raise ctx.err(c, f"connection {cname!r}: {k} {v:#x} does not fit in {width} bits")
            vals[k] = v
        service_id = _ranged(ctx, c, "service_id", 0, (1 << 64) - 1, RDMA_IP_PS_TCP | 4791, f"connection {cname!r}: ")
        vlan = ctx.typed(c, "vlan", int, None)
        if vlan is not None and not 0 <= vlan < 4096:
            raise ctx.err(c, f"connection {cname!r}: vlan {vlan} out of range")
        conns[cname] = Conn(
            str(cname), hh, pp, opener,
            {"host": vals["host_qpn"], "peer": vals["peer_qpn"]},
            {"host": vals["host_comm_id"], "peer": vals["peer_comm_id"]},
            {"host": vals["host_psn"], "peer": vals["peer_psn"]},
            service_id, vlan, i,
        )
        conns[cname].data_psn = dict(conns[cname].psn)

    timeline = ctx.req(doc, "timeline", list)
    t_prev = 0
    for ev in timeline:
        if not isinstance(ev, dict):
            raise ctx.err(timeline, f"timeline entries are mappings, got {ev!r}")
        t = ctx.req(ev, "t", int)
        if not 0 <= t <= MAX_TIME_US:
            raise ctx.err(ev, f"time {t} is out of range (0..{MAX_TIME_US} µs)")
        if t < t_prev:
            raise ctx.err(ev, f"time {t} goes backwards (previous event at {t_prev})")
        t_prev = t
        ctx.typed(ev, "note", str)
        actions = [k for k in ("cm", "data", "raw", "non_roce", "malformed", "checkpoint") if k in ev]
        if len(actions) != 1:
            raise ctx.err(ev, "each event has exactly one of cm, data, raw, non_roce, malformed, checkpoint")
        _validate_event(ctx, ev, actions[0], conns)
    return Scenario(name, doc.get("description", ""), path, plain(options), ports, hosts, conns, timeline)


def check_options(ctx, options):
    """A scenario's ``options`` (mode, geometry, timewait_us, cnp_interval_us:
    what it changes in the control-plane config), checked; returned as is."""
    ctx.only(options, {"mode", "geometry", "timewait_us", "cnp_interval_us"})
    if options.get("mode", "ideal") not in ("ideal", "p4"):
        raise ctx.err(options, f"mode must be ideal or p4, not {options.get('mode')!r}")
    for k in ("timewait_us", "cnp_interval_us"):
        _ranged(ctx, options, k, 0, MAX_TIME_US)
    if "geometry" not in options:
        return options
    g = ctx.typed(options, "geometry", dict)
    ctx.only(g, {f.name for f in dc_fields(Geometry)})
    for k in g:
        ctx.typed(g, k, int)
    try:
        Geometry(**g)
    except ValueError as e:
        raise ctx.err(g, f"geometry: {e}") from None
    return options


_EVENT_FIELDS = {
    "cm": {"from", "conn", "mraed", "rejected", "reason", "bad_icrc", "drop", "note", "service_timeout"},
    "data": {"from", "count", "gap_us", "ce", "opcode", "payload_len", "note", "dqpn"},
    "raw": {"port", "note"},
    "non_roce": {"port", "note"},
    "malformed": {"conn", "from", "note"},
    "checkpoint": {"note"},
}
_MALFORMED_KINDS = ("truncated-cm", "bad-mad-version", "bad-ip-version", "udp-length", "short-ethernet")
_NON_ROCE_KINDS = ("arp", "ipv4-udp", "ipv4-tcp", "ipv6-icmp")


def _validate_event(ctx, ev, action, conns):
    ctx.only(ev, {"t", action} | _EVENT_FIELDS[action])
    if action == "cm":
        msg = ctx.typed(ev, "cm", str)
        if msg not in ("REQ", "MRA", "REJ", "REP", "RTU", "DREQ", "DREP"):
            raise ctx.err(ev, f"unknown CM message {msg!r}")
        if ctx.req(ev, "conn", str) not in conns:
            raise ctx.err(ev, f"unknown connection {ev['conn']!r}")
        if "from" in ev and ev["from"] not in ("host", "peer"):
            raise ctx.err(ev, "'from' must be host or peer")
        if msg in ("MRA", "REJ", "DREQ", "DREP") and "from" not in ev:
            raise ctx.err(ev, f"{msg} needs 'from: host' or 'from: peer'")
        if msg == "MRA" and ev.get("mraed", "REQ") not in ("REQ", "REP", "LAP"):
            raise ctx.err(ev, "mraed must be REQ, REP or LAP")
        if msg == "REJ" and ev.get("rejected", "REQ") not in ("REQ", "REP", "OTHER"):
            raise ctx.err(ev, "rejected must be REQ, REP or OTHER")
        for k, other in (("mraed", "MRA"), ("rejected", "REJ"), ("reason", "REJ"), ("service_timeout", "MRA")):
            if k in ev and msg != other:
                raise ctx.err(ev, f"{k!r} is for {other} messages only")
        _ranged(ctx, ev, "reason", 0, 0xFFFF)
        _ranged(ctx, ev, "service_timeout", 0, 31)
        for k in ("bad_icrc", "drop"):
            ctx.typed(ev, k, bool)
    elif action == "data":
        if ctx.typed(ev, "data", str) not in conns:
            raise ctx.err(ev, f"unknown connection {ev['data']!r}")
        if ev.get("from", "host") not in ("host", "peer"):
            raise ctx.err(ev, "'from' must be host or peer")
        count = _ranged(ctx, ev, "count", 1, 1 << 48, 1)
        gap = _ranged(ctx, ev, "gap_us", 0, MAX_TIME_US, 1)
        _ranged(ctx, ev, "payload_len", 0, MAX_PAYLOAD)
        _ranged(ctx, ev, "opcode", 0, 0xFF)
        _ranged(ctx, ev, "dqpn", 0, 0xFFFFFF)
        ctx.typed(ev, "ce", bool)
        last = ev["t"] + (count - 1) * gap
        if last > MAX_TIME_US:
            raise ctx.err(ev, f"the last packet's time {last} is out of range (0..{MAX_TIME_US} µs): "
                              "fewer packets or a smaller gap_us")
        return last
    elif action == "raw":
        try:
            raw = bytes.fromhex(ctx.typed(ev, "raw", str))
        except ValueError:
            raise ctx.err(ev, "raw must be hex bytes") from None
        if len(raw) > 0xFFFF:
            raise ctx.err(ev, f"raw frame of {len(raw)} bytes is too long (at most 65535)")
        if ev.get("port", "host") not in ("host", "net"):
            raise ctx.err(ev, "port must be host or net")
    elif action == "non_roce":
        if ev["non_roce"] not in _NON_ROCE_KINDS:
            raise ctx.err(ev, f"non_roce must be one of {', '.join(_NON_ROCE_KINDS)}")
        if ev.get("port", "host") not in ("host", "net"):
            raise ctx.err(ev, "port must be host or net")
    elif action == "malformed":
        if ev["malformed"] not in _MALFORMED_KINDS:
            raise ctx.err(ev, f"malformed must be one of {', '.join(_MALFORMED_KINDS)}")
        if ctx.req(ev, "conn", str) not in conns:
            raise ctx.err(ev, f"unknown connection {ev['conn']!r}")
    elif action == "checkpoint":
        ctx.typed(ev, "checkpoint", str)
    return None


# --- compiling to frames -------------------------------------------------------

def _endpoints(conn: Conn, side: str):
    """(src Host, dst Host) for a message sent by ``side`` ('host'/'peer')."""
    return (conn.host, conn.peer) if side == "host" else (conn.peer, conn.host)


def _other(side):
    return "peer" if side == "host" else "host"


def _gid(ip) -> bytes:
    return (b"\0" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def cm_frame(conn: Conn, msg: str, side: str, ev: dict | None = None, tid: int | None = None) -> bytes:
    """The CM MAD ``msg`` of connection ``conn`` sent by ``side``."""
    ev = ev or {}
    src, dst = _endpoints(conn, side)
    other = _other(side)
    me, you = conn.comm_id[side], conn.comm_id[other]
    if msg == "REQ":
        fields = {
            "local_comm_id": me, "service_id": conn.service_id, "local_qpn": conn.qpn[side],
            "starting_psn": conn.psn[side], "pkey": 0xFFFF, "path_mtu": 5, "retry_count": 7,
            "rnr_retry_count": 7, "max_cm_retries": 15, "local_cm_response_timeout": 20,
            "remote_cm_response_timeout": 20, "responder_resources": 16, "initiator_depth": 16,
            "primary_local_gid": _gid(src.ip), "primary_remote_gid": _gid(dst.ip),
            "primary_local_lid": 0xFFFF, "primary_remote_lid": 0xFFFF, "primary_hop_limit": 64,
            "primary_subnet_local": 1, "primary_local_ack_timeout": 14, "primary_packet_rate": 3,
            "private_data": ip_cm_private_data(src.ip, dst.ip, 0xC000 + conn.index % 0x3FFF),
        }
    elif msg == "REP":
        fields = {"local_comm_id": me, "remote_comm_id": you, "local_qpn": conn.qpn[side],
                  "starting_psn": conn.psn[side], "responder_resources": 16, "initiator_depth": 16,
                  "target_ack_delay": 15, "rnr_retry_count": 7, "failover_accepted": 0}
    elif msg == "MRA":
        fields = {"local_comm_id": me, "remote_comm_id": you,
                  "message_mraed": {"REQ": 0, "REP": 1, "LAP": 2}[ev.get("mraed", "REQ")],
                  "service_timeout": ev.get("service_timeout", 20)}
    elif msg == "REJ":
        rej = ev.get("rejected", "REQ")
        # Rejecting a REQ: the rejecter's own comm ID may not be known to the
        # other side yet; IBTA lets it be any value, the remote ID is the REQ's.
        fields = {"local_comm_id": me, "remote_comm_id": you,
                  "message_rejected": {"REQ": 0, "REP": 1, "OTHER": 2}[rej], "reason": ev.get("reason", 28)}
    elif msg == "DREQ":
        fields = {"local_comm_id": me, "remote_comm_id": you, "remote_qpn": conn.qpn[other]}
    else:  # RTU, DREP
        fields = {"local_comm_id": me, "remote_comm_id": you}
    if tid is None:
        tid = (conn.index + 1) << 32 | H.CM_ATTR_IDS[msg] << 16
    return build_cm(msg, src.ip, dst.ip, fields, tid=tid, src_mac=src.mac, dst_mac=dst.mac, vlan=conn.vlan,
                    sport=0xC000 | (conn.index & 0x3FFF), ecn=0,
                    **({"icrc_value": 0xBADC0DE5} if ev.get("bad_icrc") else {}))


def data_frame(conn: Conn, side: str, psn: int, ce: bool, opcode: int = OPCODE_RC_SEND_ONLY,
               payload_len: int = 64, dqpn: int | None = None) -> bytes:
    src, dst = _endpoints(conn, side)
    payload = bytes((psn + i) & 0xFF for i in range(payload_len))
    return build_roce(src.ip, dst.ip, {"opcode": opcode, "dqpn": conn.qpn[_other(side)] if dqpn is None else dqpn,
                                        "psn": psn & 0xFFFFFF, "ackreq": 1},
                      payload, src_mac=src.mac, dst_mac=dst.mac, vlan=conn.vlan, dscp=26,
                      ecn=3 if ce else 2, sport=0xC000 | (conn.index & 0x3FFF))


def non_roce_frame(kind: str, index: int) -> bytes:
    mac_a, mac_b = bytes.fromhex("020000000aaa"), bytes.fromhex("020000000bbb")
    if kind == "arp":
        body = bytes.fromhex("0001080006040001") + mac_a + bytes([10, 0, 0, 1]) + bytes(6) + bytes([10, 0, 0, 2])
        return b"\xff" * 6 + mac_a + b"\x08\x06" + body + bytes(18)
    if kind == "ipv4-udp":
        # A UDP datagram to port 4789 (VXLAN), which must not be taken for RoCE.
        udp = H.UDP.encode(sport=1000 + index % 60000, dport=4789, length=8 + 32)
        ip = bytearray(H.IPV4.encode(version=4, ihl=5, total_length=20 + 40, ttl=64, protocol=17,
                                     src="10.9.9.1", dst="10.9.9.2", flags=2))
        ip[_CSUM : _CSUM + _CSUM_LEN] = ipv4_checksum(ip).to_bytes(_CSUM_LEN, "big")
        return mac_b + mac_a + b"\x08\x00" + bytes(ip) + udp + bytes(32)
    if kind == "ipv4-tcp":
        ip = bytearray(H.IPV4.encode(version=4, ihl=5, total_length=40, ttl=64, protocol=6,
                                     src="10.9.9.1", dst="10.9.9.2", flags=2))
        ip[_CSUM : _CSUM + _CSUM_LEN] = ipv4_checksum(ip).to_bytes(_CSUM_LEN, "big")
        tcp = (4791).to_bytes(2, "big") + (4791).to_bytes(2, "big") + bytes(8) + b"\x50\x02\xff\xff" + bytes(4)
        return mac_b + mac_a + b"\x08\x00" + bytes(ip) + tcp + bytes(6)
    # ipv6-icmp: an ICMPv6 echo request (checksum not checked by anyone here)
    ip6 = H.IPV6.encode(version=6, payload_length=8, next_header=58, hop_limit=64, src="fd00::1", dst="fd00::2")
    return mac_b + mac_a + b"\x86\xdd" + ip6 + bytes([128, 0, 0, 0, 0, 1, 0, index & 0xFF])


def malformed_frame(kind: str, conn: Conn, side: str) -> bytes:
    good = bytearray(cm_frame(conn, "RTU", side))
    p = classify(good)
    if kind == "truncated-cm":
        return bytes(good[: p.end - _TRUNCATE_CM])
    if kind == "bad-mad-version":
        good[p.mad + H.MAD["base_version"].byte] = MAD_BASE_VERSION + 1
        return bytes(good)  # the ICRC is now wrong too, but the version check comes first
    if kind == "bad-ip-version":
        good[p.l3] = (5 << 4) | (good[p.l3] & 0x0F)
        return bytes(good)
    if kind == "udp-length":
        u = p.l4 + H.UDP["length"].byte
        good[u : u + _UDP_LENGTH_LEN] = bytes(b"\xff" * _UDP_LENGTH_LEN)
        return bytes(good)
    return bytes(good[: H.ETHERNET.length - _SHORT_ETHERNET])  # short-ethernet


_CSUM, _CSUM_LEN = H.IPV4["checksum"].byte, H.IPV4["checksum"].nbytes
_UDP_LENGTH_LEN = H.UDP["length"].nbytes
_TRUNCATE_CM = 96          # truncated-cm: the MAD cut short (the ICRC and 96 more bytes gone)
_SHORT_ETHERNET = 4        # short-ethernet: 10 bytes, less than an Ethernet header


@dataclass
class Checkpoint:
    """A mark in a stimulus stream: take a tracker snapshot here."""

    name: str


def compile_scenario(sc: Scenario) -> tuple[list[Stimulus], dict[int, str]]:
    """Stimulus frames and checkpoints {index of last stimulus before it: name}."""
    out: list[Stimulus] = []
    checkpoints: dict[int, str] = {}
    for item in stream_scenario(sc):
        if type(item) is Checkpoint:
            checkpoints[len(out)] = item.name
        else:
            out.extend(item)
    return out, checkpoints


def scenario_packets(sc: Scenario) -> int:
    """How many stimulus packets the scenario makes."""
    n = 0
    for ev in sc.timeline:
        if "cm" in ev:
            n += not ev.get("drop")
        elif "data" in ev:
            n += ev.get("count", 1)
        elif "checkpoint" not in ev:
            n += 1
    return n


def stream_scenario(sc: Scenario, chunk: int = 50_000):
    """The scenario's stimulus as a stream: lists of :class:`Stimulus` (at
    most ``chunk`` long: a ``data`` event with a huge count is made as it is
    consumed) and :class:`Checkpoint` marks. Leaves ``sc``'s connections'
    PSNs where the stimulus ends (as compiling does)."""
    out: list[Stimulus] = []
    done = 0  # stimulus packets yielded before ``out``
    port_of = {"host": sc.ports["host"], "peer": sc.ports["net"], "net": sc.ports["net"]}
    for ev in sc.timeline:
        t = ev["t"]
        note = ev.get("note", "")
        if "cm" in ev:
            conn = sc.conns[ev["conn"]]
            msg = ev["cm"]
            side = ev.get("from") or _default_sender(conn, msg)
            if ev.get("drop"):
                continue
            out.append(Stimulus(t, port_of[side], cm_frame(conn, msg, side, ev), note))
        elif "data" in ev:
            conn = sc.conns[ev["data"]]
            side = ev.get("from", "host")
            gap = ev.get("gap_us", 1)
            ce, opcode = bool(ev.get("ce")), ev.get("opcode", OPCODE_RC_SEND_ONLY)
            payload_len, dqpn, port = ev.get("payload_len", 64), ev.get("dqpn"), port_of[side]
            for k in range(ev.get("count", 1)):
                psn = conn.data_psn[side]
                conn.data_psn[side] = (psn + 1) & 0xFFFFFF
                out.append(Stimulus(t + k * gap, port, data_frame(conn, side, psn, ce, opcode, payload_len, dqpn),
                                    note))
                if len(out) >= chunk:
                    done += len(out)
                    yield out
                    out = []
        elif "raw" in ev:
            out.append(Stimulus(t, port_of[ev.get("port", "host")], bytes.fromhex(ev["raw"]), note))
        elif "non_roce" in ev:
            out.append(Stimulus(t, port_of[ev.get("port", "host")],
                                non_roce_frame(ev["non_roce"], done + len(out)), note))
        elif "malformed" in ev:
            conn = sc.conns[ev["conn"]]
            side = ev.get("from", "peer")
            out.append(Stimulus(t, port_of[side], malformed_frame(ev["malformed"], conn, side), note))
        elif "checkpoint" in ev:
            if out:
                done += len(out)
                yield out
                out = []
            yield Checkpoint(ev["checkpoint"])
        if len(out) >= chunk:
            done += len(out)
            yield out
            out = []
    if out:
        yield out


def _default_sender(conn: Conn, msg: str) -> str:
    if msg in ("REQ", "RTU"):
        return conn.opener
    return _other(conn.opener)  # REP
