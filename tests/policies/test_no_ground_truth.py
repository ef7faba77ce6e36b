"""Policies see logs and item metadata only, never ground truth.

Static check over the source of ``policies/*.py`` (ast): no module imports the simulator or the
world's ground truth; the only ``agents`` modules a policy may import are ``agents.catalog``
(for ``ItemMetadata``) and ``agents.validation`` (config predicates). The oracle is the one flagged exception, and it gets truth only through the
callback ``sim`` hands it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import policy_config

import policies
from policies import Interactions, build_policy
from policies.als import ALSScorer
from policies.baselines import OracleScorer, PopularityScorer, RandomScorer
from policies.randomness import Randomness

POLICY_DIR = Path(policies.__file__).resolve().parent
SOURCES = sorted(POLICY_DIR.rglob("*.py"))
FORBIDDEN = ("agents.world", "agents.users", "agents.click_model", "agents.streams", "sim")
ALLOWED_AGENTS = ("agents.catalog", "agents.validation")  # metadata; config predicates


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Absolute names of every module imported anywhere in the file (incl. inside functions),
    plus ``from X import Y`` expanded to ``X.Y`` (Y may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the policies package
                base = ".".join(["policies"] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call):  # importlib.import_module("x") / __import__("x")
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                found.append(
                    (node.lineno, arg.value if isinstance(arg, ast.Constant) else "<dynamic>")
                )
    return found


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_policy_sources_are_found():
    names = {p.stem for p in SOURCES}
    assert {"policy", "selection", "exclusion", "als", "baselines", "models"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_policy_module_does_not_import_ground_truth(path: Path):
    imports = imported_modules(path)
    catalog_lines = {ln for ln, m in imports if any(_is_under(m, ok) for ok in ALLOWED_AGENTS)}
    offending = []
    for line, module in imports:
        if module == "<dynamic>":
            offending.append((line, "dynamic import"))
        elif any(_is_under(module, bad) for bad in FORBIDDEN):
            offending.append((line, module))
        elif _is_under(module, "agents") and not any(
            _is_under(module, ok) for ok in ALLOWED_AGENTS
        ):
            # `import agents` / `from agents import X` is only fine as `from agents import catalog`
            if not (module == "agents" and line in catalog_lines):
                offending.append((line, module))
    assert not offending, f"{path.name} imports ground truth: {offending}"


def test_checker_catches_forbidden_imports(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sim.engine\n"
        "from agents.world import World\n"
        "from agents import users\n"
        "from agents.catalog import ItemMetadata\n"
        "def f():\n    from sim import metrics\n"
    )
    modules = {m for _, m in imported_modules(bad)}
    assert {"sim.engine", "agents.world", "agents.users", "sim", "agents.catalog"} <= modules
    ok = tmp_path / "ok.py"
    ok.write_text("from agents.catalog import ItemMetadata\nfrom agents import catalog\n")
    assert {m for _, m in imported_modules(ok)} == {
        "agents.catalog",
        "agents.catalog.ItemMetadata",
        "agents",
    }


def test_importing_policies_does_not_load_the_simulator():
    code = (
        "import sys, policies, policies.policy, policies.selection, policies.exclusion, "
        "policies.als, policies.baselines, policies.models, policies.interactions\n"
        "print(','.join(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"policies loaded ground-truth modules: {out.stdout}"


def test_only_the_oracle_scorer_uses_ground_truth():
    def truth(user_ids):  # pragma: no cover - never called here
        raise AssertionError

    assert OracleScorer(relevance=truth).uses_ground_truth is True
    for scorer in (ALSScorer(), PopularityScorer(), RandomScorer()):
        assert getattr(scorer, "uses_ground_truth", False) is False, type(scorer).__name__


@pytest.mark.parametrize(
    ("scorer", "selector"),
    [
        ("als", "greedy"),
        ("als", "epsilon_greedy"),
        ("popularity", "greedy"),
        ("random", "uniform"),
        ("oracle", "greedy"),
    ],
)
def test_truth_callback_reaches_only_the_oracle(scorer, selector):
    n_users, n_items, k = 20, 15, 3
    calls = []

    def truth(user_ids):
        calls.append(np.asarray(user_ids).copy())
        return np.tile(np.linspace(0.0, 1.0, n_items), (len(user_ids), 1))

    config = policy_config(
        name=scorer,
        scorer=scorer,
        selector=selector,
        slate_size=k,
        n_candidates=5,
        factors=2,
        lenient=True,
    )
    policy = build_policy(config, n_items, n_users, seed=0, relevance=truth)
    assert getattr(policy.scorer, "uses_ground_truth", False) is (scorer == "oracle")
    assert getattr(policy.bootstrap.scorer, "uses_ground_truth", False) is False
    rng = np.random.default_rng(0)
    users = np.arange(n_users)
    policy.serve(users, Randomness.from_seed(0))  # bootstrap: never truth
    assert calls == []
    inter = Interactions.from_pairs(
        rng.integers(0, n_users, 40), rng.integers(0, n_items, 40), n_users, n_items
    )
    policy.deploy(policy.fit(inter, version=0))
    batch = policy.serve(users, Randomness.from_seed(1))
    if scorer == "oracle":
        assert calls, "the oracle must rank by the truth callback"
        # truth increases with item id: the oracle shows the best unclicked items, best first
        seen = inter.clicks.toarray() > 0
        for u in users:
            best = [i for i in range(n_items - 1, -1, -1) if not seen[u, i]][:k]
            assert batch.items[u].tolist() == best
    else:
        assert calls == [], f"{scorer} policy called the ground-truth callback"
