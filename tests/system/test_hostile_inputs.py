"""Hostile inputs cost nothing: a clear error with its exit code, bounded memory, seconds.

Each case runs the real CLI in a child process, which reports its own peak resident memory.
Small cases are data files in tests/corpus/ (add new ones there), run by test_hostile_corpus.py
against every command that reads them; the large ones (a 50 MB pointer, zstd bombs of 1 GiB, a
tree of 10 M entries, a 1 TB manifest) are built here from a few bytes of code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import zstandard

from mlvc.chunking import ChunkerParams
from mlvc.errors import EXIT_BAD_POINTER, EXIT_CORRUPT, EXIT_DISK
from mlvc.hashing import digest, to_oid
from mlvc.objects import FileManifest
from mlvc.pointer import PointerFile
from mlvc.pointer import write as write_pointer
from mlvc.store.packs import (PACK_HEAD, RECORD, CHUNK, FILE_MANIFEST, TREE_MANIFEST, ZSTD, IndexEntry, encode_index,
                              index_name)

from helpers import GIT_ENV, commit, git

TENSOR = Path(__file__).parents[1] / "corpus" / "expanded-tensor"
MAX_RSS_MIB = 300
MAX_SECONDS = 20  # the answer comes in well under a second here; slack for loaded CI machines


# The child reports its own peak (VmHWM of its address space).  `wait4`'s ru_maxrss would not do:
# a forked child starts with the test process's pages, and exec keeps that high-water mark.
_CHILD = """
import sys
from mlvc.cli.main import run
code = run(sys.argv[2:])
with open("/proc/self/status") as status:
    peak_kib = next(line for line in status if line.startswith("VmHWM")).split()[1]
with open(sys.argv[1], "w") as out:
    out.write(peak_kib)
sys.exit(code)
"""


def run_bounded(cwd: Path, *args: str) -> tuple[int, str, float, float]:
    """Run `mlvc ARGS` in a child; (exit code, stderr, peak RSS in MiB, seconds)."""
    peak_file = cwd.parent / f"peak-{os.getpid()}.txt"
    peak_file.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(peak_file), *args], cwd=cwd,
                          env=dict(os.environ, **GIT_ENV), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    seconds = time.monotonic() - started
    peak_mib = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("inf")  # inf: killed
    return proc.returncode, proc.stderr, peak_mib, seconds


def assert_refused(cwd: Path, args: list[str], codes: set[int], words: str = "") -> str:
    code, err, rss, seconds = run_bounded(cwd, *args)
    assert code in codes, (args, code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert words.lower() in err.lower(), err
    assert rss < MAX_RSS_MIB, f"mlvc {' '.join(args)} peaked at {rss:.0f} MiB"
    assert seconds < MAX_SECONDS, f"mlvc {' '.join(args)} took {seconds:.1f} s"
    return err


def publish_pack(repo_dir: Path, records: list[tuple[int, int, bytes, bytes, int]],
                 packs: Path | None = None) -> None:
    """Write a pack and its index straight into the cache (or into `packs`, a directory remote's
    `packs/`): records are (type, codec, id, payload, declared raw length)."""
    body, entries = bytearray(PACK_HEAD), []
    for typ, codec_id, oid, payload, raw in records:
        body += RECORD.pack(typ, codec_id, oid, len(payload) & 0xFFFFFFFF, raw)
        entries.append(IndexEntry(oid, typ, codec_id, len(body), len(payload), raw))
        body += payload
    idx = encode_index(entries)
    packs = packs or repo_dir / ".mlvc" / "cache" / "packs"
    packs.mkdir(parents=True, exist_ok=True)
    (packs / f"{index_name(idx)}.pack").write_bytes(bytes(body))
    (packs / f"{index_name(idx)}.idx").write_bytes(idx)


def zstd_bomb(expands_to: int = 1 << 30) -> bytes:
    """A ~40 KB zstd frame whose header declares (and which decodes to) `expands_to` zero bytes,
    built without holding them."""
    packer = zstandard.ZstdCompressor().compressobj(size=expands_to)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(expands_to >> 20)) + packer.flush()


def point_at(repo_dir: Path, name: str, kind: str, oid: bytes, size: int, files: int = 1) -> None:
    write_pointer(repo_dir / f"{name}.mlvc", PointerFile(name, kind, to_oid(oid), size, files))


# ------------------------------------------------------------------ pointers


def test_alias_bomb_in_committed_config_is_refused(repo_dir):
    config = repo_dir / ".mlvc" / "config"
    config.write_text(config.read_text() + "x: &a [1,1,1,1,1,1,1,1,1]\n" +
                      "".join(f"x{i}: &a{i} [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" for i in range(1)) +
                      "".join(f"y{i}: [{','.join(['*a0'] * 9)}]\n" for i in range(9)))
    assert_refused(repo_dir, ["remote", "list"], {1}, "anchors and aliases")


def test_fifty_megabyte_pointer_is_refused_unread(repo_dir):
    with open(repo_dir / "model.pt.mlvc", "wb") as f:
        f.write(b"mlvc: 1\nmeta:\n")
        f.write(b"  k: " + b"v" * (50 << 20) + b"\n")
    assert_refused(repo_dir, ["show", "model.pt"], {EXIT_BAD_POINTER}, "more than")


# ------------------------------------------------------------------ packs


def test_zstd_frame_expanding_past_its_declared_length(repo_dir):
    real = b"\0" * (256 << 10)
    bomb = zstd_bomb()  # 40 KB declaring 1 GiB
    fid = digest(real)
    manifest = FileManifest(fid, len(real), ChunkerParams(), ((digest(real), len(real)),)).encode()
    publish_pack(repo_dir, [(CHUNK, ZSTD, digest(real), bomb, len(real)),
                            (FILE_MANIFEST, 0, fid, manifest, len(manifest))])
    point_at(repo_dir, "zeros.bin", "file", fid, len(real))
    assert_refused(repo_dir, ["checkout", "zeros.bin"], {EXIT_CORRUPT}, "corrupt")
    assert_refused(repo_dir, ["verify"], {EXIT_CORRUPT})
    assert not (repo_dir / "zeros.bin").exists()


def test_pull_of_zstd_bombs_from_a_remote(repo_dir, tmp_path):
    """Four chunks of 40 KB that expand to 1 GiB each once cost `pull` 4.1 GB."""
    remote = tmp_path / "remote"
    assert run_bounded(repo_dir, "remote", "add", "origin", str(remote), "--default")[0] == 0
    records, chunks = [], []
    bomb = zstd_bomb()
    for i in range(4):
        real = bytes([i]) * (256 << 10)
        records.append((CHUNK, ZSTD, digest(real), bomb, len(real)))
        chunks.append((digest(real), len(real)))
    content = b"".join(bytes([i]) * (256 << 10) for i in range(4))
    fid = digest(content)
    manifest = FileManifest(fid, len(content), ChunkerParams(), tuple(chunks)).encode()
    records.append((FILE_MANIFEST, 0, fid, manifest, len(manifest)))
    publish_pack(repo_dir, records, packs=remote / "packs")
    point_at(repo_dir, "weights.bin", "file", fid, len(content))
    commit(repo_dir, "pointer to bombs")
    assert_refused(repo_dir, ["pull"], {EXIT_CORRUPT, 12}, "corrupt")
    assert not (repo_dir / "weights.bin").exists()


def test_chunk_declaring_four_gib(repo_dir):
    data = b"x" * 1000
    cid, fid = digest(b"four gib"), digest(b"the file")
    size = (4 << 30) - 1
    manifest = FileManifest(fid, size, ChunkerParams(), ((cid, size),)).encode()
    publish_pack(repo_dir, [(CHUNK, 0, cid, data, size), (FILE_MANIFEST, 0, fid, manifest, len(manifest))])
    point_at(repo_dir, "huge.bin", "file", fid, size)
    for command in (["show", "huge.bin"], ["checkout", "huge.bin"], ["verify"]):
        assert_refused(repo_dir, command, {0, EXIT_CORRUPT})
    assert not (repo_dir / "huge.bin").exists()


def test_tree_manifest_of_ten_million_entries(repo_dir):
    entry = b'["%07d",1,"' + b"ab" * 16 + b'",0],'
    block = b"".join(entry.replace(b"%07d", b"%07d" % i) for i in range(100_000))
    packer = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [packer.compress(b'{"mlvc_tree":1,"hash":"xxh3-128","entries":[')]
    parts += [packer.compress(block) for _ in range(100)]
    parts.append(packer.compress(b'["z",1,"' + b"ab" * 16 + b'",0]]}') + packer.flush())
    payload = b"".join(parts)
    raw = 43 + 100 * len(block) + 45
    oid = digest(b"a tree")
    publish_pack(repo_dir, [(TREE_MANIFEST, ZSTD, oid, payload, raw)])
    point_at(repo_dir, "ds", "dir", oid, 10_000_001, 10_000_001)
    for command in (["status"], ["checkout", "ds"], ["verify"]):
        assert_refused(repo_dir, command, {1, EXIT_CORRUPT})
    assert not (repo_dir / "ds").exists()
    # the same tree declaring a small raw size: decompression stops at the declared size
    publish_pack(repo_dir, [(TREE_MANIFEST, ZSTD, digest(b"another tree"), payload, 1 << 20)])
    point_at(repo_dir, "ds", "dir", digest(b"another tree"), 1, 1)
    assert_refused(repo_dir, ["checkout", "ds"], {EXIT_CORRUPT})


def test_file_manifest_declaring_one_terabyte(repo_dir):
    cid, fid = digest(b"c"), digest(b"1 TB")
    n = 256
    manifest = FileManifest(fid, n * (4 << 30) - n, ChunkerParams(), tuple([(cid, (4 << 30) - 1)] * n)).encode()
    publish_pack(repo_dir, [(FILE_MANIFEST, 0, fid, manifest, len(manifest))])
    point_at(repo_dir, "tb.bin", "file", fid, n * (4 << 30) - n)
    for command in (["status", "tb.bin"], ["show", "tb.bin"], ["checkout", "tb.bin"], ["verify"]):
        # checkout may stop even earlier: the disk cannot hold what the pointer declares (exit 10)
        assert_refused(repo_dir, command, {0, 1, EXIT_CORRUPT, 7, EXIT_DISK})
    assert not (repo_dir / "tb.bin").exists()


# ------------------------------------------------------------------ checkpoints


def test_expanded_tensor_checkpoint_adds_and_diffs_fast(repo_dir):
    """1.8 KiB on disk, a 4 GB tensor by its declared shape (`torch.zeros(1).expand(10**9)`)."""
    shutil.copy(TENSOR / "repo" / "model.pt", repo_dir / "model.pt")
    assert_refused(repo_dir, ["add", "model.pt"], {0})
    commit(repo_dir, "v1")
    shutil.copy(TENSOR / "v2" / "model.pt", repo_dir / "model.pt")
    assert_refused(repo_dir, ["add", "model.pt"], {0})
    commit(repo_dir, "v2")
    assert_refused(repo_dir, ["diff", "HEAD~1", "HEAD"], {0, 1})
    out = git(repo_dir, "show", "HEAD~1:model.pt.mlvc") + git(repo_dir, "show", "HEAD:model.pt.mlvc")
    assert out.count("encoder") >= 2  # per-module ids were still recorded
