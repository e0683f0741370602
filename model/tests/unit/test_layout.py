"""The package is laid out by layer (docs/architecture.md): a module imports only
its own sub-package and the layers below it, and no import circle exists,
counting imports inside functions and under ``TYPE_CHECKING`` too."""

from __future__ import annotations

import ast
import pathlib

import ctcm

PKG = pathlib.Path(ctcm.__file__).parent

#: layer of each top-level part of the package; an import must go to the same
#: part or to a lower layer
LAYERS = {
    "errors": 0, "spec": 0,
    "io": 1,
    "dataplane": 2,
    "gen": 3, "stimulus": 3,
    "oracle": 4, "vectors": 4, "coverage": 5, "targets": 5, "cocotb": 6,
    "cli": 7, "__init__": 7,
}


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: pathlib.Path) -> set[str]:
    """Every ctcm module ``path`` imports, wherever the import statement is."""
    return _imports_of(path, module_name(path))


def _imports_of(path: pathlib.Path, me: str) -> set[str]:
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ctcm"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "ctcm":
                continue
            found.add(mod)
            for a in node.names:  # `from ctcm.spec import headers` imports a module
                if (PKG.parent / (mod + "." + a.name).replace(".", "/")).with_suffix(".py").exists():
                    found.add(mod + "." + a.name)
    found.discard(me)
    found.discard("ctcm")  # every ctcm import runs the package __init__: not an edge
    return found


def graph() -> dict[str, set[str]]:
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in imports(p) if i in mods} for m, p in mods.items()}


def part(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
    assert {part(m) for m in graph()} <= set(LAYERS), "a new sub-package needs its layer in LAYERS and docs/architecture.md"


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    return [f"{m} imports {i}" for m, deps in sorted(g.items()) for i in sorted(deps)
            if part(i) != part(m) and LAYERS[part(i)] >= LAYERS[part(m)] and part(m) != "__init__"]


def test_imports_go_down_the_layers():
    wrong = layer_violations(graph())
    assert not wrong, wrong


def find_circle(g: dict[str, set[str]]) -> list[str] | None:
    """The first import circle in ``g`` (a package importing its own modules is none)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if d.startswith(m + "."):
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_circle():
    circle = find_circle(graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_checker_sees_a_circle(tmp_path):
    """The checks are not vacuous: the old circle (vectors -> render -> vectors, the
    second import under TYPE_CHECKING) is found, and so is a layer inversion."""
    b = tmp_path / "render.py"
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ctcm.vectors.run import Vector\n")
    g = {"ctcm.vectors.run": {"ctcm.vectors.render"}, "ctcm.vectors.render": set()}
    g["ctcm.vectors.render"] = _imports_of(b, "ctcm.vectors.render")
    circle = find_circle(g)
    assert circle[0] == circle[-1] and set(circle) == {"ctcm.vectors.run", "ctcm.vectors.render"}
    assert layer_violations({"ctcm.spec": {"ctcm.dataplane.packet"}, "ctcm.dataplane.packet": set()}) == [
        "ctcm.spec imports ctcm.dataplane.packet"]
