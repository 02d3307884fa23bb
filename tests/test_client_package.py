"""The client package's import rule (DESIGN.md): of the server, only the wire
and the sans-io state mirror and view hash."""

from __future__ import annotations

import ast
from pathlib import Path

import rtgateway.client

ALLOWED = ("rtgateway.wire", "rtgateway.state.mirror", "rtgateway.state.viewhash")


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_allowed(name: str) -> bool:
    if not (name == "rtgateway" or name.startswith("rtgateway.")):
        return True
    return name.startswith("rtgateway.client") or any(
        name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED
    )


def test_client_imports_only_the_wire_and_the_state_mirror():
    """No module of rtgateway.client imports another part of the server."""
    package = Path(rtgateway.client.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 10
    offending = {
        str(path.relative_to(package)): name
        for path in modules
        for name in imported_modules(path)
        if not is_allowed(name)
    }
    assert offending == {}


def test_the_check_would_catch_a_server_import():
    """The rule refuses the router, the components and the rest of state."""
    assert not is_allowed("rtgateway.router")
    assert not is_allowed("rtgateway.state.engine")
    assert not is_allowed("rtgateway.testing.process")
    assert is_allowed("rtgateway.wire.codecs") and is_allowed("autobahn")
