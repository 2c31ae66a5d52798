"""No service imports another: the services share only orderstream.common and the topics.

Every module under services/orderstream/<package>/ is parsed (ast, so an import inside a function
counts too) and each `orderstream.<package>` it imports is checked against what its package may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGES = Path(__file__).resolve().parents[2] / "services" / "orderstream"
SERVICES = ("collateral", "collector", "execution", "gateway", "matcher", "router")
MAY_IMPORT = {
    **{service: {service, "common"} for service in SERVICES},
    "common": {"common"},
    "client": {"client", "common"},  # the client library for users
    "ops": {"ops", "common", "client"},  # running the platform, the demo, operator tools
}
# Known exceptions, each a module and the package it may import besides (keep this short):
EXCEPTIONS = {
    ("common/cli.py", "ops"),  # the `orderstream` command line dispatches to the operator tools
    ("gateway/console.py", "ops"),  # the operator views show the local supervisor's processes and lag
}


def imported_packages(path: Path) -> set[str]:
    """The `orderstream.<package>` names a module imports (relative imports resolved within its package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package unless it climbs above it
                package = path.relative_to(PACKAGES).parts[0]
                depth = len(path.relative_to(PACKAGES).parts) - 1
                names = [f"orderstream.{package}" if node.level <= depth else "orderstream.(outside)"]
            else:
                module = node.module or ""
                names = [module]
                if module == "orderstream":  # from orderstream import router
                    names += [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "orderstream" and len(parts) > 1:
                found.add(parts[1])
    return found


def violations(packages: Path = PACKAGES) -> list[str]:
    out = []
    for package in sorted(p.name for p in packages.iterdir() if (p / "__init__.py").exists()):
        allowed = MAY_IMPORT.get(package)
        for path in sorted((packages / package).rglob("*.py")):
            module = path.relative_to(packages).as_posix()
            for used in sorted(imported_packages(path)):
                if allowed is None:
                    out.append(f"{module}: package {package} has no import rule in this test")
                elif used not in allowed and (module, used) not in EXCEPTIONS:
                    out.append(f"{module} imports orderstream.{used}")
    return out


def test_no_service_imports_another() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    "source",
    [
        "from orderstream.collector.history import balances\n",
        "import orderstream.collector.store\n",
        "def f():\n    from orderstream.gateway import auth\n",
        "from orderstream import router\n",
    ],
)
def test_the_check_fails_when_a_service_imports_another(tmp_path: Path, source: str) -> None:
    for package in ("matcher", "collector", "gateway", "router"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "matcher" / "app.py").write_text(source)
    assert [v.split(" imports ")[0] for v in violations(tmp_path)] == ["matcher/app.py"]


def test_every_package_has_a_rule() -> None:
    packages = {p.name for p in PACKAGES.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(MAY_IMPORT)
