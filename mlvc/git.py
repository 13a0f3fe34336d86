"""Read-only access to the git repository mlvc lives in, plus a few git CLI wrappers.

Hook files are edited by `mlvc.hooks` (this module only says where git looks for them).

This module and `mlvc.gittrees` (tree comparisons for the history walk) are the only
ones that import dulwich.  Object-database reads (resolving
revisions, reading pointer blobs at old commits, walking history) go through
dulwich because they are pure reads and must be fast without spawning a process
per commit.  Operations that depend on the index and the work tree (status,
diff, checkout) shell out to the `git` CLI instead: git's index refresh, filters,
sparse checkouts, submodules and config handling are what users expect, and
dulwich's implementations of them are not a full replacement.
"""

from __future__ import annotations

import heapq
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import xxhash
from dulwich.errors import NotGitRepository
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tag, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from mlvc.errors import GitError, NotARepoError, RevisionError
from mlvc import gitcli
from mlvc.gitcli import find_git_root, first_error_line
from mlvc.gittrees import PathTrie, TreeCache, split_repo_path, trees_differ

# git's well-known id of the empty tree; git knows it even when it is not stored.
EMPTY_TREE_SHA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

_HEX = re.compile(r"[0-9a-fA-F]+")
_PSEUDO_REF = re.compile(r"[A-Z][A-Z_]*")
_REV_SUFFIX = re.compile(r"(~\d*|\^\{\w*\}|\^\d*)")
_MIN_PREFIX_LEN = 4

# Flags that make `git diff` output independent of user config, so the same
# working-tree change hashes identically on every machine.
_STABLE_DIFF_ARGS = (
    "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false",
    "-c", "color.ui=never",
    "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--binary",
    "--full-index", "--no-renames", "--diff-algorithm=myers", "--indent-heuristic",
    "--src-prefix=a/", "--dst-prefix=b/", "-U3",
)


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    short: str
    author: str
    author_email: str
    date: datetime  # author date, in the author's time zone
    message: str  # first line only
    parents: tuple[str, ...] = field(default_factory=tuple)


class GitRepo:
    """A git work tree, found by walking up from `path`."""

    def __init__(self, path: str | os.PathLike[str] = "."):
        self.root = _find_work_tree(Path(path))
        try:
            self._repo = Repo(str(self.root))
        except NotGitRepository as err:
            raise NotARepoError(f"not a git repository: {self.root}") from err
        self._store = self._repo.object_store

    def __repr__(self) -> str:
        return f"GitRepo({str(self.root)!r})"

    def close(self) -> None:
        """Release open pack files (long-running processes should not rely on GC)."""
        self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def head_commit(self) -> str | None:
        """Sha of the commit HEAD points at, or None in a repo without commits."""
        _, sha = self._repo.refs.follow(Ref(b"HEAD"))
        if sha is None or ObjectID(sha) not in self._store:
            return None
        return sha.decode("ascii")

    def branch(self) -> str | None:
        """Current branch name, or None when HEAD is detached."""
        contents = self._repo.refs.read_ref(Ref(b"HEAD"))
        prefix = b"ref: refs/heads/"
        if contents is None or not contents.startswith(prefix):
            return None
        return contents[len(prefix):].strip().decode("utf-8", "replace")

    def has_commits(self) -> bool:
        """True when HEAD points at a commit (false on an unborn branch)."""
        return self.head_commit() is not None

    def has_commit(self, sha: str) -> bool:
        """Whether the object database holds commit `sha` (40 hex), reachable from a ref or not."""
        return bool(re.fullmatch(r"[0-9a-f]{40}", sha)) and isinstance(self._get(sha.encode("ascii")), Commit)

    def is_shallow(self) -> bool:
        return bool(self._repo.get_shallow())

    def shallow_commits(self) -> set[bytes]:
        """Commits whose parents are missing in a shallow clone (raw hex shas)."""
        return set(self._repo.get_shallow())

    # History code reads thousands of trees and blobs: plain values, no dulwich object leaves here.
    def tree_items(self, sha: bytes) -> dict[bytes, tuple[int, bytes]]:
        """{name: (mode, sha)} of a tree object; {} when it is absent or not a tree."""
        obj = self._get(sha)
        if not isinstance(obj, Tree):
            return {}
        return {e.path: (e.mode, e.sha) for e in obj.iteritems()}

    def commit_trees(self, sha: str, shallow: set[bytes] | None = None) -> tuple[bytes | None, bytes | None]:
        """(tree, first parent's tree) of a commit; the parent's is None for a root commit, a
        shallow boundary, or a parent missing from a partial clone."""
        commit = self._get(sha.encode("ascii"))
        if not isinstance(commit, Commit):
            return None, None
        shallow = self.shallow_commits() if shallow is None else shallow
        parent_tree = None
        if commit.parents and commit.id not in shallow:
            parent = self._get(commit.parents[0])
            parent_tree = parent.tree if isinstance(parent, Commit) else None
        return commit.tree, parent_tree

    def blob_bytes(self, sha: bytes) -> bytes:
        """A blob's content; KeyError when it is not in the object database."""
        return self._store[ObjectID(sha)].as_raw_string()

    def is_dirty(self) -> bool:
        """Tracked changes vs HEAD, staged or not.  Untracked files are ignored.

        Shells out because `git status` refreshes stat info in the index the
        way users expect; a stat-only change must not count as dirty.
        """
        out = self.run_git("status", "--porcelain=v1", "--untracked-files=no", "-z")
        return out != ""

    def dirty_diff_hash(self) -> str | None:
        """xxh3-128 hex of `git diff HEAD` (binary-safe, config-independent), or None if clean."""
        base = self.head_commit() or EMPTY_TREE_SHA
        out = self._run_git_bytes(*_STABLE_DIFF_ARGS, base, "--")
        if not out:
            return None
        return xxhash.xxh3_128_hexdigest(out)

    # -------------------------------------------------------------- revisions

    def resolve(self, rev: str) -> str:
        """Full sha of the commit `rev` names (sha prefix, branch, tag, HEAD~2, ...)."""
        base, suffixes = _split_revision(rev)
        if base is None:
            raise RevisionError(f"unknown revision '{rev}'")
        sha = self._resolve_base(base, rev)
        commit = self._peel_to_commit(sha, rev)
        for suffix in suffixes:
            commit = self._apply_suffix(commit, suffix, rev)
        return commit.id.decode("ascii")

    def _resolve_base(self, base: str, rev: str) -> bytes:
        if base in ("HEAD", "@"):
            head = self.head_commit()
            if head is None:
                raise RevisionError(f"unknown revision '{rev}'",
                                    hint="the repository has no commits yet")
            return head.encode("ascii")
        if len(base) == 40 and _HEX.fullmatch(base):
            sha = base.lower().encode("ascii")
            if ObjectID(sha) in self._store:
                return sha
        from_ref = self._resolve_ref_name(base)
        if from_ref is not None:
            return from_ref
        if len(base) >= _MIN_PREFIX_LEN and _HEX.fullmatch(base):
            return self._resolve_prefix(base.lower(), rev)
        raise RevisionError(f"unknown revision '{rev}'")

    def _resolve_ref_name(self, name: str) -> bytes | None:
        """Sha a ref name points at, using git's lookup order (gitrevisions(7))."""
        if not _is_plausible_ref_name(name):
            return None
        raw = name.encode("utf-8")
        candidates = [b"refs/" + raw, b"refs/tags/" + raw, b"refs/heads/" + raw,
                      b"refs/remotes/" + raw, b"refs/remotes/" + raw + b"/HEAD"]
        if _PSEUDO_REF.fullmatch(name) or name.startswith("refs/"):
            # Like git, only full ref names and all-caps names (FETCH_HEAD, ORIG_HEAD) are
            # read as given, so "config" or "index" in .git never parse as refs.
            candidates.insert(0, raw)
        for candidate in candidates:
            try:
                _, sha = self._repo.refs.follow(Ref(candidate))
                if sha is not None and _HEX.fullmatch(sha.decode("ascii")) and ObjectID(sha) in self._store:
                    return sha
            except (KeyError, ValueError, OSError, UnicodeDecodeError):
                continue
        return None

    def _resolve_prefix(self, prefix: str, rev: str) -> bytes:
        matches = list(self._store.iter_prefix(prefix.encode("ascii")))
        if len(matches) > 1:
            # Like git, prefer the unique commit-ish when a short sha is ambiguous.
            matches = [sha for sha in matches if self._is_commitish(sha)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise RevisionError(f"ambiguous revision '{rev}'",
                                hint="use more characters of the commit sha")
        raise RevisionError(f"unknown revision '{rev}'")

    def _is_commitish(self, sha: bytes) -> bool:
        try:
            self._peel_to_commit(sha, sha.decode("ascii"))
        except RevisionError:
            return False
        return True

    def _peel_to_commit(self, sha: bytes, rev: str) -> Commit:
        obj = self._get(sha)
        while isinstance(obj, Tag):
            obj = self._get(obj.object[1])
        if not isinstance(obj, Commit):
            raise RevisionError(f"unknown revision '{rev}'", hint=f"'{rev}' does not name a commit")
        return obj

    def _apply_suffix(self, commit: Commit, suffix: str, rev: str) -> Commit:
        if suffix.startswith("^{"):
            return commit  # ^{commit} / ^{} : already peeled to a commit
        count = int(suffix[1:]) if len(suffix) > 1 else 1
        if suffix[0] == "~":
            for _ in range(count):
                commit = self._parent(commit, 0, rev)
            return commit
        if count == 0:
            return commit
        return self._parent(commit, count - 1, rev)

    def _parent(self, commit: Commit, index: int, rev: str) -> Commit:
        hint = None
        if self.is_shallow():
            hint = "this is a shallow clone; run `git fetch --unshallow` for the full history"
        if index >= len(commit.parents) or commit.id in self._repo.get_shallow():
            raise RevisionError(f"unknown revision '{rev}'", hint=hint)
        parent = self._get(commit.parents[index])
        if not isinstance(parent, Commit):
            raise RevisionError(f"unknown revision '{rev}'", hint=hint)
        return parent

    def _get(self, sha: bytes) -> ShaFile | None:
        try:
            return self._store[ObjectID(sha)]
        except KeyError:
            return None

    # ------------------------------------------------------------------ trees

    def read_blob(self, rev: str, relpath: str | os.PathLike[str]) -> bytes | None:
        """Contents of a regular file at `rev`, or None if absent (or not a regular file)."""
        parts = split_repo_path(relpath)
        commit = self._peel_to_commit(self.resolve(rev).encode("ascii"), rev)
        entry = self._lookup_path(commit.tree, parts)
        if entry is None or not _is_regular_file(entry[0]):
            return None
        blob = self._get(entry[1])
        return blob.as_raw_string() if isinstance(blob, Blob) else None

    def list_files(self, rev: str, suffix: str = ".mlvc") -> list[str]:
        """Repo-relative POSIX paths of regular files at `rev` whose name ends with suffix.

        Submodules are skipped (their content lives in another repository), and
        so are symlinks (their blob is a link target, not file content).
        """
        commit = self._peel_to_commit(self.resolve(rev).encode("ascii"), rev)
        wanted = suffix.encode("utf-8")
        found: list[str] = []
        for path, mode in self._iter_tree(commit.tree, b""):
            if _is_regular_file(mode) and path.endswith(wanted):
                found.append(path.decode("utf-8", "surrogateescape"))
        return sorted(found)

    def tree_files(self, rev: str) -> list[tuple[str, int, str]]:
        """(repo-relative POSIX path, mode, blob sha) of every regular file at `rev`, sorted
        (submodules and symlinks skipped, as in `list_files`)."""
        commit = self._peel_to_commit(self.resolve(rev).encode("ascii"), rev)
        out = []
        for path, mode, sha in self._iter_tree_shas(commit.tree, b""):
            if _is_regular_file(mode):
                out.append((path.decode("utf-8", "surrogateescape"), mode, sha.decode("ascii")))
        return sorted(out)

    def blob(self, sha: str) -> bytes:
        """The contents of the blob `sha` (from `tree_files`)."""
        obj = self._get(sha.encode("ascii"))
        if not isinstance(obj, Blob):
            raise GitError(f"{sha} is not a blob")
        return obj.as_raw_string()

    def _iter_tree_shas(self, tree_sha: bytes, prefix: bytes) -> Iterator[tuple[bytes, int, bytes]]:
        tree = self._get(tree_sha)
        if not isinstance(tree, Tree):
            return
        for entry in tree.iteritems():
            path = prefix + entry.path
            if stat.S_ISDIR(entry.mode):
                yield from self._iter_tree_shas(entry.sha, path + b"/")
            else:
                yield path, entry.mode, entry.sha

    def _iter_tree(self, tree_sha: bytes, prefix: bytes) -> Iterator[tuple[bytes, int]]:
        tree = self._get(tree_sha)
        if not isinstance(tree, Tree):
            return
        for entry in tree.iteritems():
            path = prefix + entry.path
            if stat.S_ISDIR(entry.mode):
                yield from self._iter_tree(entry.sha, path + b"/")
            else:
                yield path, entry.mode

    def _lookup_path(self, tree_sha: bytes, parts: list[bytes]) -> tuple[int, bytes] | None:
        mode, sha = stat.S_IFDIR, tree_sha
        for part in parts:
            if not stat.S_ISDIR(mode):
                return None
            tree = self._get(sha)
            if not isinstance(tree, Tree):
                return None
            try:
                mode, sha = tree[part]
            except KeyError:
                return None
        return mode, sha

    # ---------------------------------------------------------------- history

    def commit_info(self, sha: str) -> CommitInfo:
        commit = self._peel_to_commit(self.resolve(sha).encode("ascii"), sha)
        return _commit_info(commit)

    def walk(self, rev: str = "HEAD", paths: Iterable[str] | None = None,
             since: datetime | None = None, max_count: int | None = None) -> Iterator[CommitInfo]:
        """Commits reachable from `rev`, newest first (by commit date, like `git log`).

        With `paths`, only commits whose tree differs from their first parent's
        at one of those repo-relative paths (a file, or a directory meaning
        anything below it); an empty list therefore matches nothing.  `since`
        (naive datetimes are local time) compares commit dates like
        `git log --since` and stops descending below older commits.
        Walking HEAD of a repo without commits yields nothing.
        """
        if rev == "HEAD" and not self.has_commits():
            return
        start = self.resolve(rev).encode("ascii")
        trie = PathTrie.build(paths) if paths is not None else None
        since_ts = since.timestamp() if since is not None else None
        yield from self._walk_from([start], trie, since_ts, max_count)

    def all_commits(self) -> list[CommitInfo]:
        """Every commit reachable from HEAD or any ref (branches, tags, remotes, stash), newest first."""
        return list(self._walk_from(self._ref_commits(), None, None, None))

    def branch_heads(self) -> dict[str, str]:
        """Local branch name -> sha of its head commit."""
        return self._refs_under(b"refs/heads/")

    def tags(self) -> dict[str, str]:
        """Tag name -> sha of the commit it points at (annotated tags peeled)."""
        return self._refs_under(b"refs/tags/")

    def _refs_under(self, base: bytes) -> dict[str, str]:
        result: dict[str, str] = {}
        for name, sha in self._repo.refs.as_dict(Ref(base)).items():
            commit = self._peel_or_none(sha)
            if commit is not None:
                result[name.decode("utf-8", "replace")] = commit.id.decode("ascii")
        return dict(sorted(result.items()))

    def _ref_commits(self) -> list[bytes]:
        shas: set[bytes] = set(self._repo.refs.as_dict(Ref(b"refs/")).values())
        head = self.head_commit()
        if head is not None:
            shas.add(head.encode("ascii"))
        commits = (self._peel_or_none(sha) for sha in shas)
        return [commit.id for commit in commits if commit is not None]

    def _peel_or_none(self, sha: bytes) -> Commit | None:
        try:
            return self._peel_to_commit(sha, sha.decode("ascii"))
        except RevisionError:
            return None

    def _walk_from(self, starts: list[bytes], trie: PathTrie | None,
                   since_ts: float | None, max_count: int | None) -> Iterator[CommitInfo]:
        if max_count is not None and max_count <= 0:
            return
        shallow = self.shallow_commits()
        trees = TreeCache(self._store)
        emitted = 0
        for commit in self._commits_by_date(starts, shallow, since_ts):
            if trie is not None and not self._touches(commit, trie, trees, shallow):
                continue
            yield _commit_info(commit)
            emitted += 1
            if max_count is not None and emitted >= max_count:
                return

    def _commits_by_date(self, starts: list[bytes], shallow: set[bytes],
                         since_ts: float | None) -> Iterator[Commit]:
        """Commits newest first, each once; a priority queue on commit time like git log."""
        queue: list[tuple[int, int, Commit]] = []
        seen: set[bytes] = set()
        order = 0

        def push(sha: bytes) -> None:
            nonlocal order
            if sha in seen:
                return
            seen.add(sha)
            commit = self._get(sha)
            if isinstance(commit, Commit):  # missing objects: shallow or partial clone
                order += 1
                heapq.heappush(queue, (-commit.commit_time, order, commit))

        for sha in starts:
            push(sha)
        while queue:
            _, _, commit = heapq.heappop(queue)
            if since_ts is not None and commit.commit_time < since_ts:
                continue
            yield commit
            if commit.id not in shallow:
                for parent in commit.parents:
                    push(parent)

    def _touches(self, commit: Commit, trie: PathTrie, trees: TreeCache,
                 shallow: set[bytes]) -> bool:
        parent_tree = None
        if commit.parents and commit.id not in shallow:
            parent = self._get(commit.parents[0])
            if isinstance(parent, Commit):
                parent_tree = parent.tree
        return trees_differ(trees, commit.tree, parent_tree, trie)

    # ------------------------------------------------------------- git CLI

    def run_git(self, *args: str) -> str:
        """Run `git <args>` in the work tree and return its stdout as text."""
        return self._run_git_bytes(*args).decode("utf-8", "replace")

    def checkout(self, rev: str, force: bool = False) -> None:
        """`git checkout` (shelled out: dulwich's checkout lacks git's safety checks,
        filters and sparse/submodule handling, so users would see different results)."""
        args = ["checkout", "--quiet"]
        if force:
            args.append("--force")
        self.run_git(*args, rev, "--")

    def _run_git_bytes(self, *args: str) -> bytes:
        proc = gitcli.run(self.root, *args)
        if proc.returncode != 0:
            raise GitError(first_error_line(proc.stderr) or
                           f"git {' '.join(args)} failed with status {proc.returncode}")
        return proc.stdout

    # ------------------------------------------------------------------ hooks

    def hooks_dir(self) -> Path:
        """Where git looks for hooks: core.hooksPath when set, else <common git dir>/hooks."""
        try:
            configured = self._repo.get_config_stack().get((b"core",), b"hooksPath")
        except KeyError:
            configured = None
        if configured:
            path = Path(os.path.expanduser(configured.decode("utf-8")))
            # git runs hooks from the top of the work tree, so relative paths start there.
            return path if path.is_absolute() else self.root / path
        return Path(self._repo.commondir()) / "hooks"


# ------------------------------------------------------------------ helpers


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_git_url(text: str) -> bool:
    """Whether git reads `text` as a URL rather than a local path: `scheme://...`, or the scp-like
    `[user@]host:path` (a colon before the first slash, not a Windows drive letter), as git does."""
    if _URL_SCHEME.match(text):
        return True
    colon = text.find(":")
    if colon <= 0:
        return False
    slash = text.find("/")
    if 0 <= slash < colon:
        return False
    return not (colon == 1 and text[0].isalpha())  # C:\path


def _find_work_tree(start: Path) -> Path:
    found = find_git_root(start.resolve())
    if found is not None:
        return found
    raise NotARepoError(f"not a git repository (or any parent up to /): {start}",
                        hint="run `git init` first")


def _split_revision(rev: str) -> tuple[str | None, list[str]]:
    """Split 'main~2^2' into ('main', ['~2', '^2']); base None when malformed."""
    cut = min((i for i in (rev.find("~"), rev.find("^")) if i >= 0), default=len(rev))
    base, tail = rev[:cut], rev[cut:]
    suffixes = _REV_SUFFIX.findall(tail)
    if not base or "".join(suffixes) != tail:
        return None, []
    if any(s.startswith("^{") and s not in ("^{}", "^{commit}") for s in suffixes):
        return None, []
    return base, suffixes


def _is_plausible_ref_name(name: str) -> bool:
    """Reject names git would refuse; they must never become paths inside .git."""
    if name.startswith(("/", "-", ".")) or name.endswith(("/", ".lock", ".")):
        return False
    if ".." in name or "//" in name or "@{" in name or "/." in name:
        return False
    return not any(ch in name for ch in " ~^:?*[\\") and all(ord(ch) >= 32 and ord(ch) != 127 for ch in name)


def _is_regular_file(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _commit_info(commit: Commit) -> CommitInfo:
    encoding = (commit.encoding or b"utf-8").decode("ascii", "replace")
    author = _decode(commit.author, encoding)
    name, _, email = author.partition(" <")
    tz = timezone(timedelta(seconds=commit.author_timezone))
    lines = _decode(commit.message, encoding).splitlines()
    sha = commit.id.decode("ascii")
    return CommitInfo(
        sha=sha,
        short=sha[:7],
        author=name.strip(),
        author_email=email.rstrip(">").strip(),
        date=datetime.fromtimestamp(commit.author_time, tz),
        message=lines[0].strip() if lines else "",
        parents=tuple(p.decode("ascii") for p in commit.parents),
    )


def _decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding, "replace")
    except LookupError:  # unknown encoding header
        return raw.decode("utf-8", "replace")
