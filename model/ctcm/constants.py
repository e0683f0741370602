"""Constants shared by the model and the P4 program (one source).

Table geometry, hash key layout and the CNP template fields live here only.
The P4 program (not written yet) is to take its constants from this module
(generated, with a test that the committed file is current), so the two
cannot drift.
"""

# CNP template (the C library's ctcm_fill_cnp_template).
CNP_TOS = 0xC2          # DSCP 48 (CS6) + ECT(0)
CNP_TTL = 255
CNP_UDP_SPORT = 0xF000
CNP_PKEY = 0xFFFF

# C library constants (libconntrack-cm.h).
CTCM_UDP_LENGTH = 8
CTCM_BTH_LENGTH = 12
CTCM_ICRC_LENGTH = 4
CTCM_CNP_LENGTH = 16
CTCM_CNP_TOTAL_LENGTH = 32

# Tracker, p4 table mode: BUCKETS x WAYS slots per table (see docs/tracker.md).
# Bucket = CRC-32 (zlib.crc32 = v1model HashAlgorithm.crc32) of the key bytes,
# low bits. Keys: ACTIVE = host comm ID (4 bytes); PASSIVE = remote IP as 16
# bytes (IPv4-mapped ::ffff:a.b.c.d) + remote comm ID (4); FLOW = remote IP
# (16) + remote QPN (3).
ACTIVE_BUCKETS = 4096
ACTIVE_WAYS = 2
PASSIVE_BUCKETS = 4096
PASSIVE_WAYS = 2
FLOW_BUCKETS = 8192
FLOW_WAYS = 2

# TIMEWAIT duration on model time (µs).
TIMEWAIT_US = 1_000_000
