"""Print which riffusion module imports which, read from the source with ``ast``.

Usage: ``python scripts/import_graph.py [--all]``. Each line is ``module -> imported, ...``;
imports inside functions (lazy ones) are marked with ``*``. ``--all`` also lists the
third-party heavyweights (torch, diffusers, transformers) a module imports at load time.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "riffusion"
HEAVY = ("torch", "torchaudio", "diffusers", "transformers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> dict[str, bool]:
    """Imported module name -> True when imported at module level (not inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def visit(node: ast.AST, top: bool, guarded: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner_top = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            inner_guard = guarded or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base]
                names += [f"{base}.{alias.name}" for alias in child.names]
            for name in names:
                if not guarded:
                    found[name] = found.get(name, False) or inner_top
            visit(child, inner_top, inner_guard)

    visit(tree, True, False)
    return found


def lazy_tables(modules: dict[str, Path]) -> dict[str, str]:
    """``package.Name`` -> defining module, from each package's PEP 562 ``_LAZY`` table."""
    table: dict[str, str] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
            ):
                for attribute, module in ast.literal_eval(node.value).items():
                    table[f"{name}.{attribute}"] = module
    return table


def graph() -> dict[str, dict[str, bool]]:
    """riffusion module -> {riffusion or heavy module it imports: imported at load time}.

    ``from riffusion import Riffuser`` counts as an import of the module that defines
    ``Riffuser`` (the package's lazy table), not of the package shell.
    """
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    lazy = lazy_tables(modules)
    result: dict[str, dict[str, bool]] = {}
    for name, path in modules.items():
        edges: dict[str, bool] = {}
        for target, top in imports(path).items():
            if target.startswith("riffusion"):
                target = lazy.get(target, target)
                # resolve "riffusion.x.Name" to the longest module prefix that exists
                parts = target.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if not parts:
                    continue
                target = ".".join(parts)
                if target == name:
                    continue
            elif target.split(".")[0] in HEAVY:
                target = target.split(".")[0]
            else:
                continue
            edges[target] = edges.get(target, False) or top
        result[name] = edges
    return result


def main() -> None:
    show_heavy = "--all" in sys.argv
    for name, edges in graph().items():
        shown = sorted(
            (t if top else t + "*")
            for t, top in edges.items()
            if show_heavy or t.startswith("riffusion")
        )
        print(f"{name} -> {', '.join(shown) if shown else '(none)'}")


if __name__ == "__main__":
    main()
