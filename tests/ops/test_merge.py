"""Three-way merge of directory artifacts: the git merge driver `mlvc install-hooks` installs, and
`mlvc merge PATH` after a conflicted `git merge` (real git, real branches)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import GIT_ENV, commit, git, mlvc, mlvc_cli, one_error

from mlvc import pointer as pointers
from mlvc.errors import EXIT_CONFLICT
from mlvc.hashing import from_oid, to_oid, digest
from mlvc.repo import Repo


def sample(i: int, version: str = "v0") -> bytes:
    return f"sample {i:04d} {version}\n".encode() * 50


def git_rc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **GIT_ENV), capture_output=True, text=True)


def tree_of(r: Path, rel: str = "data.mlvc") -> dict[str, bytes]:
    ptr = pointers.load(r / rel)
    repo = Repo(r)
    try:
        return {e.path: e.file_id for e in repo.store.tree(from_oid(ptr.oid)).entries}
    finally:
        repo.close()


def fid(data: bytes) -> bytes:
    return digest(data)


@pytest.fixture
def branches(repo_dir):
    """main: data/s0000..s0199 (one file each); feat-a edits s0000-s0002, adds a_new, deletes
    s0100; feat-b edits s0005-s0006, adds b_new.  HEAD: feat-a."""
    r = repo_dir
    for i in range(200):
        (r / "data").mkdir(exist_ok=True)
        (r / f"data/s{i:04d}").write_bytes(sample(i))
    assert mlvc("add", "data", "--quiet") == 0
    commit(r, "base")
    git(r, "switch", "-q", "-c", "feat-a")
    for i in range(3):
        (r / f"data/s{i:04d}").write_bytes(sample(i, "a"))
    (r / "data/a_new").write_bytes(b"added on a\n")
    (r / "data/s0100").unlink()
    assert mlvc("add", "data", "--quiet") == 0
    commit(r, "feat-a")
    git(r, "switch", "-q", "-c", "feat-b", "main")
    assert mlvc("checkout", "--quiet") == 0
    for i in (5, 6):
        (r / f"data/s{i:04d}").write_bytes(sample(i, "b"))
    (r / "data/b_new").write_bytes(b"added on b\n")
    assert mlvc("add", "data", "--quiet") == 0
    commit(r, "feat-b")
    git(r, "switch", "-q", "feat-a")
    assert mlvc("checkout", "--quiet") == 0
    return r


def expected_merge() -> dict[str, bytes]:
    files = {f"s{i:04d}": fid(sample(i)) for i in range(200) if i != 100}
    files.update({f"s{i:04d}": fid(sample(i, "a")) for i in range(3)})
    files.update({f"s{i:04d}": fid(sample(i, "b")) for i in (5, 6)})
    files["a_new"] = fid(b"added on a\n")
    files["b_new"] = fid(b"added on b\n")
    return files


def test_git_merge_combines_both_branches_edits_adds_and_deletes(branches):
    r = branches
    out = mlvc_cli(r, "install-hooks")
    assert out.code == 0, out.err
    assert "*.mlvc merge=mlvc" in (r / ".gitattributes").read_text()
    assert "merge.mlvc.driver" not in git(r, "status", "--short")
    git(r, "add", ".gitattributes")
    git(r, "commit", "-q", "-m", "merge driver")
    res = git_rc(r, "merge", "--no-edit", "feat-b")
    assert res.returncode == 0, res.stdout + res.stderr
    assert tree_of(r) == expected_merge()
    ptr = pointers.load(r / "data.mlvc")
    assert ptr.files == 201 and ptr.size == sum(p.stat().st_size for p in (r / "data").iterdir())
    # the post-merge hook restored the merged workspace, byte for byte
    assert (r / "data/b_new").read_bytes() == b"added on b\n"
    assert (r / "data/s0005").read_bytes() == sample(5, "b")
    assert (r / "data/s0001").read_bytes() == sample(1, "a")
    assert not (r / "data/s0100").exists()
    status = mlvc_cli(r, "status", "--json")
    assert status.code == 0 and '"state": "unchanged"' in status.out, status.out
    assert git(r, "status", "--porcelain") == ""


def test_a_file_changed_on_both_sides_is_a_conflict_naming_it_and_both_ids(branches):
    r = branches
    (r / "data/s0005").write_bytes(sample(5, "a"))  # feat-a now edits s0005 too, differently
    assert mlvc("add", "data", "--quiet") == 0
    commit(r, "feat-a edits s0005")
    assert mlvc_cli(r, "install-hooks", "-q").code == 0
    res = git_rc(r, "merge", "--no-edit", "feat-b")
    assert res.returncode != 0
    ours_id, theirs_id = to_oid(fid(sample(5, "a"))), to_oid(fid(sample(5, "b")))
    assert f"s0005 (ours {ours_id}, theirs {theirs_id})" in res.stderr, res.stderr
    # any command names both resolutions; both are in the cache, restorable
    status = mlvc_cli(r, "status")
    assert status.code == 5 and "mlvc merge data.mlvc" in status.out
    assert ("unresolved git merge conflict: ours (merged, 1 conflicting file as ours) xxh128:" in status.out
            and "theirs (merged, 1 conflicting file as theirs) xxh128:" in status.out), status.out
    out = mlvc_cli(r, "merge", "data")
    assert out.code == EXIT_CONFLICT
    assert one_error(out.err) == (f"error: data: 1 file changed on both sides: s0005 (ours {ours_id}, "
                                  f"theirs {theirs_id})")
    assert "mlvc merge data.mlvc --ours" in out.err
    out = mlvc_cli(r, "merge", "data", "--theirs")
    assert out.code == 0, out.err
    merged = tree_of(r)
    assert merged == expected_merge()  # s0005 as feat-b has it, every other change of both sides
    assert "data.mlvc" not in git(r, "diff", "--name-only", "--diff-filter=U")  # staged
    assert mlvc_cli(r, "checkout", "data").code == 0
    assert (r / "data/s0005").read_bytes() == sample(5, "b")
    assert (r / "data/s0002").read_bytes() == sample(2, "a")
    git(r, "commit", "-q", "--no-edit")
    assert git(r, "status", "--porcelain", "--untracked-files=no") == ""


def test_merge_command_without_the_driver_and_with_ours(branches):
    r = branches
    (r / "data/s0006").unlink()  # feat-a deletes a file feat-b edited: a conflict too
    assert mlvc("add", "data", "--quiet") == 0
    commit(r, "feat-a drops s0006")
    res = git_rc(r, "merge", "--no-edit", "feat-b")  # git's own text merge: markers
    assert res.returncode != 0
    out = mlvc_cli(r, "merge", "data.mlvc", "--ours", "--json")
    assert out.code == 0, out.err
    import json

    doc = json.loads(out.out)
    assert doc["conflicts"] == [{"path": "s0006", "ours": None, "theirs": to_oid(fid(sample(6, "b")))}]
    expect = expected_merge()
    del expect["s0006"]
    assert tree_of(r) == expect


def test_merge_of_a_pointer_not_in_conflict_is_refused(branches):
    out = mlvc_cli(branches, "merge", "data")
    assert out.code == 4 and "is not conflicted in a git merge" in one_error(out.err)


def test_uninstall_removes_the_driver(branches):
    r = branches
    assert mlvc_cli(r, "install-hooks", "-q").code == 0
    out = mlvc_cli(r, "uninstall-hooks")
    assert out.code == 0 and "merge driver" in out.out
    assert not (r / ".gitattributes").exists()
    assert git_rc(r, "config", "merge.mlvc.driver").returncode == 1


def test_a_file_artifact_changed_on_both_sides_is_left_as_a_conflict_naming_both_ids(repo_dir):
    r = repo_dir
    assert mlvc_cli(r, "install-hooks", "-q").code == 0
    (r / "model.bin").write_bytes(b"base" * 100)
    assert mlvc("add", "model.bin", "--quiet") == 0
    commit(r, "base")  # .gitattributes too
    git(r, "switch", "-q", "-c", "other")
    (r / "model.bin").write_bytes(b"theirs" * 100)
    assert mlvc("add", "model.bin", "--quiet") == 0
    commit(r, "theirs")
    theirs_id = pointers.load(r / "model.bin.mlvc").oid
    git(r, "switch", "-q", "main")
    (r / "model.bin").write_bytes(b"ours" * 100)
    assert mlvc("add", "model.bin", "--quiet") == 0
    commit(r, "ours")
    ours_id = pointers.load(r / "model.bin.mlvc").oid
    res = git_rc(r, "merge", "--no-edit", "other")
    assert res.returncode != 0 and "not a directory on both" in res.stderr, res.stderr
    status = mlvc_cli(r, "status")
    assert status.code == 5 and f"ours {ours_id}, theirs {theirs_id}" in status.out, status.out


def test_meta_merges_key_by_key_and_module_ids_file_by_file():
    from mlvc.ops.merge import merge_meta

    base = {"seed": 1, "config_hash": "c0", "modules": {"a.pt": {"enc": "x0"}, "b.pt": {"dec": "y0"}}}
    ours = {"seed": 1, "config_hash": "c1", "modules": {"a.pt": {"enc": "x1"}, "b.pt": {"dec": "y0"}}}
    theirs = {"seed": 2, "config_hash": "c2", "modules": {"a.pt": {"enc": "x0"}, "b.pt": {"dec": "y2"},
                                                           "c.pt": {"head": "z"}}}
    merged, dropped = merge_meta(base, ours, theirs)
    assert merged == {"seed": 2, "modules": {"a.pt": {"enc": "x1"}, "b.pt": {"dec": "y2"}, "c.pt": {"head": "z"}}}
    assert dropped == ["config_hash"]  # changed differently on both sides: it describes neither result
    blocks = merge_meta({"blocks": {"m.pt": {"layers.0": "p", "layers.1": "q"}}},
                        {"blocks": {"m.pt": {"layers.0": "p2", "layers.1": "q"}}},
                        {"blocks": {"m.pt": {"layers.0": "p", "layers.1": "q3"}}})
    assert blocks == ({"blocks": {"m.pt": {"layers.0": "p2", "layers.1": "q3"}}}, [])


def test_merge_entries_names_edit_edit_and_edit_delete_conflicts():
    from mlvc.objects import TreeEntry
    from mlvc.ops.merge import merge_entries

    def e(path, n, x=False):
        return TreeEntry(path, n, bytes([n]) * 16, x)

    base = [e("a", 1), e("b", 2), e("c", 3), e("d", 4)]
    ours = [e("a", 11), e("b", 12), e("d", 4, True), e("o", 5)]  # a, b edited; c deleted; d made executable
    theirs = [e("a", 11), e("b", 22), e("c", 33), e("d", 4), e("t", 6)]  # a same edit; b, c edited
    as_ours, as_theirs, conflicts, from_theirs = merge_entries(base, ours, theirs)
    assert [(c.path, c.ours, c.theirs) for c in conflicts] == [
        ("b", to_oid(bytes([12]) * 16), to_oid(bytes([22]) * 16)), ("c", None, to_oid(bytes([33]) * 16))]
    assert as_ours == [e("a", 11), e("b", 12), e("d", 4, True), e("o", 5), e("t", 6)]
    assert as_theirs == [e("a", 11), e("b", 22), e("c", 33), e("d", 4, True), e("o", 5), e("t", 6)]
    assert from_theirs == 1  # t


def test_a_teammates_branch_merges_with_its_tree_read_from_the_remote(tmp_path, monkeypatch):
    """Two clones share a git remote and an mlvc remote: B's branch edits the dataset, A's too;
    A merges B's branch, whose tree A's cache has never seen (read from the mlvc remote), and the
    post-merge hook restores B's files from the remote."""
    origin, nfs = tmp_path / "origin.git", tmp_path / "nfs"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    a = tmp_path / "a"
    git(tmp_path, "init", "-q", "-b", "main", str(a))
    assert mlvc_cli(a, "init").code == 0
    assert mlvc_cli(a, "remote", "add", "shared", str(nfs), "--default").code == 0
    assert mlvc_cli(a, "install-hooks", "-q").code == 0
    for i in range(20):
        (a / "data").mkdir(exist_ok=True)
        (a / f"data/s{i:04d}").write_bytes(sample(i))
    assert mlvc_cli(a, "add", "data").code == 0
    commit(a, "base")
    git(a, "remote", "add", "origin", str(origin))
    git(a, "push", "-q", "-u", "origin", "main")
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(origin), str(b))
    assert mlvc_cli(b, "install-hooks", "-q").code == 0
    assert mlvc_cli(b, "pull").code == 0
    git(b, "switch", "-q", "-c", "feat-b")
    (b / "data/s0005").write_bytes(sample(5, "b"))
    (b / "data/b_new").write_bytes(b"added on b\n")
    assert mlvc_cli(b, "add", "data").code == 0
    commit(b, "feat-b")
    git(b, "push", "-q", "origin", "feat-b")  # the pre-push hook uploads feat-b's artifacts
    (a / "data/s0001").write_bytes(sample(1, "a"))
    (a / "data/s0019").unlink()
    assert mlvc_cli(a, "add", "data").code == 0
    commit(a, "feat-a")
    git(a, "fetch", "-q", "origin")
    res = git_rc(a, "merge", "--no-edit", "origin/feat-b")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (a / "data/b_new").read_bytes() == b"added on b\n"
    assert (a / "data/s0005").read_bytes() == sample(5, "b")
    assert (a / "data/s0001").read_bytes() == sample(1, "a")
    assert not (a / "data/s0019").exists()
    assert mlvc_cli(a, "status", "--exit-code").code == 0
