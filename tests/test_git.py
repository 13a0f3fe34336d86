"""GitRepo against real repositories built with the git CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlvc.errors import GitError, NotARepoError, PathError, RevisionError
from mlvc import hooks
from mlvc.git import CommitInfo, GitRepo
from mlvc.hooks import HOOK_BLOCK_BEGIN, HOOK_BLOCK_END

POINTER_COUNT = 20
HISTORY_LENGTH = 1000


@pytest.fixture(autouse=True)
def git_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate git from the user's config and give commits a fixed identity."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada Lovelace")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ada@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Ada Lovelace")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "ada@example.com")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str, **env: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, check=True)
    return proc.stdout.strip()


def commit_file(repo: Path, relpath: str, content: str, message: str, **env: str) -> str:
    path = repo / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    git(repo, "add", relpath)
    git(repo, "commit", "-q", "-m", message, **env)
    return git(repo, "rev-parse", "HEAD")


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: c1 - c2 - c3 - c4 (merge of feature), feature branches off c2; tags on c1."""
    root = init_repo(tmp_path / "repo")
    commit_file(root, "models/a.mlvc", "a1\n", "first commit\n\nbody text",
                GIT_AUTHOR_DATE="2024-01-02T03:04:05+0200")
    git(root, "tag", "light")
    git(root, "tag", "-a", "v1", "-m", "release one")
    commit_file(root, "models/b.mlvc", "b1\n", "second")
    git(root, "checkout", "-q", "-b", "feature")
    commit_file(root, "data/x.mlvc", "x1\n", "feature work")
    git(root, "checkout", "-q", "main")
    commit_file(root, "models/a.mlvc", "a2\n", "third")
    git(root, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    return root


def sha_of(root: Path, rev: str) -> str:
    return git(root, "rev-parse", rev + "^{commit}")


# ------------------------------------------------------------------ discovery


def test_finds_root_from_subdirectory(repo: Path) -> None:
    assert GitRepo(repo / "models").root == repo.resolve()


def test_outside_a_repository_raises(tmp_path: Path) -> None:
    with pytest.raises(NotARepoError):
        GitRepo(tmp_path)


def test_head_and_branch(repo: Path) -> None:
    gr = GitRepo(repo)
    assert gr.head_commit() == sha_of(repo, "HEAD")
    assert gr.branch() == "main"
    assert gr.has_commits()
    assert not gr.is_shallow()


def test_detached_head(repo: Path) -> None:
    target = sha_of(repo, "HEAD~1")
    git(repo, "checkout", "-q", "--detach", target)
    gr = GitRepo(repo)
    assert gr.branch() is None
    assert gr.head_commit() == target


def test_repo_without_commits(tmp_path: Path) -> None:
    root = init_repo(tmp_path / "empty")
    gr = GitRepo(root)
    assert gr.head_commit() is None
    assert gr.branch() == "main"
    assert not gr.has_commits()
    assert list(gr.walk()) == []
    assert gr.all_commits() == []
    assert gr.branch_heads() == {} and gr.tags() == {}
    with pytest.raises(RevisionError, match="unknown revision 'HEAD'"):
        gr.resolve("HEAD")
    assert not gr.is_dirty()
    (root / "f.txt").write_text("hello\n")
    git(root, "add", "f.txt")
    assert gr.is_dirty()
    assert gr.dirty_diff_hash() is not None


# ------------------------------------------------------------------ revisions


@pytest.mark.parametrize("rev", [
    "HEAD", "@", "main", "feature", "light", "v1", "HEAD~1", "HEAD^", "HEAD^2", "HEAD~3",
    "main~2", "feature~1", "HEAD^1^", "v1^{}", "v1^{commit}", "refs/heads/main", "heads/feature",
])
def test_resolve_matches_git(repo: Path, rev: str) -> None:
    assert GitRepo(repo).resolve(rev) == sha_of(repo, rev)


def test_resolve_sha_and_prefixes(repo: Path) -> None:
    gr = GitRepo(repo)
    full = sha_of(repo, "HEAD~2")
    assert gr.resolve(full) == full
    assert gr.resolve(full.upper()) == full
    assert gr.resolve(full[:7]) == full
    assert gr.resolve(full[:10] + "~1") == sha_of(repo, "HEAD~3")


def test_annotated_tag_resolves_to_commit(repo: Path) -> None:
    gr = GitRepo(repo)
    tag_object = git(repo, "rev-parse", "v1")
    assert gr.resolve("v1") != tag_object
    assert gr.resolve("v1") == sha_of(repo, "v1")


@pytest.mark.parametrize("rev", [
    "nope", "HEAD~10", "HEAD^3", "main~~~~~~", "deadbeef", "", "~1", "HEAD^{tree}",
    "../config", "config", "index", "objects", "main..feature", "ab",
])
def test_unknown_revision(repo: Path, rev: str) -> None:
    with pytest.raises(RevisionError, match="unknown revision"):
        GitRepo(repo).resolve(rev)


def test_unknown_revision_message(repo: Path) -> None:
    with pytest.raises(RevisionError) as info:
        GitRepo(repo).resolve("x")
    assert str(info.value) == "unknown revision 'x'"


# ---------------------------------------------------------------- tree reads


def test_read_blob_at_revisions(repo: Path) -> None:
    gr = GitRepo(repo)
    assert gr.read_blob("HEAD", "models/a.mlvc") == b"a2\n"
    assert gr.read_blob("v1", "models/a.mlvc") == b"a1\n"
    assert gr.read_blob("v1", "models/b.mlvc") is None
    assert gr.read_blob("HEAD", "models") is None
    assert gr.read_blob("HEAD", "models/a.mlvc/deeper") is None
    assert gr.read_blob("HEAD", "./data/x.mlvc") == b"x1\n"


def test_read_blob_rejects_escaping_paths(repo: Path) -> None:
    with pytest.raises(PathError):
        GitRepo(repo).read_blob("HEAD", "../outside")
    with pytest.raises(PathError):
        GitRepo(repo).read_blob("HEAD", "/etc/passwd")


def test_read_blob_does_not_touch_work_tree(repo: Path) -> None:
    (repo / "models" / "a.mlvc").write_text("edited\n")
    assert GitRepo(repo).read_blob("HEAD", "models/a.mlvc") == b"a2\n"


def test_list_files(repo: Path) -> None:
    gr = GitRepo(repo)
    assert gr.list_files("HEAD") == ["data/x.mlvc", "models/a.mlvc", "models/b.mlvc"]
    assert gr.list_files("v1") == ["models/a.mlvc"]
    assert gr.list_files("HEAD", suffix="b.mlvc") == ["models/b.mlvc"]


def test_list_files_skips_submodules_and_symlinks(repo: Path) -> None:
    head = sha_of(repo, "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/sub.mlvc")
    os.symlink("models/a.mlvc", repo / "link.mlvc")
    git(repo, "add", "link.mlvc")
    git(repo, "commit", "-q", "-m", "gitlink and symlink")
    gr = GitRepo(repo)
    assert gr.list_files("HEAD") == ["data/x.mlvc", "models/a.mlvc", "models/b.mlvc"]
    assert gr.read_blob("HEAD", "vendor/sub.mlvc") is None
    assert gr.read_blob("HEAD", "link.mlvc") is None


# ------------------------------------------------------------------ history


def test_commit_info(repo: Path) -> None:
    gr = GitRepo(repo)
    first = sha_of(repo, "v1")
    info = gr.commit_info(first)
    assert info == CommitInfo(
        sha=first, short=first[:7], author="Ada Lovelace", author_email="ada@example.com",
        date=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        message="first commit", parents=(),
    )
    assert info.date.utcoffset() == timedelta(hours=2)
    merge = gr.commit_info("HEAD")
    assert merge.parents == (sha_of(repo, "HEAD^1"), sha_of(repo, "HEAD^2"))


def test_walk_matches_git_log(repo: Path) -> None:
    expected = git(repo, "log", "--format=%H").split()
    assert [c.sha for c in GitRepo(repo).walk()] == expected


def test_walk_paths_uses_first_parent(repo: Path) -> None:
    gr = GitRepo(repo)
    messages = [c.message for c in gr.walk(paths=["models/a.mlvc"])]
    assert messages == ["third", "first commit"]
    # The merge brings data/x.mlvc in relative to its first parent.
    assert [c.message for c in gr.walk(paths=["data/x.mlvc"])] == ["merge feature", "feature work"]
    assert [c.message for c in gr.walk(paths=["models"])] == ["third", "second", "first commit"]
    assert list(gr.walk(paths=[])) == []
    assert list(gr.walk(paths=["no/such/file"])) == []


def test_walk_from_revision_with_limits(repo: Path) -> None:
    gr = GitRepo(repo)
    assert [c.message for c in gr.walk("feature")] == ["feature work", "second", "first commit"]
    assert len(list(gr.walk(max_count=2))) == 2
    assert list(gr.walk(max_count=0)) == []
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert list(gr.walk(since=future)) == []
    assert len(list(gr.walk(since=datetime(2000, 1, 1, tzinfo=timezone.utc)))) == 5


def test_all_commits_branches_and_tags(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "side", "v1")
    orphan = commit_file(repo, "side.txt", "s\n", "only on a tag")
    git(repo, "tag", "-a", "t-side", "-m", "tag on side")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-D", "side")
    gr = GitRepo(repo)
    shas = {c.sha for c in gr.all_commits()}
    assert shas == set(git(repo, "rev-list", "--all").split())
    assert orphan in shas
    assert gr.branch_heads() == {"feature": sha_of(repo, "feature"), "main": sha_of(repo, "main")}
    assert gr.tags() == {"light": sha_of(repo, "light"), "t-side": orphan, "v1": sha_of(repo, "v1")}


def test_shallow_clone(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    gr = GitRepo(clone)
    assert gr.is_shallow()
    assert gr.has_commits()
    assert [c.sha for c in gr.walk()] == [sha_of(repo, "HEAD")]
    assert [c.sha for c in gr.walk(paths=["models/a.mlvc"])] == [sha_of(repo, "HEAD")]
    assert len(gr.all_commits()) == 1
    assert gr.commit_info("HEAD").parents == (sha_of(repo, "HEAD^1"), sha_of(repo, "HEAD^2"))
    with pytest.raises(RevisionError) as info:
        gr.resolve("HEAD~1")
    assert "shallow" in (info.value.hint or "")


def _fast_import_history(root: Path) -> None:
    """HISTORY_LENGTH commits; commit i (i >= 1) rewrites pointer i % POINTER_COUNT."""
    lines: list[str] = []

    def blob(content: str) -> None:
        data = content.encode()
        lines.append(f"data {len(data)}")
        lines.append(content)

    for i in range(HISTORY_LENGTH):
        lines.append("commit refs/heads/main")
        lines.append(f"committer Ada <ada@example.com> {1_700_000_000 + i * 60} +0000")
        blob(f"commit {i}")
        if i == 0:
            for k in range(POINTER_COUNT):
                lines.append(f"M 100644 inline models/m{k:02d}.mlvc")
                blob(f"v0 of {k}\n")
        else:
            lines.append(f"M 100644 inline models/m{i % POINTER_COUNT:02d}.mlvc")
            blob(f"v{i}\n")
        if i % 50 == 0:
            lines.append("M 100644 inline README")
            blob(f"readme {i}\n")
        lines.append("")
    stream = "\n".join(lines) + "\n"
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=stream.encode(), check=True)
    git(root, "reset", "-q", "--hard", "main")


def test_walk_long_history_with_paths(tmp_path: Path) -> None:
    root = init_repo(tmp_path / "long")
    _fast_import_history(root)
    gr = GitRepo(root)
    pointers = gr.list_files("HEAD")
    assert len(pointers) == POINTER_COUNT

    started = time.perf_counter()
    touching = list(gr.walk(paths=pointers))
    elapsed = time.perf_counter() - started
    assert len(touching) == HISTORY_LENGTH
    assert elapsed >= 0  # recorded for humans (`pytest -s`), not asserted: CI speed varies

    one = [c.message for c in gr.walk(paths=["models/m03.mlvc"])]
    expected = [f"commit {i}" for i in range(HISTORY_LENGTH - 1, 0, -1) if i % POINTER_COUNT == 3]
    assert one == expected + ["commit 0"]
    readme = [c.message for c in gr.walk(paths=["README"])]
    assert readme == [f"commit {i}" for i in range(HISTORY_LENGTH - 50, -1, -50)]
    assert [c.sha for c in gr.walk()] == git(root, "log", "--format=%H").split()


# ------------------------------------------------------------- work tree state


def test_dirty_state(repo: Path) -> None:
    gr = GitRepo(repo)
    assert not gr.is_dirty()
    assert gr.dirty_diff_hash() is None
    (repo / "untracked.txt").write_text("ignored\n")
    assert not gr.is_dirty()
    os.utime(repo / "models" / "a.mlvc", (1, 1))  # stat-only change
    assert not gr.is_dirty()
    (repo / "models" / "a.mlvc").write_text("a3\n")
    assert gr.is_dirty()
    first = gr.dirty_diff_hash()
    assert first is not None and len(first) == 32
    git(repo, "add", "models/a.mlvc")
    assert gr.is_dirty()
    assert gr.dirty_diff_hash() == first  # staged or not, same diff vs HEAD
    (repo / "models" / "a.mlvc").write_text("a4\n")
    assert gr.dirty_diff_hash() != first


def test_checkout_and_run_git(repo: Path) -> None:
    gr = GitRepo(repo)
    gr.checkout("feature")
    assert gr.branch() == "feature"
    gr.checkout("v1")
    assert gr.branch() is None and gr.head_commit() == sha_of(repo, "v1")
    gr.checkout("main")
    (repo / "models" / "a.mlvc").write_text("local edit\n")
    with pytest.raises(GitError, match="error:"):
        gr.checkout("v1")
    gr.checkout("v1", force=True)
    assert (repo / "models" / "a.mlvc").read_text() == "a1\n"
    assert gr.run_git("rev-parse", "HEAD").strip() == sha_of(repo, "v1")
    with pytest.raises(GitError, match="^fatal:"):
        gr.run_git("rev-parse", "--verify", "no-such-thing")


# ------------------------------------------------------------------ hooks


def run_hook(path: Path) -> None:
    subprocess.run([str(path)], check=True, cwd=path.parent)


def test_install_hook_creates_executable_file(repo: Path) -> None:
    gr = GitRepo(repo)
    assert gr.hooks_dir() == repo / ".git" / "hooks"
    path = hooks.install_hook(gr.hooks_dir(), "pre-push", 'echo mlvc >> "$(dirname "$0")/ran"')
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"{HOOK_BLOCK_BEGIN}\n" in text and f"{HOOK_BLOCK_END}\n" in text
    assert path.stat().st_mode & stat.S_IXUSR
    assert hooks.has_hook(gr.hooks_dir(), "pre-push")
    hooks.install_hook(gr.hooks_dir(), "pre-push", 'echo mlvc >> "$(dirname "$0")/ran"')
    assert path.read_text() == text  # idempotent
    hooks.install_hook(gr.hooks_dir(), "pre-push", "true")
    assert path.read_text().count(HOOK_BLOCK_BEGIN) == 1  # replaced, not appended
    assert hooks.uninstall_hook(gr.hooks_dir(), "pre-push")
    assert not path.exists()
    assert not hooks.uninstall_hook(gr.hooks_dir(), "pre-push")


def test_install_hook_chains_existing_shell_hook(repo: Path) -> None:
    gr = GitRepo(repo)
    path = gr.hooks_dir() / "post-checkout"
    original = '#!/bin/sh\necho user >> "$(dirname "$0")/ran"\nexit 0\n'
    path.write_text(original)
    path.chmod(0o755)
    hooks.install_hook(gr.hooks_dir(), "post-checkout", 'echo mlvc >> "$(dirname "$0")/ran"')
    hooks.install_hook(gr.hooks_dir(), "post-checkout", 'echo mlvc >> "$(dirname "$0")/ran"')
    run_hook(path)
    assert (path.parent / "ran").read_text() == "mlvc\nuser\n"
    assert hooks.uninstall_hook(gr.hooks_dir(), "post-checkout")
    assert path.read_text() == original


def test_install_hook_chains_non_shell_hook(repo: Path) -> None:
    gr = GitRepo(repo)
    path = gr.hooks_dir() / "pre-commit"
    original = ("#!/usr/bin/env python3\nimport pathlib, sys\n"
                "pathlib.Path(sys.argv[0]).with_name('ran').open('a').write('python\\n')\n")
    path.write_text(original)
    path.chmod(0o755)
    hooks.install_hook(gr.hooks_dir(), "pre-commit", 'echo mlvc >> "$(dirname "$0")/ran"')
    run_hook(path)
    assert (path.parent / "ran").read_text() == "mlvc\npython\n"
    assert hooks.uninstall_hook(gr.hooks_dir(), "pre-commit")
    assert path.read_text() == original
    assert not (path.parent / "pre-commit.mlvc-chained").exists()


def test_hooks_respect_core_hooks_path(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", "githooks")
    gr = GitRepo(repo)
    assert gr.hooks_dir() == repo / "githooks"
    path = hooks.install_hook(gr.hooks_dir(), "post-commit", 'touch "$(git rev-parse --show-toplevel)/hook-ran"')
    assert path == repo / "githooks" / "post-commit"
    commit_file(repo, "models/a.mlvc", "a9\n", "hook runs from hooksPath")
    assert (repo / "hook-ran").exists()  # git itself found and ran the hook there


def test_install_hook_into_empty_file(repo: Path) -> None:
    gr = GitRepo(repo)
    path = gr.hooks_dir() / "post-commit"
    path.write_text("")
    hooks.install_hook(gr.hooks_dir(), "post-commit", "true")
    assert path.read_text().startswith("#!/bin/sh\n")
    run_hook(path)


def test_invalid_hook_name(repo: Path) -> None:
    with pytest.raises(GitError):
        hooks.install_hook(GitRepo(repo).hooks_dir(), "../escape", "true")
