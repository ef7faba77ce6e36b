"""The README's Quickstart is the contract with a new user; CI must run its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^#+ *Quickstart[^\n]*\n(.*?)```bash\n(.*?)```", text, re.S | re.M)
    assert match, "README needs a Quickstart heading followed by a ```bash block"
    return [line.strip() for line in match.group(2).splitlines() if line.strip()]


def test_quickstart_has_the_two_commands():
    first, second = quickstart_commands()[:2]
    assert "recloop" in first and "pip install" in first
    assert "pytest" in second and "pip install" in second


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert quickstart_commands()[1] in ci_lines
