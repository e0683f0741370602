"""The P4 program's generated includes (p4/include/generated/) are current and compile.

(a) the committed files equal a fresh generation from spec.py and the field
tables (like test_docs.py); (b) a tiny v1model program including them
compiles with p4c (skipped without p4c, unless CTCM_REQUIRE_BMV2=1)."""

import os
import re
import shutil
import subprocess

import pytest

from ctcm.spec import headers as H
from ctcm import spec
from ctcm.gen import p4gen
from ctcm.spec import Counter, Geometry

GEN = p4gen.OUT_DEFAULT


def _need_p4c():
    p4c = shutil.which("p4c")
    if p4c is None:
        if os.environ.get("CTCM_REQUIRE_BMV2") == "1":
            pytest.fail("p4c not on PATH and CTCM_REQUIRE_BMV2=1")
        pytest.skip("p4c not on PATH (install p4c and bmv2; see p4/README.md)")
    return p4c


def test_generated_p4_includes_are_current():
    stale = p4gen.check(GEN)
    assert not stale, f"stale generated P4 includes: {', '.join(stale)}; run `make p4-sources`"


def test_p4_readme_counter_table_is_current():
    with open(p4gen.README, encoding="utf-8") as f:
        text = f.read()
    assert p4gen.readme_with_counters(text) == text, "run `make p4-sources`"


def test_check_names_stale_files(tmp_path):
    p4gen.generate(str(tmp_path))
    assert p4gen.check(str(tmp_path)) == []
    (tmp_path / "transitions.p4").write_text("// edited\n")
    os.remove(tmp_path / "headers.p4")
    assert p4gen.check(str(tmp_path)) == ["headers.p4", "transitions.p4"]
    assert p4gen.main(["--out", str(tmp_path), "--check"]) == 1
    assert p4gen.generate(str(tmp_path)) == ["headers.p4", "transitions.p4"]
    assert p4gen.main(["--out", str(tmp_path), "--check"]) == 0


def test_generation_is_deterministic():
    assert [f() for f in p4gen.FILES.values()] == [f() for f in p4gen.FILES.values()]


def test_counter_numbering_matches_spec():
    text = p4gen.constants_p4()
    got = dict(re.findall(r"#define CTR_(\w+) (\d+)", text))
    assert int(got.pop("COUNT")) == len(Counter)
    assert {k: int(v) for k, v in got.items()} == {c.name: int(c) for c in Counter}


def test_transition_entries_match_spec():
    text = p4gen.transitions_p4()
    entries = re.findall(r"\(DIR_(\w+), MSG_(\w+), STATE_(\w+)\) : set_next\((STATE|OUTCOME)_(\w+)\)", text)
    got = {}
    for d, m, s, kind, to in entries:
        key = (spec.Direction[d], spec.Msg[m], spec.State[s])
        assert key not in got
        got[key] = spec.State[to] if kind == "STATE" else spec.Outcome[to]
    for d in spec.Direction:
        for m in spec.Msg:
            for s in spec.State:
                assert got.get((d, m, s), spec.Outcome.UNEXPECTED) == spec.next_of(d, m, s)


def test_header_types_follow_the_field_tables():
    text = p4gen.headers_p4()
    for name, h in p4gen.P4_HEADERS:
        block = re.search(r"header %s \{(.*?)\}" % name, text, re.S).group(1)
        fields = re.findall(r"bit<(\d+)> (\w+);", block)
        assert sum(int(w) for w, _ in fields) == h.length * 8
        named = [(f, int(w)) for w, f in fields if not f.startswith("_rsvd")]
        assert named == [(f.name, f.width) for f in sorted(h.fields, key=lambda f: f.first_bit)]


def test_comm_ids_sit_where_the_macros_read_them():
    for h in (H.CM_MRA, H.CM_REJ, H.CM_REP, H.CM_RTU, H.CM_DREQ, H.CM_DREP):
        assert (h["local_comm_id"].first_bit, h["remote_comm_id"].first_bit) == (0, 32)
    assert H.CM_REQ["local_comm_id"].first_bit == 0


def test_geometry_defines():
    g = Geometry(4, 1, 4, 1, 4, 1)
    assert p4gen.geometry_defines(g) == ["-DACTIVE_BUCKETS=4", "-DACTIVE_WAYS=1", "-DPASSIVE_BUCKETS=4",
                                         "-DPASSIVE_WAYS=1", "-DFLOW_BUCKETS=4", "-DFLOW_WAYS=1"]
    assert p4gen.geometry_of_tag(g.tag) == g and p4gen.geometry_of_tag("default") == Geometry()
    assert Geometry() in p4gen.geometries_in_use()


TINY = r"""
#include <core.p4>
#include <v1model.p4>
#include "constants.p4"
#include "headers.p4"
#include "transitions.p4"
struct h_t { ethernet_h e; dot1q_h v; ipv4_h i4; ipv6_h i6; udp_h u; bth_h b; deth_h d; mad_h m; cm_body_h c;
             cnp_pad_h p; }
struct m_t { bit<8> dir; bit<8> msg; bit<8> state; bit<8> next; bit<32> slots; }
parser P(packet_in pk, out h_t h, inout m_t m, inout standard_metadata_t s) {
    state start { pk.extract(h.e); pk.extract(h.i4); pk.extract(h.u); pk.extract(h.b); pk.extract(h.d);
                  pk.extract(h.m); pk.extract(h.c); transition accept; }
}
control VC(inout h_t h, inout m_t m) { apply { } }
control I(inout h_t h, inout m_t m, inout standard_metadata_t s) {
    CtcmNext() nx;
    register<bit<8>>(SLOTS) state;
    apply {
        m.dir = (bit<8>)DIR_FROM_NET; m.msg = (bit<8>)h.m.attr_id[7:0]; m.state = h.b.opcode;
        nx.apply(m.dir, m.msg, m.state, m.next);
        state.write((bit<32>)CM_REQ_LOCAL_QPN(h.c) & (SLOTS - 1), m.next);
        h.e.dst[31:0] = CM_LOCAL_COMM_ID(h.c) ^ CM_REMOTE_COMM_ID(h.c);
        h.e.src[1:0] = CM_MRA_MESSAGE_MRAED(h.c);
        if (m.next == OUTCOME_UNEXPECTED) { mark_to_drop(s); }
    }
}
control E(inout h_t h, inout m_t m, inout standard_metadata_t s) { apply { } }
control CC(inout h_t h, inout m_t m) { apply { } }
control D(packet_out pk, in h_t h) { apply { pk.emit(h); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
"""


@pytest.mark.parametrize("defines", [[], ["-DACTIVE_BUCKETS=4", "-DACTIVE_WAYS=1"]])
def test_generated_includes_compile_with_p4c(tmp_path, defines):
    p4c = _need_p4c()
    prog = tmp_path / "tiny.p4"
    prog.write_text(TINY)
    r = subprocess.run([p4c, "--target", "bmv2", "--arch", "v1model", "-I", GEN, *defines, "-o", str(tmp_path),
                        str(prog)], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "warning" not in out.lower(), out
    assert (tmp_path / "tiny.json").stat().st_size > 1000


def test_icrc_field_lists_come_from_the_mask_table():
    """The P4 program's ICRC inputs are the generated ICRC_*_FIELDS lists (from
    headers.ICRC_VARIANT_FIELDS): no hand-written constant of ones in icrc.p4 or
    cnp.p4, and each generated list puts ones exactly where the mask table says."""
    p4 = os.path.join(p4gen.ROOT, "p4", "include")
    for name in ("icrc.p4", "cnp.p4"):
        text = open(os.path.join(p4, name)).read()
        assert not re.search(r"\d+w0x[fF]+\b", text), f"{name}: a hand-written ICRC mask"
    lines = {ln.split("(h)")[0].split()[-1]: ln for ln in p4gen.icrc_fields_p4() if ln.startswith("#define ICRC_")
             and "_FIELDS" in ln}
    for h in (H.IPV4, H.IPV6, H.UDP, H.BTH):
        items = lines[f"ICRC_{h.name.upper()}_FIELDS"].split(") ", 1)[1].split(", ")
        ones = {name for (name, _w), item in zip(p4gen.header_fields(h), items) if "w0x" in item}
        assert ones == set(H.ICRC_VARIANT_FIELDS[h.name]), h.name
