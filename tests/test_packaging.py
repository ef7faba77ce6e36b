"""Our top-level packages must resolve to this project, not to same-named PyPI packages."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

PACKAGES = ("agents", "policies", "sim", "experiments", "reports", "configs")
SIGNATURE = {  # a module only this project has, per package
    "agents": "agents.world",
    "policies": "policies.selection",
    "sim": "sim.engine",
    "experiments": "experiments.run",
    "reports": "reports.run_report",
}


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_to_this_project(name):
    module = importlib.import_module(name)
    root = Path(module.__file__).resolve().parent.parent
    others = {p for p in PACKAGES if p != name}
    assert all((root / p / "__init__.py").exists() for p in others), (
        f"{name} resolved to {module.__file__}, which is not beside recloop's other packages — "
        "another installed distribution provides it; use a dedicated virtual environment"
    )
    if name in SIGNATURE:
        importlib.import_module(SIGNATURE[name])


def test_distribution_is_installed_with_entry_points():
    dist = importlib.metadata.distribution("recloop")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"recloop": "experiments.cli:main", "recloop-report": "reports.cli:main"}


def test_configs_ship_with_the_package():
    from importlib.resources import files

    root = files("configs")
    assert root.joinpath("config.yaml").is_file()
    for group in ("world", "policy", "sim"):
        assert any(p.name.endswith(".yaml") for p in root.joinpath(group).iterdir())
