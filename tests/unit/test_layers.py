"""The package's layers, read from its import statements (nothing is imported).

Lowest first: the shared leaves (the package root, ``errors``, ``files``,
``handler_config``, ``threads``), ``scsi`` (wire formats), ``sg`` (SG_IO), ``devices``, ``copy``,
``tcmu`` (the transport and the daemon), ``control`` (provisioning, the saved
configuration, the shell); ``initiator`` (the backup server's tools) stands on ``sg``
beside the target's layers; ``lio_xcopy.cli``, the ``lio-xcopy`` command, is above all.
A module may import its own layer and the layers below it, never one above or beside.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lio_xcopy

PACKAGE = Path(lio_xcopy.__file__).parent

#: layer -> the layers it may import (besides itself)
BELOW: dict[str, frozenset[str]] = {}
for _layer, _under in (("base", ()),
                       ("scsi", ("base",)),
                       ("sg", ("scsi",)),
                       ("devices", ("sg",)),
                       ("copy", ("devices",)),
                       ("tcmu", ("copy",)),
                       ("control", ("tcmu",)),
                       ("initiator", ("sg",)),
                       ("cli", ("control", "initiator"))):
    BELOW[_layer] = frozenset(_under).union(*(BELOW[u] for u in _under))

#: the modules directly under lio_xcopy/ and the layer each is in
LEAVES = {"lio_xcopy": "base", "lio_xcopy.__main__": "cli", "lio_xcopy.cli": "cli",
          "lio_xcopy.errors": "base", "lio_xcopy.files": "base",
          "lio_xcopy.handler_config": "base", "lio_xcopy.threads": "base"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, source_text: str, modules: dict[str, Path], *,
             is_package: bool = False) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in its text (a
    function's lazy import too)."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source_text)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module pkg.mod
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` of a name inside a module
                t = t.rpartition(".")[0]
            if t.startswith("lio_xcopy"):
                out.add(t)
    return out


def layer_of(module: str) -> str:
    if module in LEAVES:
        return LEAVES[module]
    return module.split(".")[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p.read_text(encoding="utf-8"), modules,
                        is_package=p.name == "__init__.py") - {m}
            for m, p in modules.items()}


def test_every_module_has_a_layer():
    unknown = sorted(m for m in _modules() if layer_of(m) not in BELOW)
    assert unknown == [], f"add these to LEAVES or BELOW: {unknown}"


def test_no_module_imports_from_a_higher_or_sideways_layer():
    wrong = sorted(f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
                   for m, targets in _graph().items() for t in targets
                   if layer_of(t) != layer_of(m) and layer_of(t) not in BELOW[layer_of(m)])
    assert wrong == []


def test_no_import_cycle_between_modules():
    """A package counts as its ``__init__``: importing it runs that module."""
    graph = _graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        if m in stack:
            cycles.append([*stack[stack.index(m):], m])
            return
        if m in done:
            return
        for t in sorted(graph[m]):
            visit(t, [*stack, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])
    assert cycles == []


def test_the_graph_sees_lazy_relative_and_from_imports():
    """The reader finds the imports the layer rules are about, or the tests above could
    not fail: a lazy import inside a function, ``from pkg import module``, a relative
    import, and ``import pkg.module.name``; other packages are left out."""
    modules = {"lio_xcopy.a": Path("a"), "lio_xcopy.a.b": Path("a/b.py"),
               "lio_xcopy.c": Path("c.py"), "lio_xcopy.d": Path("d.py")}
    text = ("def f():\n    from lio_xcopy.a import b\n"
            "from . import c\nimport os\nimport lio_xcopy.d.name\n")
    assert _imports("lio_xcopy.x", text, modules) == {"lio_xcopy.a.b", "lio_xcopy.c",
                                                      "lio_xcopy.d"}
    assert _imports("lio_xcopy.x.y", "from .. import c\n", modules) == {"lio_xcopy.c"}


def test_the_saved_configuration_does_not_import_the_transport_or_the_devices():
    """Reading or writing the JSON file (and a storage object's config string) needs
    neither the TCMU transport nor the SCSI devices: only the copy group members' syntax
    is shared with the daemon."""
    graph = _graph()
    seen: set[str] = set()
    todo = ["lio_xcopy.control.config", "lio_xcopy.handler_config"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert sorted(m for m in seen if layer_of(m) in ("devices", "copy", "tcmu")) == [
        "lio_xcopy.devices.members"]
