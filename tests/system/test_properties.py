"""Property tests (hypothesis): what mlvc stores always comes back byte-exact.

(a) chunk / reassemble round trips for random bytes and random edits, through a PackStore;
(b) add / checkout round trips of random small trees (unicode names, spaces, deep nesting,
    empty files, exec bits) in a real repository through the CLI;
(c) after a random sequence of edits, adds and commits and `gc --all-commits --grace 0`,
    every committed version restores byte-exact (`mlvc checkout --to DIR REV`).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from helpers import GIT_ENV, git, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlvc.chunking import ChunkerParams, iter_chunks
from mlvc.hashing import digest
from mlvc.objects import FileManifest
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import FILE_MANIFEST
from mlvc.store.packstore import PackStore, Role

SMALL = ChunkerParams(64, 512, 2048)  # many chunks from a few KiB: boundaries are exercised
PROFILE = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------- (a) chunking


def _chunks(data: bytes, params: ChunkerParams, block: int | None = None) -> list[bytes]:
    kw = {"block": block} if block else {}
    return [bytes(c) for c in iter_chunks(io.BytesIO(data), params, **kw)]


def _store_and_reassemble(data: bytes, params: ChunkerParams, backend: MemoryBackend, scratch: Path) -> bytes:
    store = PackStore(backend, role=Role.REMOTE, scratch=scratch, fsync=False, pack_size=64 << 10)
    try:
        refs = []
        for chunk in _chunks(data, params):
            oid, _new = store.put_chunk(chunk)
            refs.append((oid, len(chunk)))
        fid = digest(data)
        store.put_object(FILE_MANIFEST, fid, FileManifest(fid, len(data), params, tuple(refs)).encode())
        store.commit()
    finally:
        store.close()
    fresh = PackStore(backend, role=Role.REMOTE, scratch=scratch, fsync=False)
    try:
        manifest = FileManifest.decode(fresh.get(FILE_MANIFEST, fid), expect_id=fid)
        assert manifest.size == len(data) and manifest.chunker == params
        return b"".join(bytes(c) for c in fresh.iter_chunks(manifest.chunks))
    finally:
        fresh.close()


edits = st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.floats(0, 1),
                           st.binary(min_size=1, max_size=300)), min_size=1, max_size=4)


def _apply(data: bytes, edit) -> tuple[bytes, int]:
    """The edited bytes and the first offset the edit touched."""
    op, where, payload = edit
    pos = int(where * len(data))
    if op == "insert":
        return data[:pos] + payload + data[pos:], pos
    if op == "delete":
        return data[:pos] + data[pos + len(payload):], pos
    return data[:pos] + payload + data[pos + len(payload):], pos


@settings(PROFILE, max_examples=8)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 1_500_000))
def test_default_chunker_round_trip(seed, size):
    import random

    data = random.Random(seed).randbytes(size)
    params = ChunkerParams()
    chunks = _chunks(data, params, block=300_000)
    assert b"".join(chunks) == data and all(len(c) <= params.max_size for c in chunks)
    with tempfile.TemporaryDirectory() as scratch:
        assert _store_and_reassemble(data, params, MemoryBackend(), Path(scratch)) == data


# ---------------------------------------------------------------------- (b) trees through the CLI


NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0")
names = st.text(NAME_CHARS, min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..") and "mlvc" not in n.lower() and not n.startswith(".git")
    and len(n.encode()) < 200 and n == n.strip("\n"))
trees = st.dictionaries(st.lists(names, min_size=1, max_size=6).map(tuple),
                        st.tuples(st.binary(max_size=3000), st.booleans()), min_size=1, max_size=12)


def _prefix_free(tree: dict) -> dict:
    """Drop paths that are a directory of another path (a file cannot also be a directory)."""
    paths = sorted(tree, key=len)
    kept: dict = {}
    for p in paths:
        if any(p[:len(q)] == q for q in kept) or any(q[:len(p)] == p for q in kept):
            continue
        kept[p] = tree[p]
    return kept


def _new_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    ok(repo, "init", "-q")
    return repo


def _write_tree(base: Path, tree: dict) -> None:
    for parts, (body, executable) in tree.items():
        p = base.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
        os.chmod(p, 0o755 if executable else 0o644)


def _read_tree(base: Path) -> dict:
    out = {}
    for d, _dirs, files in os.walk(base):
        for f in files:
            p = Path(d) / f
            out[p.relative_to(base).parts] = (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
    return out


@settings(PROFILE, max_examples=15)
@given(tree=trees.map(_prefix_free), dirname=names)
def test_add_checkout_round_trip_of_random_trees(tree, dirname, monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    with tempfile.TemporaryDirectory() as tmp:
        repo = _new_repo(Path(tmp))
        _write_tree(repo / dirname, tree)
        ok(repo, "add", "-q", "--", dirname)  # a name like "-0" is a path after "--", as in git
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "tree")
        shutil.rmtree(repo / dirname)
        ok(repo, "checkout", "-q")
        assert _read_tree(repo / dirname) == tree
        ok(repo, "status", "-q")
        ok(repo, "checkout", "-q", "--to", str(Path(tmp) / "export"), "HEAD")
        assert _read_tree(Path(tmp) / "export" / dirname) == tree
        ok(repo, "verify", "-q")


# ---------------------------------------------------------------------- (c) history survives gc

steps = st.lists(st.tuples(st.sampled_from(["new", "edit", "delete", "model", "uncommitted"]),
                           st.integers(0, 2**32)), min_size=2, max_size=7)


@settings(PROFILE, max_examples=10)
@given(plan=steps)
def test_every_committed_version_restores_after_gc(plan, monkeypatch):
    import random

    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    with tempfile.TemporaryDirectory() as tmp:
        repo = _new_repo(Path(tmp))
        rng = random.Random(len(plan))
        _write_tree(repo / "data", {("seed.bin",): (rng.randbytes(5000), False)})
        (repo / "model.bin").write_bytes(rng.randbytes(300_000))
        history: list[tuple[str, dict, bytes]] = []
        garbage = False
        for n, (op, seed) in enumerate(plan):
            r = random.Random(seed)
            files = sorted((repo / "data").rglob("*"))
            files = [f for f in files if f.is_file()]
            if op == "new":
                write = repo / "data" / f"d{r.randrange(3)}" / f"n{n}.bin"
                write.parent.mkdir(parents=True, exist_ok=True)
                write.write_bytes(r.randbytes(r.randrange(0, 150_000)))
            elif op == "edit":
                victim = r.choice(files)
                body = victim.read_bytes()
                pos = r.randrange(len(body) + 1)
                victim.write_bytes(body[:pos] + r.randbytes(r.randrange(1, 2000)) + body[pos + 500:])
            elif op == "delete" and len(files) > 1:
                r.choice(files).unlink()
            elif op == "model":
                body = (repo / "model.bin").read_bytes()
                pos = r.randrange(len(body))
                (repo / "model.bin").write_bytes(body[:pos] + r.randbytes(4096) + body[pos:])
            ok(repo, "add", "-q", "data", "model.bin")
            if op == "uncommitted" and history:
                garbage = True
                # a version added but never committed: garbage for gc --all-commits
                (repo / "model.bin").write_bytes(r.randbytes(200_000))
                ok(repo, "add", "-q", "model.bin")
                subprocess.run(["git", "checkout", "-q", "--", "model.bin.mlvc"], cwd=repo, check=False)
                ok(repo, "checkout", "-q", "--force", "model.bin")
                continue
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", f"step {n}")
            sha = git(repo, "rev-parse", "HEAD").strip()
            history.append((sha, _read_tree(repo / "data"), (repo / "model.bin").read_bytes()))
        out = ok(repo, "gc", "--all-commits", "--grace", "0")
        assert ("removed 0 objects" in out) != garbage, out  # something went, when there was garbage
        ok(repo, "verify", "-q")
        for i, (sha, data, model) in enumerate(history):
            out = Path(tmp) / f"v{i}"
            ok(repo, "checkout", "-q", "--to", str(out), sha)
            assert _read_tree(out / "data") == data
            assert (out / "model.bin").read_bytes() == model
        if history:
            git(repo, "checkout", "-q", history[0][0])
            ok(repo, "checkout", "-q", "--force")
            assert _read_tree(repo / "data") == history[0][1]
            assert (repo / "model.bin").read_bytes() == history[0][2]
