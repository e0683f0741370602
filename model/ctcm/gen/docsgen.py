"""Documentation generated from the spec: the state diagram and the transition table.

``make docs`` (``ctcm docs``) writes docs/state-machine.dot/.svg and the table
in docs/tracker.md; tests fail when the committed files are stale.
"""

from __future__ import annotations

from ctcm.spec import GONE, SAME, TRANSITIONS, Direction

__all__ = ["transitions_dot", "transitions_markdown", "docs_with_table", "BEGIN", "END"]


def transitions_dot() -> str:
    """Graphviz state diagram of TRANSITIONS (docs/state-machine.dot)."""
    lines = [
        "// Generated from ctcm.spec.TRANSITIONS by `make docs`; do not edit.",
        "digraph ctcm_cm_states {",
        '  rankdir=TB; node [shape=box, style=rounded, fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
        '  GONE [shape=doublecircle, label="gone"];',
    ]
    edges: dict[tuple[str, str], list[str]] = {}
    for d, m, froms, to, _why in TRANSITIONS:
        if to is SAME:
            continue
        arrow = "send" if d == Direction.FROM_HOST else "recv"
        for s in sorted(froms):
            dst = "GONE" if to is GONE else to.name
            edges.setdefault((s.name, dst), []).append(f"{arrow} {m.label}")
    lines.append('  TIMEWAIT -> GONE [style=dashed, label="timewait_us elapsed"];')
    for (a, b), labels in sorted(edges.items()):
        lines.append(f'  {a} -> {b} [label="' + "\\n".join(labels) + '"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def transitions_markdown() -> str:
    """The transition table as Markdown (docs/tracker.md)."""
    out = ["| direction | message | from states | to | note |", "|---|---|---|---|---|"]
    for d, m, froms, to, why in TRANSITIONS:
        t = "absorbed (retransmission)" if to is SAME else ("removed" if to is GONE else to.name)
        out.append(f"| {'from host' if d == Direction.FROM_HOST else 'from network'} | {m.label} | "
                   f"{', '.join(s.name for s in sorted(froms))} | {t} | {why} |")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- BEGIN TRANSITIONS (generated) -->", "<!-- END TRANSITIONS -->"


def docs_with_table(text: str) -> str:
    """``text`` (docs/tracker.md) with its generated transition table replaced."""
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:a] + "\n" + transitions_markdown() + text[b:]
