"""What a target is programmed with (ctcm.targets.program) against p4/README.md's
control-plane contract, written out by hand here:

    table_add CtcmIngress.port_map CtcmIngress.set_peer h => n 1 h+1
    table_add CtcmIngress.port_map CtcmIngress.set_peer n => h 0 0
    mirroring_add h+1 h
    table_set_default CtcmIngress.options CtcmIngress.set_options TIMEWAIT_US CNP_INTERVAL_US
"""

from __future__ import annotations

from ctcm.dataplane.config import Config
from ctcm.spec import Counter
from ctcm.targets.program import PortEntry, conn_row, counter_diffs, counter_keys, program, table_diffs


def test_program_of_two_port_pairs():
    prog = program(Config(port_pairs=((1, 2), (5, 6)), timewait_us=300, cnp_interval_us=7))
    assert set(prog.port_map) == {PortEntry(1, 2, 1, 2), PortEntry(2, 1, 0, 0),
                                  PortEntry(5, 6, 1, 6), PortEntry(6, 5, 0, 0)}
    assert PortEntry(1, 2, 1, 2).action_args == [2, 1, 2]
    assert set(prog.mirror_sessions) == {(2, 1), (6, 5)}
    assert prog.options == (300, 7)


def test_counter_keys_are_the_p4_indices():
    keys = counter_keys()
    assert keys[0] == "packets" and keys[int(Counter.CNP_SENT)] == "cnp_sent"
    assert len(keys) == len(Counter)


ROW = {"opened_by": "host", "state": "ESTABLISHED", "local_comm_id": "0x00000001", "remote_ip": "10.0.0.2",
       "remote_comm_id": "0x00000002", "local_qpn": "0x000101", "remote_qpn": "0x000201", "since_us": 20,
       "flow": True}


def test_counter_diffs():
    assert counter_diffs({"packets": 3}, {"packets": 5}, {"packets": 2}) == []
    assert counter_diffs({"packets": 3}, {"packets": 4}, None, "bmv2") == ["  packets: expected 3, bmv2 4"]
    assert counter_diffs({"packets": 3}, {"packets": 3, "other": 1}) == \
        ["  other: not in the model's counters, target counted 1"]


def test_table_diffs_ignore_since_and_name_what_differs():
    assert table_diffs([ROW], [dict(ROW, since_us=99)]) == []
    lines = table_diffs([ROW], [dict(ROW, state="TIMEWAIT")])
    assert lines == ["  missing: host ESTABLISHED 0x00000001 10.0.0.2 0x00000002 0x000101 0x000201 True",
                     "  extra:   host TIMEWAIT 0x00000001 10.0.0.2 0x00000002 0x000101 0x000201 True"]
    assert table_diffs([ROW, ROW], [ROW]) == [
        "  missing: host ESTABLISHED 0x00000001 10.0.0.2 0x00000002 0x000101 0x000201 True"]


def test_table_diffs_compare_ipv6_connections_with_their_address():
    """conn_ip's four words give every remote IP: an IPv6 row is compared like an IPv4 one."""
    import ipaddress

    from ctcm.spec import State

    v6 = conn_row(State.ESTABLISHED, 0x7, 1, 2, 0x101, 0x201, ipaddress.IPv6Address("fd00::2").packed)
    assert v6["remote_ip"] == "fd00::2"
    assert table_diffs([v6], [dict(v6)]) == []
    assert table_diffs([v6], [dict(v6, remote_ip="fd00::3")]) == [
        "  missing: host ESTABLISHED 0x00000001 fd00::2 0x00000002 0x000101 0x000201 True",
        "  extra:   host ESTABLISHED 0x00000001 fd00::3 0x00000002 0x000101 0x000201 True"]
