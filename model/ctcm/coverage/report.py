"""Coverage reports: one document (JSON) rendered as text and as a small HTML page.

:func:`report` gathers the model's functional coverage (with the
unreachable rows and their reasons), the P4 coverage when there is one and
the model/bmv2 agreement per vector; :func:`text` and :func:`html` render it.
"""

from __future__ import annotations

import html as _html

from ctcm.coverage.model import Coverage
from ctcm.coverage.p4 import P4Coverage

__all__ = ["report", "text", "html"]


def _pct(a: int, b: int) -> float:
    return round(100.0 * a / b, 1) if b else 100.0


def _model(cov: Coverage, each: dict[str, Coverage], unreachable: dict) -> dict:
    groups = {}
    for g, rows in cov.groups.items():
        hits = cov.hits[g]
        unr = [r for r in rows if (g, r) in unreachable]
        hit = sum(r in hits for r in rows)
        groups[g] = {
            "hit": hit, "total": len(rows), "unreachable": len(unr),
            "percent_of_reachable": _pct(sum(r in hits for r in rows if (g, r) not in unreachable),
                                         len(rows) - len(unr)),
            "rows": [{"row": r, "hits": sum(hits.get(r, {}).values()), "vectors": sorted(hits.get(r, {}))}
                     for r in rows],
            "missed": [{"row": r, "unreachable": unreachable.get((g, r))} for r in rows if r not in hits],
        }
    per_vector = {}
    for v, c in sorted(each.items()):
        mine = c.hit_rows()
        others = set().union(*(o.hit_rows() for w, o in each.items() if w != v))
        per_vector[v] = {"packets": c.packets, "rows_hit": len(mine),
                         "only_this_vector": [f"{g}: {r}" for g, r in sorted(mine - others)]}
    return {"vectors": sorted(cov.vectors), "packets": cov.packets, "groups": groups, "per_vector": per_vector}


def _p4(p4: P4Coverage) -> dict:
    files = {f: p4.per_file(f) for f in p4.files()}
    tot = {k: sum(v[k] for v in files.values()) for k in ("statements", "statements_hit", "branches", "branches_hit")}
    return {
        "builds": p4.builds, "packets": p4.packets, "files": files,
        "totals": {**tot, "statements_percent": _pct(tot["statements_hit"], tot["statements"]),
                   "branches_percent": _pct(tot["branches_hit"], tot["branches"])},
        "tables": {"hit": len(p4.tables_hit), "total": len(p4.tables), "not_hit": sorted(p4.tables - p4.tables_hit)},
        "actions": {"hit": len(p4.actions_hit), "total": len(p4.actions),
                    "not_hit": sorted(p4.actions - p4.actions_hit)},
        "parser_states": {"hit": len(p4.states_hit), "total": len(p4.states),
                          "not_hit": sorted(p4.states - p4.states_hit)},
        "condition_nodes": {b: {"hit": len(p4.nodes_hit[b]), "total": 2 * len(n), "not_hit": p4.nodes_not_hit(b)}
                            for b, n in p4.nodes.items()},
    }


def report(cov: Coverage, each: dict[str, Coverage], unreachable: dict, p4: P4Coverage | None = None,
           agreement: list | None = None, lost: list | None = None, p4_parts: dict | None = None) -> dict:
    """The whole report as plain data (what ``--json`` writes); ``p4_parts``:
    {name: P4Coverage} of parts of the runs (totals only)."""
    doc = {"format": "ctcm-coverage/1", "model": _model(cov, each, unreachable)}
    if lost is not None:
        doc["baseline_lost"] = [f"{g}: {r}" for g, r in lost]
    if p4 is not None:
        doc["p4"] = _p4(p4)
        doc["p4"]["parts"] = {k: {"packets": v.packets, **_p4(v)["totals"]} for k, v in (p4_parts or {}).items()}
    if agreement is not None:
        doc["agreement"] = agreement
    return doc


def text(doc: dict) -> str:
    m = doc["model"]
    out = [f"Functional coverage (model): {len(m['vectors'])} vectors, {m['packets']:,} packets",
           f"{'group':<20} {'hit':>5} {'rows':>5} {'unreachable':>12} {'% of reachable':>15}"]
    for g, s in m["groups"].items():
        out.append(f"{g:<20} {s['hit']:>5} {s['total']:>5} {s['unreachable']:>12} {s['percent_of_reachable']:>14}%")
    missed = [(g, x) for g, s in m["groups"].items() for x in s["missed"]]
    out.append(f"Rows never hit: {len(missed)}" + ("" if missed else " (none)"))
    for g, x in missed:
        why = f"  [unreachable: {x['unreachable']}]" if x["unreachable"] else "  [NOT EXPLAINED]"
        out.append(f"  {g}: {x['row']}{why}")
    out.append("Per vector (rows hit; rows no other vector hits):")
    for v, s in m["per_vector"].items():
        only = "; ".join(s["only_this_vector"][:4]) + (" ..." if len(s["only_this_vector"]) > 4 else "")
        out.append(f"  {v:<18} {s['packets']:>5} packets {s['rows_hit']:>4} rows  {len(s['only_this_vector']):>3} only here"
                   + (f": {only}" if only else ""))
    if "baseline_lost" in doc:
        out.append(f"Baseline: {len(doc['baseline_lost'])} row(s) lost" + "".join(f"\n  {r}" for r in doc["baseline_lost"]))
    if "p4" in doc:
        out += _p4_text(doc["p4"])
    for a in doc.get("agreement") or []:
        bad = a["transitions_not_on_bmv2"] + a["counters_not_on_bmv2"]
        out.append(f"Agreement {a['vector']}: {a['transitions_checked']} transitions, {a['counters_checked']} counters "
                   f"checked on bmv2 ({a['bmv2_packets']} packets): " + ("OK" if not bad else "MISSING " + "; ".join(bad)))
    return "\n".join(out) + "\n"


def _p4_text(p: dict) -> list[str]:
    t = p["totals"]
    out = [f"P4 coverage on bmv2: {p['packets']:,} packets, builds: {', '.join(p['builds'])}",
           f"{'file':<36} {'statements':>14} {'branches':>14}"]
    for f, s in p["files"].items():
        out.append(f"p4/{f:<33} {s['statements_hit']:>5}/{s['statements']:<4} {_pct(s['statements_hit'], s['statements']):>5}%"
                   f" {s['branches_hit']:>5}/{s['branches']:<4} {_pct(s['branches_hit'], s['branches']):>5}%")
    out.append(f"{'total':<36} {t['statements_hit']:>5}/{t['statements']:<4} {t['statements_percent']:>5}%"
               f" {t['branches_hit']:>5}/{t['branches']:<4} {t['branches_percent']:>5}%")
    for k, t in p.get("parts", {}).items():
        out.append(f"{'  ' + k + ' alone':<36} {t['statements_hit']:>5}/{t['statements']:<4} {t['statements_percent']:>5}%"
                   f" {t['branches_hit']:>5}/{t['branches']:<4} {t['branches_percent']:>5}%  ({t['packets']:,} packets)")
    out.append("condition nodes x (true, false) per build, each macro expansion apart: " + ", ".join(
        f"{b} {s['hit']}/{s['total']}" for b, s in p["condition_nodes"].items()))
    for k in ("tables", "actions", "parser_states"):
        s = p[k]
        out.append(f"{k.replace('_', ' ')}: {s['hit']}/{s['total']}" + (f"; not hit: {', '.join(s['not_hit'])}"
                                                                        if s["not_hit"] else ""))
    for f, s in p["files"].items():
        for b in s["branches_not_hit"]:
            out.append(f"  branch not hit: p4/{f}:{b['line']} {b['condition']!r} is {str(b['value']).lower()}")
        for st in s["statements_not_hit"]:
            out.append(f"  statement not hit: p4/{f}:{st['line']} {st['source']}")
    return out


def html(doc: dict) -> str:
    """A small self-contained page: the group table, rows never hit, P4 files."""
    e = _html.escape
    m = doc["model"]
    rows = "".join(f"<tr><td>{e(g)}</td><td>{s['hit']}/{s['total']}</td><td>{s['unreachable']}</td>"
                   f"<td><div class=bar><div style='width:{s['percent_of_reachable']}%'></div></div>"
                   f"{s['percent_of_reachable']}%</td></tr>" for g, s in m["groups"].items())
    missed = "".join(f"<li>{e(g)}: {e(x['row'])} <i>{e(x['unreachable'] or 'not explained')}</i></li>"
                     for g, s in m["groups"].items() for x in s["missed"])
    body = [f"<h1>ctcm coverage</h1><p>{len(m['vectors'])} vectors, {m['packets']:,} packets</p>",
            f"<table><tr><th>group</th><th>hit</th><th>unreachable</th><th>of reachable</th></tr>{rows}</table>",
            f"<h2>Rows never hit</h2><ul>{missed or '<li>none</li>'}</ul>"]
    if "p4" in doc:
        p = doc["p4"]
        frows = "".join(f"<tr><td>p4/{e(f)}</td><td>{s['statements_hit']}/{s['statements']}</td>"
                        f"<td>{s['branches_hit']}/{s['branches']}</td></tr>" for f, s in p["files"].items())
        nb = "".join(f"<li>p4/{e(f)}:{b['line']} <code>{e(b['condition'])}</code> is {str(b['value']).lower()}</li>"
                     for f, s in p["files"].items() for b in s["branches_not_hit"])
        body += [f"<h2>P4 on bmv2</h2><table><tr><th>file</th><th>statements</th><th>branches</th></tr>{frows}</table>",
                 f"<h3>Branches not hit</h3><ul>{nb or '<li>none</li>'}</ul>"]
    style = ("body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
             ".bar{display:inline-block;width:120px;height:10px;background:#eee;margin-right:6px}"
             ".bar div{height:10px;background:#4a4}")
    return f"<!doctype html><meta charset=utf-8><title>ctcm coverage</title><style>{style}</style>{''.join(body)}\n"
