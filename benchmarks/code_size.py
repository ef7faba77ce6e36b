"""Line counts of the largest modules and the longest functions of the recloop packages.

    python benchmarks/code_size.py [ROOT] [--top 5]

ROOT is a checkout (default: this one). Lines are physical lines of a ``.py`` file; a function's
length is from its ``def`` (decorators excluded) to its last line, docstring included.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGES = ("agents", "policies", "sim", "experiments", "reports")


def measure(root: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, functions = [], []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = str(path.relative_to(root))
            text = path.read_text()
            modules.append((len(text.splitlines()), rel))
            tree = ast.parse(text)
            stack = [(node, "") for node in tree.body]
            while stack:
                node, prefix = stack.pop()
                if isinstance(node, ast.ClassDef):
                    stack += [(child, f"{prefix}{node.name}.") for child in node.body]
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    functions.append((length, f"{rel}:{prefix}{node.name}"))
                    stack += [(child, f"{prefix}{node.name}.") for child in node.body]
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args()
    modules, functions = measure(args.root)
    print(f"{args.root}: {sum(n for n, _ in modules)} lines in {len(modules)} modules")
    print("largest modules:")
    for n, name in modules[: args.top]:
        print(f"  {n:5d}  {name}")
    print("longest functions:")
    for n, name in functions[: args.top]:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
