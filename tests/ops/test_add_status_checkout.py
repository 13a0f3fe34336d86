"""The issue's core flow on a real git repo: add, commit, change, status, add, checkout v1."""

import hashlib
import io
import os
import random

import pytest

from mlvc.errors import ConflictError, CorruptObjectError, FileChangedError, PathError
from mlvc.ops.add import add
from mlvc.ops.checkout import checkout
from mlvc.ops.status import MISSING, MODIFIED, UNCHANGED, status
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK

from helpers import git


def digest_tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def make_workspace(root, seed=0, n_files=300, model_mb=4):
    rng = random.Random(seed)
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "checkpoints" / "model.pt").write_bytes(rng.randbytes(model_mb << 20))
    data = root / "data" / "processed"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        (data / f"part-{i // 100}" / f"s{i}.txt").parent.mkdir(exist_ok=True)
        (data / f"part-{i // 100}" / f"s{i}.txt").write_text(f"sample {i} {rng.random()}\n" * 20)


def fresh(root):
    return Repo.find(root)


def test_full_flow_restores_v1_bytes(repo_dir):
    make_workspace(repo_dir)
    r = fresh(repo_dir)
    res = add(r, ["checkpoints", "data/processed"])
    assert [x.kind for x in res] == ["dir", "dir"]
    assert (repo_dir / "checkpoints.mlvc").exists() and (repo_dir / "data" / "processed.mlvc").exists()
    assert "/checkpoints" in (repo_dir / ".gitignore").read_text()
    assert "/processed" in (repo_dir / "data" / ".gitignore").read_text()
    git(repo_dir, "add", "-A")
    git(repo_dir, "commit", "-qm", "v1")
    assert "checkpoints/model.pt" not in git(repo_dir, "ls-files")
    v1 = digest_tree(repo_dir / "checkpoints") | digest_tree(repo_dir / "data")

    # fine-tune: rewrite ~10% of the model in the middle, edit two data files, add one, delete one
    model = repo_dir / "checkpoints" / "model.pt"
    b = bytearray(model.read_bytes())
    b[len(b) // 2: len(b) // 2 + len(b) // 10] = os.urandom(len(b) // 10)
    model.write_bytes(bytes(b))
    data = repo_dir / "data" / "processed"
    (data / "part-0" / "s1.txt").write_text("edited\n")
    (data / "part-1" / "s150.txt").write_text("edited too\n")
    (data / "part-2" / "new.txt").write_text("new\n")
    (data / "part-0" / "s2.txt").unlink()

    st = {s.path: s for s in status(fresh(repo_dir))}
    assert st["checkpoints"].state == MODIFIED and st["checkpoints"].modified == ["model.pt"]
    d = st["data/processed"]
    assert d.state == MODIFIED
    assert d.modified == ["part-0/s1.txt", "part-1/s150.txt"]
    assert d.added == ["part-2/new.txt"] and d.removed == ["part-0/s2.txt"]

    r = fresh(repo_dir)
    res2 = add(r, ["checkpoints", "data/processed"])
    # content-defined chunking: the rewritten 10% plus a few boundary chunks are new
    assert res2[0].new_bytes < 0.2 * res2[0].size
    git(repo_dir, "commit", "-qam", "v2")
    assert all(s.state == UNCHANGED for s in status(fresh(repo_dir)))

    git(repo_dir, "checkout", "-q", "HEAD~1")
    result = checkout(fresh(repo_dir))
    assert not result.failed and sorted(result.restored) == ["checkpoints", "data/processed"]
    assert digest_tree(repo_dir / "checkpoints") | digest_tree(repo_dir / "data") == v1
    assert not (data / "part-2" / "new.txt").exists()
    assert all(s.state == UNCHANGED for s in status(fresh(repo_dir)))


def test_readd_unchanged_uses_hash_cache(repo_dir):
    make_workspace(repo_dir, n_files=50, model_mb=1)
    # make the files "old" so the racy-timestamp rule lets the hash cache trust them
    for d, _, files in os.walk(repo_dir / "data"):
        for f in files:
            os.utime(os.path.join(d, f), ns=(1_600_000_000_000_000_000,) * 2)
    first = add(fresh(repo_dir), ["data/processed"])[0]
    assert first.hashed_files == 50
    again = add(fresh(repo_dir), ["data/processed"])[0]
    assert again.hashed_files == 0 and again.oid == first.oid and not again.changed


def test_insertion_at_front_still_dedups(repo_dir):
    rng = random.Random(1)
    body = rng.randbytes(8 << 20)
    f = repo_dir / "w.bin"
    f.write_bytes(body)
    add(fresh(repo_dir), ["w.bin"])
    f.write_bytes(rng.randbytes(100_000) + body)
    res = add(fresh(repo_dir), ["w.bin"])[0]
    assert res.new_bytes < 0.05 * res.size


def test_status_reports_missing_workspace_and_missing_cache(repo_dir):
    (repo_dir / "a.bin").write_bytes(os.urandom(1000))
    add(fresh(repo_dir), ["a.bin"])
    (repo_dir / "a.bin").unlink()
    (st,) = status(fresh(repo_dir))
    assert st.state == MISSING and st.cache_complete is True
    # delete the cache (only the cache): status must say objects are missing; the marks of
    # what was complete live inside the store and go with it
    import shutil

    shutil.rmtree(repo_dir / ".mlvc" / "cache")
    (st,) = status(fresh(repo_dir))
    assert st.cache_complete is False


def test_checkout_refuses_to_overwrite_unsaved_work_then_force(repo_dir):
    (repo_dir / "m.bin").write_bytes(b"v1" * 1000)
    add(fresh(repo_dir), ["m.bin"])
    (repo_dir / "m.bin").write_bytes(b"never added")
    result = checkout(fresh(repo_dir))
    assert "never added" in str(result.failed["m.bin"]) and result.failed_codes["m.bin"] == ConflictError.exit_code
    assert (repo_dir / "m.bin").read_bytes() == b"never added"
    assert not checkout(fresh(repo_dir), force=True).failed
    assert (repo_dir / "m.bin").read_bytes() == b"v1" * 1000


def test_checkout_removes_files_not_in_manifest_only_if_known(repo_dir):
    d = repo_dir / "ds"
    d.mkdir()
    (d / "a").write_text("a")
    add(fresh(repo_dir), ["ds"])
    (d / "b").write_text("b")
    add(fresh(repo_dir), ["ds"])  # b is now known to the cache
    ptr_v2 = (repo_dir / "ds.mlvc").read_text()
    (d / "b").unlink()
    add(fresh(repo_dir), ["ds"])
    (d / "b").write_text("b")  # known content: may be removed
    (d / "c").write_text("unsaved")  # unknown: conflict
    res = checkout(fresh(repo_dir))
    assert "ds" in res.failed and (d / "c").exists()
    (d / "c").unlink()
    res = checkout(fresh(repo_dir))
    assert not res.failed and not (d / "b").exists()
    (repo_dir / "ds.mlvc").write_text(ptr_v2)
    assert not checkout(fresh(repo_dir)).failed and (d / "b").read_text() == "b"


def test_corrupt_chunk_leaves_workspace_untouched(repo_dir):
    (repo_dir / "m.bin").write_bytes(os.urandom(3 << 20))
    add(fresh(repo_dir), ["m.bin"])
    (repo_dir / "m.bin").write_bytes(b"other version, known")
    add(fresh(repo_dir), ["m.bin"])
    ptr_v2 = (repo_dir / "m.bin.mlvc").read_text()
    git(repo_dir, "add", "-A")
    git(repo_dir, "commit", "-qm", "x")
    r = fresh(repo_dir)
    # flip a byte inside the largest pack (holds the 3 MiB version's chunks)
    pack = max((repo_dir / ".mlvc" / "cache" / "packs").glob("*.pack"), key=lambda p: p.stat().st_size)
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    r.close()
    # point back at the first version (whose chunks are damaged)
    first_id = [line for line in ptr_v2.splitlines()]
    assert first_id
    from mlvc.pointer import PointerFile, load, write

    p = load(repo_dir / "m.bin.mlvc")
    from mlvc.hashing import to_oid
    store = fresh(repo_dir).store
    big = [oid for oid in store.iter_ids(1)]
    target = [o for o in big if to_oid(o) != p.oid][0]
    write(repo_dir / "m.bin.mlvc", PointerFile(p.path, "file", to_oid(target), 3 << 20, 1))
    res = checkout(fresh(repo_dir))
    assert isinstance(res.failed["m.bin"], CorruptObjectError) and "corrupt" in str(res.failed["m.bin"])
    assert (repo_dir / "m.bin").read_bytes() == b"other version, known"
    assert not [p for p in repo_dir.iterdir() if "mlvc-tmp" in p.name]


def test_file_changing_while_added_is_detected(repo_dir, monkeypatch):
    f = repo_dir / "grow.bin"
    f.write_bytes(os.urandom(2 << 20))
    import mlvc.ops.add as add_mod

    real = add_mod.iter_chunks

    def chunks_then_append(fobj, params, **kw):
        for i, c in enumerate(real(fobj, params, **kw)):
            if i == 3:
                with open(f, "ab") as w:  # another process appends mid-read
                    w.write(b"more")
            yield c

    monkeypatch.setattr(add_mod, "iter_chunks", chunks_then_append)
    with pytest.raises(FileChangedError):
        add(fresh(repo_dir), ["grow.bin"])
    assert not (repo_dir / "grow.bin.mlvc").exists()


@pytest.mark.parametrize("path, reason", [
    ("..", "outside the repository"),
    ("nope", "does not exist"),
    ("../nope", "does not exist"),  # not "outside the repository" (issue 22)
    (".git", "inside .git"),
    (".mlvc/config", "inside .mlvc"),
    (".", "repository root"),
])
def test_bad_paths(repo_dir, path, reason):
    with pytest.raises(PathError) as exc:
        add(fresh(repo_dir), [path])
    assert reason in str(exc.value)


def test_symlinks_are_refused(repo_dir):
    (repo_dir / "real").write_text("x")
    (repo_dir / "link").symlink_to(repo_dir / "real")
    with pytest.raises(PathError, match="symlink"):
        add(fresh(repo_dir), ["link"])
    d = repo_dir / "d"
    d.mkdir()
    (d / "inner").symlink_to("/etc/passwd")
    with pytest.raises(PathError, match="symlink"):
        add(fresh(repo_dir), ["d"])


def test_add_never_touches_user_files(repo_dir):
    make_workspace(repo_dir, n_files=20, model_mb=1)
    before = digest_tree(repo_dir / "data")  # keys start with processed/
    stat_before = {p: os.stat(repo_dir / "data" / p).st_mtime_ns for p in before}
    add(fresh(repo_dir), ["data/processed"])
    assert digest_tree(repo_dir / "data" / "processed") == {k[len("processed/"):]: v for k, v in before.items()}
    assert {p: os.stat(repo_dir / "data" / p).st_mtime_ns for p in before} == stat_before


def test_chunks_are_shared_between_versions(repo_dir):
    f = repo_dir / "m.bin"
    f.write_bytes(io.BytesIO(random.Random(3).randbytes(4 << 20)).getvalue())
    add(fresh(repo_dir), ["m.bin"])
    n1 = sum(1 for _ in fresh(repo_dir).store.iter_ids(CHUNK))
    add(fresh(repo_dir), ["m.bin"])
    assert sum(1 for _ in fresh(repo_dir).store.iter_ids(CHUNK)) == n1


def _mixed_directory(root):
    """More files than one read batch of one-chunk files: small raw and compressible ones, copies,
    an empty and an executable file, and a file of several chunks among them."""
    rng = random.Random(7)
    d = root / "ds"
    for i in range(1200):
        p = d / f"g{i // 300}" / f"f{i:04d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(rng.randint(1, 3000)) if i % 3 else f"text {i}\n".encode() * 50)
    (d / "g1" / "copy.bin").write_bytes((d / "g0" / "f0001.bin").read_bytes())
    (d / "g2" / "empty").write_bytes(b"")
    (d / "g2" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (d / "g2" / "run.sh").chmod(0o755)
    (d / "g3" / "big.bin").write_bytes(rng.randbytes(3 << 20))
    return d


def _modes(root):
    return {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}


def test_fresh_directory_restore_writes_every_file_and_mode(repo_dir):
    d = _mixed_directory(repo_dir)
    add(fresh(repo_dir), ["ds"])
    before, modes = digest_tree(d), _modes(d)
    import shutil
    shutil.rmtree(d)
    res = checkout(fresh(repo_dir))
    assert not res.failed and res.written_files == len(before)
    assert digest_tree(d) == before and _modes(d) == modes
    assert [s.state for s in status(fresh(repo_dir))] == [UNCHANGED]


def test_fresh_directory_restore_reads_small_files_in_runs_despite_their_manifests(repo_dir):
    """add writes each small file's manifest beside its chunk; a restore reads the chunks of
    files side by side with one mapped read per run, swallowing the manifests between them,
    not one read per file."""
    d = _mixed_directory(repo_dir)
    add(fresh(repo_dir), ["ds"])
    before = digest_tree(d)
    import shutil
    shutil.rmtree(d)
    r = fresh(repo_dir)
    res = checkout(r)
    assert not res.failed and digest_tree(d) == before
    assert r.store.reads < 60  # 1,204 files, ~1.3 MiB of packs (one read per file: 1,200)
    r.close()


def test_fresh_directory_restore_gives_modes_whatever_the_umask(repo_dir):
    """Files are created with their mode when the umask leaves it whole; under a umask that
    would strip bits (077) they still get 644 and 755, as every restore gives them."""
    d = _mixed_directory(repo_dir)
    add(fresh(repo_dir), ["ds"])
    modes = _modes(d)
    import shutil
    for mask in (0o077, 0o002):
        shutil.rmtree(d)
        old = os.umask(mask)
        try:
            res = checkout(fresh(repo_dir))
        finally:
            os.umask(old)
        assert not res.failed and _modes(d) == modes


def test_fresh_directory_restore_with_a_damaged_small_file_writes_nothing(repo_dir):
    d = _mixed_directory(repo_dir)
    add(fresh(repo_dir), ["ds"])
    victim = (d / "g2" / "f0700.bin").read_bytes()
    import shutil
    shutil.rmtree(d)
    r = fresh(repo_dir)
    from mlvc.hashing import digest
    pack, _codec, offset, stored, _raw = r.store.location(CHUNK, digest(victim))
    r.close()
    with open(repo_dir / ".mlvc" / "cache" / "packs" / f"{pack}.pack", "r+b") as f:
        f.seek(offset + stored // 2)
        byte = f.read(1)
        f.seek(offset + stored // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    res = checkout(fresh(repo_dir))
    assert "corrupt" in str(res.failed["ds"])
    assert not d.exists()
    assert not list((repo_dir / ".mlvc" / "tmp").iterdir())
    assert (res.written_files, res.written_bytes) == (0, 0)  # the files staged before it were discarded


def test_checkout_of_a_directory_status_saw_unchanged_reads_nothing_else(repo_dir):
    d = _mixed_directory(repo_dir)
    add(fresh(repo_dir), ["ds"])
    for p in d.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns - 10 ** 10))
    assert [s.state for s in status(fresh(repo_dir))] == [UNCHANGED]  # records the directory's signature
    import shutil
    shutil.rmtree(repo_dir / ".mlvc" / "cache")  # the tree is gone: only the signature can answer
    res = checkout(fresh(repo_dir))
    assert res.unchanged == ["ds"] and not res.failed
    with open(d / "g0" / "f0002.bin", "ab") as f:
        f.write(b"+")  # another size: the signature no longer matches, the tree is needed
    res = checkout(fresh(repo_dir))
    assert "ds" in res.failed and not res.unchanged
