"""The shape of the code base: lines per package, the largest modules and functions, the import graph.

    python benchmarks/code_report.py              # the working tree
    python benchmarks/code_report.py --rev 66d17c5  # any commit, read through git (nothing checked out)

The import graph lists, for each package, the project packages it imports: eagerly (when the module
is imported) or lazily (inside a function, marked with ``*``). Parsing is by ``ast``, so the report
runs without any framework installed.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = (".venv", "runs", "build", ".git")


@dataclass(frozen=True)
class Module:
    path: str
    package: str
    lines: int
    code_lines: int
    functions: tuple[tuple[str, int], ...]  # (qualified name, lines)
    imports: tuple[tuple[str, bool], ...]  # (imported top-level name, eager)


def _sources(rev: str | None) -> dict[str, str]:
    if rev is None:
        return {
            p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(ROOT.rglob("*.py"))
            if not any(part in SKIP or part.endswith(".egg-info") for part in p.parts)
        }
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", rev],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    return {
        name: subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{name}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout  # fmt: skip
        for name in names
        if name.endswith(".py")
    }


def _package(path: str) -> str:
    parts = path.split("/")
    return parts[0] if len(parts) > 1 else path.removesuffix(".py") + ".py"


def _analyse(path: str, text: str) -> Module:
    tree = ast.parse(text, filename=path)
    functions: list[tuple[str, int]] = []
    imports: list[tuple[str, bool]] = []

    def visit(node: ast.AST, prefix: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                functions.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.", True)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", in_function)
            else:
                if isinstance(child, ast.Import):
                    imports.extend((a.name.split(".")[0], not in_function) for a in child.names)
                elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                    imports.append((child.module.split(".")[0], not in_function))
                visit(child, prefix, in_function)

    visit(tree, "", False)
    lines = text.splitlines()
    code = sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))
    return Module(path, _package(path), len(lines), code, tuple(functions), tuple(imports))


def report(rev: str | None) -> str:
    modules = [_analyse(path, text) for path, text in _sources(rev).items()]
    packages: dict[str, list[Module]] = defaultdict(list)
    for m in modules:
        packages[m.package].append(m)
    own = {p for p in packages if not p.endswith(".py")}
    out = [f"# Code report: {rev or 'working tree'}", ""]
    out += [
        "| package | modules | lines | code lines | largest module (lines) |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(packages, key=lambda p: -sum(m.lines for m in packages[p])):
        ms = packages[name]
        big = max(ms, key=lambda m: m.lines)
        out.append(f"| {name} | {len(ms)} | {sum(m.lines for m in ms)} | "
                   f"{sum(m.code_lines for m in ms)} | {big.path} ({big.lines}) |")  # fmt: skip
    total = sum(m.lines for m in modules)
    out += [
        f"| **total** | {len(modules)} | {total} | {sum(m.code_lines for m in modules)} | |",
        "",
    ]

    library = [m for m in modules if m.package.startswith("unet_")]
    out += ["Largest library modules: " + ", ".join(
        f"{m.path} ({m.lines})" for m in sorted(library, key=lambda m: -m.lines)[:5])]  # fmt: skip
    functions = [(f"{m.path}:{name}", n) for m in library for name, n in m.functions]
    out += ["Largest library functions: " + ", ".join(
        f"{name} ({n})" for name, n in sorted(functions, key=lambda f: -f[1])[:5]), ""]  # fmt: skip

    out += ["Import graph (project packages; `*` = only inside functions):", "", "```"]
    for name in sorted(own):
        eager: set[str] = set()
        lazy: set[str] = set()
        for m in packages[name]:
            for imported, is_eager in m.imports:
                if imported in own and imported != name:
                    (eager if is_eager else lazy).add(imported)
        targets = sorted(eager) + [f"{p}*" for p in sorted(lazy - eager)]
        out.append(f"{name:<14} -> {', '.join(targets) or '(none)'}")
    out.append("```")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", help="a git revision (default: the working tree)")
    print(report(parser.parse_args().rev))


if __name__ == "__main__":
    main()
