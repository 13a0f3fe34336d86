"""The Python API covers the CLI: thin wrappers returning the result objects the CLI prints."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import commit, mlvc, write

import mlvc as api
from mlvc.ops.diff import DiffResult
from mlvc.ops.fetch import PullResult
from mlvc.store.gc import GcResult
from mlvc.ops.log import LogEntry
from mlvc.store.transfer import TransferResult


def test_every_api_function_has_a_docstring() -> None:
    tree = ast.parse((Path(api.__file__).parent / "api.py").read_text())
    missing = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not ast.get_docstring(n)]
    assert missing == []


def test_import_mlvc_stays_lazy() -> None:
    code = "import sys, mlvc; assert not any(m.startswith(('mlvc.api', 'mlvc.ops', 'fsspec')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_status_takes_one_path_as_the_other_functions_do(repo_dir: Path) -> None:
    write(repo_dir / "data.txt", "1")
    api.add("data.txt")
    # one path was iterated character by character ("d: is not tracked by mlvc")
    assert [s.path for s in api.status("data.txt")] == [s.path for s in api.status(["data.txt"])] == ["data.txt"]


def test_checkout_takes_one_path_as_the_other_functions_do(repo_dir: Path) -> None:
    write(repo_dir / "data.txt", "1")
    api.add("data.txt")
    (repo_dir / "data.txt").unlink()
    # one path was iterated character by character ("d: is not tracked by mlvc"), as status's was
    assert api.checkout("data.txt").restored == ["data.txt"]
    assert (repo_dir / "data.txt").read_text() == "1"


def test_wrappers_return_the_cli_result_objects(repo_dir: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    assert mlvc("remote", "add", "origin", str(remote), "--default", "-q") == 0
    write(repo_dir / "data" / "a.txt", "1")
    api.add("data", role="data")
    commit(repo_dir, "v1")
    write(repo_dir / "data" / "a.txt", "2")
    api.add("data")
    commit(repo_dir, "v2")

    pushed = api.push(all_commits=True)
    assert isinstance(pushed, TransferResult) and pushed.done and not pushed.failed
    fetched = api.fetch("data")
    assert isinstance(fetched, TransferResult) and fetched.done == ["data"]
    pulled = api.pull()
    assert isinstance(pulled, PullResult) and not pulled.failed
    d = api.diff("HEAD~1", "HEAD")
    assert isinstance(d, DiffResult) and [a.change for a in d.artifacts] == ["modified"]
    entries = api.log("data")
    assert entries and all(isinstance(e, LogEntry) for e in entries)
    m = api.manifest("HEAD")
    assert [a["path"] for a in m["artifacts"]] == ["data"]
    g = api.gc("workspace", dry_run=True)
    assert isinstance(g, GcResult)
    assert api.read("data/a.txt", rev="HEAD~1") == b"1"
