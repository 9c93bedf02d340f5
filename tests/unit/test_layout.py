"""The shared package stays below the services: nothing in datastream/ imports a service or
the launcher (the command line and `up`), at module level or inside a function."""

from __future__ import annotations

import ast

from datastream.paths import REPO_ROOT

ABOVE = {"ioc", "forwarder", "filewriter", "liveview", "launcher"}


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_shared_package_imports_no_service():
    offenders = {}
    for path in sorted((REPO_ROOT / "datastream").rglob("*.py")):
        bad = imported(ast.parse(path.read_text(), str(path))) & ABOVE
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert offenders == {}
