"""The Python package has no import circle: not at module level, not in a function, not
under TYPE_CHECKING (QueryBuilder above DICOMSCU above Association above codec above
errors/uids). Read from the source with ast, so a lazy import that closes a circle fails
here too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "fastdimse"


def _modules() -> dict[str, Path | None]:
    mods: dict[str, Path | None] = {"fastdimse._core": None}  # the extension: a leaf
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _edges(mods: dict[str, Path | None]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        if p is None:
            continue
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & mods.keys()
                if subs:
                    edges[m] |= subs - {m}
                elif target in mods and target != m:
                    edges[m].add(target)
            elif isinstance(node, ast.Import):
                edges[m] |= {a.name for a in node.names if a.name in mods and a.name != m}
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_circle():
    mods = _modules()
    assert "fastdimse.query" in mods and "fastdimse.scu" in mods
    cycle = _cycle(_edges(mods))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_check_finds_a_circle():
    # The detector itself: a two-module circle and a longer one are found, a chain is not.
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_layers_point_down():
    edges = _edges(_modules())
    below = {
        "fastdimse.errors": set(),
        "fastdimse.association": {"fastdimse.scu", "fastdimse.query", "fastdimse.scp"},
        "fastdimse.scu": {"fastdimse.query", "fastdimse.scp"},
        "fastdimse.codec": {"fastdimse.association", "fastdimse.scu", "fastdimse.query"},
    }
    assert edges["fastdimse.errors"] == set(), edges["fastdimse.errors"]
    for module, forbidden in below.items():
        assert not (edges[module] & forbidden), f"{module} imports {edges[module] & forbidden}"
