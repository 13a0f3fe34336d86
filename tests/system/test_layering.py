"""Dependencies point one way: cli -> operations -> stores and formats -> primitives; and types check.

The import-linter contracts in pyproject.toml (`[tool.importlinter]`) say which layer may
import which, and which modules alone may import typer/rich, dulwich, torch and the S3
clients.  import-linter cannot see imports of private names, so an AST scan refuses those:
a module never reaches into another module's `_underscored` names.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "mlvc"


def test_import_linter_contracts_hold():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "Contracts: 5 kept" in proc.stdout, proc.stdout[-2000:]


def test_type_checker_passes():
    """mypy, as configured in pyproject.toml ([tool.mypy]), finds no error in mlvc/.  Here, beside the
    import contracts, so that whoever runs this file before landing runs the type checker too."""
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_contracts_can_fail():
    """The contracts catch a violation: a copy of the package with one bad import breaks them."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(PKG, Path(tmp) / "mlvc")
        shutil.copy(ROOT / "pyproject.toml", Path(tmp) / "pyproject.toml")
        bad = Path(tmp) / "mlvc" / "store" / "gc.py"
        bad.write_text(bad.read_text() + "\nfrom ..ops import push  # noqa\n")
        proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                               "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                              cwd=tmp, capture_output=True, text=True)
    assert proc.returncode != 0 and "mlvc.store.gc" in proc.stdout, proc.stdout[-2000:]


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or node.level):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        bad.append(f"{path.relative_to(ROOT)}: {alias.name} from {node.module}")
    assert bad == []


def test_no_module_is_over_600_lines():
    """Issue 19: a module that grows past 600 lines is split by concept (as packstore.py,
    checkpoint.py and ops/add.py were), not left to grow."""
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_only_the_git_adapter_starts_git():
    """One place runs the git CLI (mlvc/gitcli.py); elsewhere a list starting with "git" is a command line."""
    bad = []
    for path in PKG.rglob("*.py"):
        if path == PKG / "gitcli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant)
                    and node.elts[0].value == "git"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []


# The two operations concurrent work changed this session (add, checkout) are typed next.
UNTYPED_REPO_ALLOWED = {"add.py", "checkout.py"}


def test_every_operation_names_the_type_of_its_repo():
    """A `repo` parameter of an operation is a `Repo` (so mypy checks what the operation reads of
    it), not an untyped name the callee pokes at."""
    bad = []
    for path in sorted((PKG / "ops").glob("*.py")):
        if path.name in UNTYPED_REPO_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg == "repo" and arg.annotation is None:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert bad == []
