"""Dependencies point one way: cli -> operations -> storage primitives.

An AST scan of every module's imports (top level and inside functions) keeps it so:
storage primitives never import operations or the CLI, only the CLI imports typer,
only the git adapter imports dulwich, and torch is imported only by `mlvc.torch`.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mlvc"

PRIMITIVES = ("mlvc.store", "mlvc.hashing", "mlvc.chunking", "mlvc.codec", "mlvc.objects", "mlvc.errors",
              "mlvc.progress")
UPPER = ("mlvc.ops", "mlvc.cli", "mlvc.api", "mlvc.lineage", "mlvc.torch", "mlvc.remote")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return out


def all_modules():
    return {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def starts(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_storage_primitives_do_not_import_upper_layers():
    bad = {m: sorted(i for i in imps if starts(i, UPPER))
           for m, imps in all_modules().items() if starts(m, PRIMITIVES)}
    assert {m: v for m, v in bad.items() if v} == {}


def test_only_the_cli_imports_typer_and_rich():
    bad = {m for m, imps in all_modules().items()
           if not starts(m, ("mlvc.cli",)) and any(starts(i, ("typer", "rich", "click")) for i in imps)}
    assert bad == set()


def test_only_the_git_adapter_imports_dulwich():
    bad = {m for m, imps in all_modules().items() if m != "mlvc.git" and any(starts(i, ("dulwich",)) for i in imps)}
    assert bad == set()


def test_torch_is_imported_only_by_mlvc_torch():
    bad = {m for m, imps in all_modules().items() if m != "mlvc.torch" and any(starts(i, ("torch",)) for i in imps)}
    assert bad == set()


def test_operations_do_not_import_the_cli():
    bad = {m: sorted(i for i in imps if starts(i, ("mlvc.cli",)))
           for m, imps in all_modules().items() if not starts(m, ("mlvc.cli",))}
    assert {m: v for m, v in bad.items() if v} == {}
