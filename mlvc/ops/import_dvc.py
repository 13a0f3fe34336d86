"""`mlvc import-dvc`: turn a DVC project's tracked outputs into mlvc pointers.

Every output of the selected `.dvc` files (and `dvc.lock` stages) is rebuilt in
the mlvc cache from the objects in DVC's cache (`.dvc/cache/files/md5/..`, or
the DVC 2 layout `.dvc/cache/..`), never from the workspace copy, and every byte
is checked against DVC's md5 while it is chunked: an output with a missing or
damaged object is reported and left alone.  A pointer is written only once its
objects are published.  The DVC files themselves are not touched; the result
lists what to `git rm` and `git add` next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from collections.abc import Iterable
from pathlib import Path

from .. import pointer as pointers
from ..chunking import iter_chunks
from ..codec import ChunkEncoder
from ..errors import CorruptObjectError, MlvcError, ObjectNotFoundError, PathError, PointerError
from ..hashing import digest, hasher, to_oid
from ..ignore import ensure_ignored
from ..objects import FileManifest, TreeEntry, TreeManifest, validate_relpath
from ..progress import NULL, Progress
from ..store.packs import FILE_MANIFEST, TREE_MANIFEST
from ..store.packstore import wrap_os_error

if TYPE_CHECKING:
    from ..chunking import ChunkerParams
    from ..repo import Repo
    from ..store.packstore import PackStore
    from .common import PathArg

_MD5_LEN = 32


@dataclass
class DvcOut:
    """One output as DVC records it."""

    source: str  # the .dvc or dvc.lock file (repo-relative), plus ":stage" for dvc.lock
    path: str  # repo-relative output path
    md5: str  # without the ".dir" suffix
    is_dir: bool
    legacy: bool  # DVC 2 ("md5" without `hash: md5`): text files hashed after dos2unix


@dataclass
class ImportedOut:
    path: str
    pointer: str
    kind: str
    oid: str
    size: int
    files: int
    source: str
    verified_bytes: int


@dataclass
class ImportResult:
    imported: list[ImportedOut] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    failed_codes: dict[str, int] = field(default_factory=dict)
    git_rm: list[str] = field(default_factory=list)  # DVC files whose every output was imported
    git_add: list[str] = field(default_factory=list)  # pointers and .gitignore files
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> list[str]:
        return [o.path for o in self.imported]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------------- reading DVC files


def _yaml(path: Path, where: str) -> object:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise PointerError(where, f"cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise PointerError(where, f"not valid YAML ({first})") from None


def _out(source: str, base: str, entry: object, where: str) -> DvcOut:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise PointerError(where, "an output without a path")
    md5 = entry.get("md5")
    algo = entry.get("hash")
    if not isinstance(md5, str) or not md5:
        raise PointerError(where, f"output {entry['path']!r} has no md5 (is it `cache: false`, "
                                  "or not yet computed? run `dvc commit`)")
    if algo not in (None, "md5"):
        raise PointerError(where, f"output {entry['path']!r}: unsupported hash {algo!r}")
    is_dir = md5.endswith(".dir")
    md5 = md5[:-4] if is_dir else md5
    if len(md5) != _MD5_LEN or any(c not in "0123456789abcdef" for c in md5):
        raise PointerError(where, f"output {entry['path']!r}: {entry.get('md5')!r} is not an md5")
    rel = os.path.normpath(os.path.join(base, entry["path"])).replace(os.sep, "/")
    try:
        validate_relpath(rel, where)
    except MlvcError:
        raise PathError(rel, f"(an output of {where}) is outside the repository") from None
    return DvcOut(source, rel, md5, is_dir, legacy=algo is None)


def read_dvc_file(repo: Repo, path: Path) -> list[DvcOut]:
    """The outputs a `.dvc` file or a `dvc.lock` records."""
    rel = repo.rel(path)
    base = os.path.dirname(rel)
    doc = _yaml(path, rel)
    if not isinstance(doc, dict):
        raise PointerError(rel, "expected a YAML mapping")
    outs: list[DvcOut] = []
    if path.name == "dvc.lock":
        for name, stage in (doc.get("stages") or {}).items():
            for entry in (stage or {}).get("outs") or []:
                outs.append(_out(f"{rel}:{name}", base, entry, f"{rel} (stage {name})"))
        return outs
    for entry in doc.get("outs") or []:
        outs.append(_out(rel, base, entry, rel))
    return outs


def find_dvc_files(repo: Repo, paths: Iterable[PathArg] | None = None) -> list[Path]:
    """`.dvc` files and `dvc.lock` files named by `paths` (files, their outputs, or directories to
    search), or all of the repository's."""
    found: list[Path] = []
    roots = []
    for p in paths or [repo.root]:
        ab = Path(os.path.abspath(p))
        if ab != repo.root and repo.root not in ab.parents:
            raise PathError(p, f"is outside the repository {repo.root}")
        if ab.is_file() and (ab.name.endswith(".dvc") or ab.name == "dvc.lock"):
            found.append(ab)
        elif ab.with_name(ab.name + ".dvc").is_file():
            found.append(ab.with_name(ab.name + ".dvc"))
        elif ab.is_dir():
            roots.append(ab)
        else:
            raise PathError(p, "is not a .dvc file, a dvc.lock, an output with a .dvc file, or a directory")
    for root in roots:
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if not x.startswith("."))
            for f in sorted(files):
                if f.endswith(".dvc") or f == "dvc.lock":
                    found.append(Path(d) / f)
    return sorted(dict.fromkeys(found))


# ---------------------------------------------------------------------- DVC's cache


def dvc_cache_dir(repo: Repo) -> Path:
    """`.dvc/cache`, or the `cache.dir` the project's `.dvc/config` (or config.local) sets."""
    import configparser

    cache = repo.root / ".dvc" / "cache"
    for name in ("config", "config.local"):
        cfg = repo.root / ".dvc" / name
        if not cfg.is_file():
            continue
        parser = configparser.ConfigParser()
        try:
            parser.read(cfg)
        except configparser.Error:
            continue
        if parser.has_option("cache", "dir"):
            d = Path(parser.get("cache", "dir"))
            cache = d if d.is_absolute() else (cfg.parent / d)
    return cache


def _object_path(cache: Path, md5: str, suffix: str, legacy: bool) -> Path:
    """A DVC cache object: DVC 3 keeps `files/md5/ab/cdef...`, DVC 2 `ab/cdef...`."""
    layouts = [cache / "files" / "md5", cache] if not legacy else [cache, cache / "files" / "md5"]
    for base in layouts:
        p = base / md5[:2] / (md5[2:] + suffix)
        if p.is_file():
            return p
    raise ObjectNotFoundError(f"md5 {md5}{suffix}", where=f"DVC's cache {cache}",
                              hint="run `dvc pull` (or `dvc fetch`) for it first, then import again")


def _dos2unix_md5(data_path: Path) -> str | None:
    """md5 of a file with CRLF -> LF, as DVC 2 hashed text files; None for binary files."""
    with open(data_path, "rb") as f:
        head = f.read(512)
        if b"\0" in head:
            return None
        f.seek(0)
        return hashlib.md5(f.read().replace(b"\r\n", b"\n")).hexdigest()  # DVC 2 read text files whole


def _store_object(store: PackStore, obj: Path, want_md5: str, legacy: bool, params: ChunkerParams,
                  what: str) -> tuple[bytes, int]:
    """Chunk one DVC object into the store, checking its md5; (content id, size)."""
    from .modules import checkpoint_cuts

    size = obj.stat().st_size
    md5 = hashlib.md5()
    content = hasher()
    refs: list[tuple[bytes, int]] = []
    encoder = ChunkEncoder(store.level)
    cuts = checkpoint_cuts(obj, size)
    total = 0
    with open(obj, "rb", buffering=0) as f:
        for data in iter_chunks(f, params, boundaries=cuts, size_hint=size):
            oid = digest(data)
            md5.update(data)
            content.update(data)
            store.put_chunk(data, oid, encoder)
            refs.append((oid, len(data)))
            total += len(data)
    got = md5.hexdigest()
    if got != want_md5 and not (legacy and _dos2unix_md5(obj) == want_md5):
        raise CorruptObjectError(f"md5 {want_md5}", f"DVC's cache ({what})", want_md5, got)
    cid = content.digest()
    store.put_object(FILE_MANIFEST, cid, FileManifest(cid, total, params, tuple(refs)).encode())
    return cid, total


def _dir_listing(obj: Path, where: str) -> list[tuple[str, str, bool]]:
    """(relpath, md5, executable) of a DVC `.dir` object."""
    try:
        doc = json.loads(obj.read_bytes())
    except (OSError, ValueError):
        raise CorruptObjectError(where, "DVC's cache", "a .dir listing (JSON)", "unreadable bytes") from None
    out = []
    for e in doc if isinstance(doc, list) else []:
        if not isinstance(e, dict) or not isinstance(e.get("relpath"), str) or not isinstance(e.get("md5"), str):
            raise CorruptObjectError(where, "DVC's cache", "entries with relpath and md5", repr(e)[:80])
        rel = validate_relpath(e["relpath"].replace("\\", "/"), where, below_dir=True)
        out.append((rel, e["md5"], bool(e.get("isexec"))))
    return out


# ---------------------------------------------------------------------- import


def _import_out(repo: Repo, out: DvcOut, cache: Path) -> ImportedOut:
    store = repo.store
    params = repo.chunker
    target = repo.root / out.path
    if target.name.endswith(pointers.SUFFIX):
        raise PathError(out.path, "is named like an mlvc pointer")
    if out.is_dir:
        listing_obj = _object_path(cache, out.md5, ".dir", out.legacy)
        want = hashlib.md5(listing_obj.read_bytes()).hexdigest()
        if want != out.md5 and not out.legacy:
            raise CorruptObjectError(f"md5 {out.md5}.dir", "DVC's cache", out.md5, want)
        entries = []
        verified = 0
        for rel, md5, executable in _dir_listing(listing_obj, f"{out.path} (.dir {out.md5})"):
            obj = _object_path(cache, md5, "", out.legacy)
            fid, size = _store_object(store, obj, md5, out.legacy, params, f"{out.path}/{rel}")
            entries.append(TreeEntry(rel, size, fid, executable))
            verified += size
        tree = TreeManifest.build(entries)
        body = tree.encode()
        oid = digest(body)
        store.put_object(TREE_MANIFEST, oid, body)
        kind, size, files = "dir", tree.size, len(entries)
    else:
        obj = _object_path(cache, out.md5, "", out.legacy)
        oid, size = _store_object(store, obj, out.md5, out.legacy, params, out.path)
        kind, files, verified = "file", 1, size
    store.commit()  # objects first, the pointer after
    meta = {"imported_from": "dvc", "dvc_md5": out.md5 + (".dir" if out.is_dir else "")}
    ptr = pointers.PointerFile(target.name, kind, to_oid(oid), size, files, params, None, meta)
    ptr_path = pointers.pointer_path_for(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        pointers.write(ptr_path, ptr, fsync=repo.config.settings.fsync)
        if repo.has_git:
            ensure_ignored(target)
            repo.keep_out_of_git([target])
    except OSError as exc:
        raise wrap_os_error(exc, f"the pointer {repo.rel(ptr_path)}") from exc
    repo.store.complete.add([to_oid(oid)])
    return ImportedOut(out.path, repo.rel(ptr_path), kind, to_oid(oid), size, files, out.source, verified)


def import_dvc(repo: Repo, paths: Iterable[PathArg] | None = None, *, progress: Progress = NULL) -> ImportResult:
    """Import the outputs of the DVC files named by `paths` (default: every one in the repository).

    Per-output failures (object missing from DVC's cache, md5 mismatch, an output that
    already has an mlvc pointer) are collected in the result; the others are imported.
    """
    result = ImportResult()
    files = find_dvc_files(repo, paths)
    if not files:
        raise PathError(", ".join(map(str, paths or [repo.root])), "holds no .dvc file or dvc.lock")
    cache = dvc_cache_dir(repo)
    outs_by_file: dict[Path, list[DvcOut]] = {}
    for f in files:
        try:
            outs_by_file[f] = read_dvc_file(repo, f)
        except MlvcError as exc:
            result.failed[repo.rel(f)] = str(exc)
            result.failed_codes[repo.rel(f)] = exc.exit_code
    repo.store.sweep_tmp()
    with repo.store.host_lock():  # shared, as add: a concurrent gc waits
        for f, outs in outs_by_file.items():
            all_ok = bool(outs)
            for out in outs:
                progress.start(f"import {out.path}", None)
                try:
                    if pointers.pointer_path_for(repo.root / out.path).exists():
                        raise PathError(out.path, "already has an mlvc pointer; remove it to import again")
                    imported = _import_out(repo, out, cache)
                    result.imported.append(imported)
                    result.git_add.append(imported.pointer)
                    gi = Path(imported.pointer).parent / ".gitignore"
                    result.git_add.append(gi.as_posix())
                except MlvcError as exc:
                    repo.store.abort()
                    all_ok = False
                    result.failed[out.path] = str(exc) + (f" ({exc.hint})" if exc.hint else "")
                    result.failed_codes[out.path] = exc.exit_code
                finally:
                    progress.finish()
            if f.name == "dvc.lock":
                result.notes.append(f"{repo.rel(f)}: the stages' outputs are now tracked by mlvc too; remove "
                                    "them from dvc.yaml (or keep DVC for the pipeline with `cache: false`)")
            elif all_ok:
                result.git_rm.append(repo.rel(f))
    result.git_add = list(dict.fromkeys(result.git_add))
    return result


__all__ = ["import_dvc", "ImportResult", "ImportedOut", "DvcOut", "read_dvc_file", "find_dvc_files",
           "dvc_cache_dir"]
