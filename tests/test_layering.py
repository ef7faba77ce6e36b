"""The layers of DESIGN.md, read from the code's AST: ``agents`` ← ``policies`` ← ``sim`` ←
``experiments``; ``reports`` reads files and imports nothing of ours.

Every import anywhere in a module counts (inside functions and ``TYPE_CHECKING`` blocks too),
relative imports are resolved, and ``importlib.import_module`` / ``__import__`` calls are checked
when their argument is a constant. A dynamic import (a computed module name) could reach any
layer, so only ``experiments`` may have one (it may import everything, and resolves hydra
``_target_`` paths to user components).

A policy never reads ground truth: of ``agents`` it may import only the public types a platform
has (``POLICY_AGENTS``), never the world, the users or the click model.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("agents", "policies", "sim", "experiments", "reports", "configs", "benchmarks")
# package -> the first-party packages it may import (itself included)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "agents": frozenset({"agents"}),
    "policies": frozenset({"policies", "agents"}),
    "sim": frozenset({"sim", "agents", "policies"}),
    "experiments": frozenset({"experiments", "sim", "agents", "policies", "reports", "configs"}),
    "reports": frozenset({"reports"}),
}
# the only agents modules a policy may import: item metadata and config predicates
POLICY_AGENTS = ("agents.catalog", "agents.validation")
DYNAMIC_IMPORTS_ALLOWED = ("experiments",)
SOURCES = sorted(p for pkg in MAY_IMPORT for p in (ROOT / pkg).rglob("*.py"))


def _package_of(path: Path) -> str:
    """Dotted package containing the module at ``path`` (the package itself for __init__)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; ``from X import Y`` also yields
    ``X.Y`` (Y may be a submodule); a computed ``import_module`` argument yields ``<dynamic>``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = _package_of(path).split(".")
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}".lstrip(".")) for alias in node.names]
        elif isinstance(node, ast.Call):  # importlib.import_module("x") / __import__("x")
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                constant = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                found.append((node.lineno, arg.value if constant else "<dynamic>"))
    return found


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layering_violations(path: Path) -> list[str]:
    """Human-readable violations of the layer rules in one source file (empty when clean)."""
    rel = path.relative_to(ROOT).as_posix()
    layer = rel.split("/")[0]
    allowed = MAY_IMPORT[layer]
    imports = imported_modules(path)
    problems = []
    for line, module in imports:
        if module == "<dynamic>":
            if layer not in DYNAMIC_IMPORTS_ALLOWED:
                problems.append(f"{rel}:{line}: dynamic import (module name computed at run time)")
            continue
        top = module.split(".")[0]
        if top in FIRST_PARTY and top not in allowed:
            problems.append(
                f"{rel}:{line}: imports {module!r}; {layer} may import only "
                f"{', '.join(sorted(allowed))} (DESIGN.md: agents <- policies <- sim <- "
                "experiments; reports read files only)"
            )
    if layer == "policies":  # no ground truth: only the agents modules a platform would have
        ok_lines = {ln for ln, m in imports if any(_is_under(m, ok) for ok in POLICY_AGENTS)}
        for line, module in imports:
            if not _is_under(module, "agents") or any(
                _is_under(module, ok) for ok in POLICY_AGENTS
            ):
                continue
            if module == "agents" and line in ok_lines:  # `from agents import catalog`
                continue
            problems.append(f"{rel}:{line}: imports {module!r}: ground truth is off limits")
    return problems


def test_sources_are_found() -> None:
    found = {p.relative_to(ROOT).parts[0] for p in SOURCES}
    assert found == set(MAY_IMPORT)
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"policies/policy.py", "sim/engine.py", "reports/run_report.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=[p.relative_to(ROOT).as_posix() for p in SOURCES])
def test_module_respects_the_layers(path: Path) -> None:
    problems = layering_violations(path)
    assert not problems, "\n".join(problems)


def test_checker_catches_what_it_should(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    cases = {
        "reports/bad.py": "from sim import inequality\n",
        "reports/sub/bad.py": "def f():\n    from sim.inequality import gini\n",
        "reports/worse.py": "import importlib\nimportlib.import_module('policies.policy')\n",
        "agents/bad.py": "from policies.models import Model\n",
        "policies/bad.py": "from agents.world import World\nfrom agents import users\n",
        "policies/dyn.py": "import importlib\nname = 'x'\nimportlib.import_module(name)\n",
        "sim/bad.py": "from experiments.run import run\n",
    }
    ok = {
        "policies/ok.py": "from agents.catalog import ItemMetadata\nfrom agents import catalog\n",
        "policies/sub/ok.py": "from ..models import Model\nfrom . import x\n",
        "reports/ok.py": "import numpy\nfrom reports.files import require\nfrom .page import CSS\n",
        "experiments/ok.py": "from reports import run_report\nfrom sim.engine import Simulation\n",
        "experiments/dyn.py": "import importlib\nname = 'x'\nimportlib.import_module(name)\n",
    }
    for rel, text in {**cases, **ok}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for rel in cases:
        assert layering_violations(tmp_path / rel), rel
    for rel in ok:
        assert layering_violations(tmp_path / rel) == [], rel
    assert "<dynamic>" in {m for _, m in imported_modules(tmp_path / "policies/dyn.py")}


def test_importing_reports_loads_nothing_of_the_simulator() -> None:
    code = (
        "import sys, reports.cli, reports.run_report, reports.sweep_report, reports.ope_report, "
        "reports.metric_catalog\n"
        "ours = ('agents', 'policies', 'sim', 'experiments')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ours)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing reports loaded: {out.stdout}"
