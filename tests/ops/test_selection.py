"""mlvc/ops/selection.py: one Selection for push, fetch, pull and verify, and what it resolves to."""

from __future__ import annotations

from pathlib import Path

import mlvc
from mlvc.ops.fetch import select_for_fetch
from mlvc.ops.selection import Selection, select_artifacts
from mlvc.repo import Repo


def test_selection_of_the_api_and_cli_arguments():
    assert Selection.of(None) == Selection() and Selection().includes_workspace
    assert Selection.of("d").paths == ("d",) and Selection.of([Path("a"), "b"]).paths == (Path("a"), "b")
    at = Selection.of(revs=["v1"])
    assert at.revs == ("v1",) and at.uses_revisions and not at.includes_workspace
    assert Selection.of(revs=None, all_branches=True, workspace=True).includes_workspace


def test_a_path_inside_a_directory_artifact_selects_the_artifact_or_for_fetch_its_file(repo_dir):
    (repo_dir / "d").mkdir()
    (repo_dir / "d" / "a.bin").write_bytes(b"a" * 100)
    (repo_dir / "d" / "b.bin").write_bytes(b"b" * 100)
    mlvc.add("d")
    repo = Repo.find(repo_dir)
    try:
        whole = select_artifacts(repo, Selection.of("d/a.bin"))
        assert [a.name for a in whole.artifacts] == ["d"] and whole.errors == {}
        narrowed = select_for_fetch(repo, Selection.of("d/a.bin"), None)
        assert [a.name for a in narrowed.artifacts] == ["d/a.bin"] and narrowed.within == {"d/a.bin": "d/a.bin"}
    finally:
        repo.close()
