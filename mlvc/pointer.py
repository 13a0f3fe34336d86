"""Pointer files (`<path>.mlvc`): the small YAML record committed to git.

A pointer names one artifact (a file or a directory) by the id of its file or
tree manifest, together with the format version, hash algorithm and chunker
parameters that produced it.  Field order is fixed so diffs stay readable.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .atomic import write_bytes
from . import safeyaml
from .chunking import ChunkerParams
from .errors import MlvcError, PointerConflictError, PointerError, UnsafePathError
from .hashing import ALGORITHM, is_oid
from .objects import validate_relpath

if TYPE_CHECKING:
    from .git import GitRepo

SUFFIX = ".mlvc"
FORMAT_VERSION = 1
ROLES = ("model", "data", "other")
KINDS = ("file", "dir")
# meta key: the artifact was added with --follow-links; its symlinks that resolve inside the
# repository are read as what they point to (by add, status and checkout alike)
FOLLOW_LINKS = "follow_links"


# A strict reader for the YAML subset `PointerFile.to_yaml` writes (top-level keys, one level of
# nesting, plain scalars with a single reading).  History reads thousands of pointers and PyYAML
# costs ~0.3 ms each even with libyaml; anything outside the subset falls back to PyYAML.
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]*[A-Za-z0-9_]|[A-Za-z_]")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}
_LINE = re.compile(r"^( {0,2})([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$")
_CONFLICT = re.compile(rb"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)
_ID_LINE = re.compile(r"^id: *['\"]?(xxh128:[0-9a-f]{32})", re.MULTILINE)
# Per-module ids of a large model fit many times over; a 50 MB "pointer" is refused unread.
MAX_POINTER_BYTES = 4 * 1024 * 1024


def _scalar(text: str) -> Any:
    """The value of a plain YAML scalar that has one unambiguous reading, else raise ValueError."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _WORD.fullmatch(text) and text.lower() not in _YAML_WORDS and not text.endswith((".", "-")):
        return text
    raise ValueError(text)


def _simple_yaml(data: bytes) -> dict[str, Any]:
    """The subset of YAML that `PointerFile.to_yaml` writes for ordinary pointers: top-level keys
    and one level of nested mappings, plain scalars only.  ValueError for anything else."""
    doc: dict[str, Any] = {}
    nested: dict[str, Any] | None = None
    for line in data.decode("utf-8").splitlines():
        m = _LINE.match(line)
        if m is None:
            raise ValueError(line)
        indent, key, value = m.groups()
        if indent == "  ":
            if nested is None or value is None:
                raise ValueError(line)
            nested[key] = _scalar(value)
        elif indent:
            raise ValueError(line)
        elif value is None:
            nested = doc[key] = {}
        else:
            nested = None
            doc[key] = {} if value == "{}" else _scalar(value)
    return doc


_SHA = re.compile(r"[0-9a-f]{40}")
_MAX_URL = 4096


@dataclass(frozen=True)
class PointerSource:
    """Where an imported artifact came from (`mlvc import`): another repository's `path` at
    `commit`; `rev` is the revision asked for, which `mlvc update` follows (None: its HEAD)."""

    url: str
    path: str
    commit: str
    rev: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"url": self.url, "path": self.path}
        if self.rev is not None:
            out["rev"] = self.rev
        out["commit"] = self.commit
        return out

    @classmethod
    def from_dict(cls, doc: object, where: str) -> "PointerSource":
        if not isinstance(doc, dict):
            raise PointerError(where, "source must be a mapping of url, path, rev and commit")
        # values read from YAML: each is checked before it is used
        url: Any = doc.get("url")
        path: Any = doc.get("path")
        commit: Any = doc.get("commit")
        rev: Any = doc.get("rev")
        if isinstance(commit, int):
            commit = str(commit)  # an all-digit id read by the fast reader
        if not isinstance(url, str) or not url or len(url) > _MAX_URL or url.startswith("-") or any(
                ord(c) < 32 for c in url):
            raise PointerError(where, f"source url must be a git URL or path, not {url!r}"[:300])
        try:
            validate_relpath(path, where)
        except UnsafePathError as exc:
            raise UnsafePathError(where, f"source path: {exc.reason}") from None
        if not isinstance(commit, str) or not _SHA.fullmatch(commit):
            raise PointerError(where, f"source commit must be 40 hex digits, not {commit!r}"[:300])
        if rev is not None and (not isinstance(rev, (str, int)) or str(rev).startswith("-") or any(
                ord(c) < 32 for c in str(rev)) or len(str(rev)) > 256):
            raise PointerError(where, f"source rev must be a git revision, not {rev!r}"[:300])
        return cls(url, path, commit, None if rev is None else str(rev))


@dataclass
class PointerFile:
    path: str  # artifact path relative to the pointer's directory
    kind: str
    oid: str
    size: int
    files: int
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    role: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: PointerSource | None = None  # imported from another repository (`mlvc import`)

    def to_yaml(self) -> str:
        import yaml

        doc = {
            "mlvc": FORMAT_VERSION,
            "path": self.path,
            "kind": self.kind,
            "id": self.oid,
            "size": self.size,
            "files": self.files,
            "hash": ALGORITHM,
            "chunker": self.chunker.as_dict(),
        }
        if self.role:
            doc["role"] = self.role
        if self.source is not None:
            doc["source"] = self.source.as_dict()
        doc["meta"] = self.meta or {}
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)

    @classmethod
    def parse(cls, text: str | bytes, where: str, file: str | None = None) -> "PointerFile":
        """`where` names the pointer in messages; `file`, its workspace path, for the commands a hint
        gives (default: `where`)."""
        data = text if isinstance(text, bytes) else text.encode()
        if len(data) > MAX_POINTER_BYTES:
            raise PointerError(where, f"{len(data)} bytes, more than the {MAX_POINTER_BYTES} a pointer may have")
        try:
            doc = _simple_yaml(data)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if doc is None:
            if _CONFLICT.search(data):
                raise conflict_error(data, where, file)
            try:
                doc = safeyaml.load(data, MAX_POINTER_BYTES)
            except safeyaml.YamlRefused as exc:
                raise PointerError(where, str(exc)) from None
        if not isinstance(doc, dict):
            raise PointerError(where, "expected a YAML mapping")
        version = doc.get("mlvc")
        if version != FORMAT_VERSION:
            raise PointerError(where, f"unsupported format version {version!r} (this mlvc reads version "
                                      f"{FORMAT_VERSION}; upgrade mlvc if the pointer is newer)")
        if doc.get("hash", ALGORITHM) != ALGORITHM:
            raise PointerError(where, f"unsupported hash algorithm {doc.get('hash')!r}")
        path: Any = doc.get("path")  # values read from YAML: each is checked before it is used
        try:
            validate_relpath(path, where)
        except UnsafePathError as exc:
            raise UnsafePathError(where, exc.reason) from None
        kind: Any = doc.get("kind")
        if kind not in KINDS:
            raise PointerError(where, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        oid: Any = doc.get("id")
        if not is_oid(oid):
            raise PointerError(where, f"id must look like xxh128:<32 hex digits>, not {oid!r}")
        size, files = doc.get("size"), doc.get("files", 1)
        if not isinstance(size, int) or size < 0 or not isinstance(files, int) or files < 0:
            raise PointerError(where, "size and files must be non-negative integers")
        role = doc.get("role")
        if role is not None and role not in ROLES:
            raise PointerError(where, f"role must be one of {', '.join(ROLES)}, not {role!r}")
        meta = doc.get("meta") or {}
        if not isinstance(meta, dict):
            raise PointerError(where, "meta must be a mapping")
        try:
            chunker = ChunkerParams.from_dict(doc.get("chunker") or ChunkerParams().as_dict())
        except (ValueError, KeyError, TypeError):
            raise PointerError(where, "chunker must have algo/min/avg/max") from None
        source = doc.get("source")
        if source is not None:
            source = PointerSource.from_dict(source, where)
        return cls(path, kind, oid, size, files, chunker, role, meta, source)


def conflict_sides(data: bytes) -> tuple[bytes, bytes, str, str]:
    """(ours, theirs, ours label, theirs label) of a file with git merge conflict markers: each side
    is the text outside the conflicts plus that side's lines (diff3's `|||||||` base is dropped)."""
    ours: list[bytes] = []
    theirs: list[bytes] = []
    labels = ["", ""]
    state = None  # None: common text; "ours", "base", "theirs": inside a conflict
    for line in data.splitlines(keepends=True):
        marker = line[:7]
        if marker == b"<<<<<<<" and line[7:8] in (b" ", b"\n", b"\r", b""):
            state, labels[0] = "ours", line[8:].decode("utf-8", "replace").strip()
        elif marker == b"|||||||" and state == "ours":
            state = "base"
        elif marker == b"=======" and state in ("ours", "base"):
            state = "theirs"
        elif marker == b">>>>>>>" and state == "theirs":
            state, labels[1] = None, line[8:].decode("utf-8", "replace").strip()
        elif state is None:
            ours.append(line)
            theirs.append(line)
        elif state == "ours":
            ours.append(line)
        elif state == "theirs":
            theirs.append(line)
    return b"".join(ours), b"".join(theirs), labels[0], labels[1]


def _side_id(side: bytes, where: str) -> str | None:
    if not _CONFLICT.search(side):  # stray markers left (nested or broken conflicts): the id line only
        try:
            return PointerFile.parse(side, where).oid
        except MlvcError:
            pass
    m = _ID_LINE.search(side.decode("utf-8", "replace"))
    return m.group(1) if m else None


def conflict_error(data: bytes, where: str, file: str | None = None) -> PointerConflictError:
    """The typed error for a pointer with conflict markers, naming both sides' ids."""
    ours, theirs, ours_label, theirs_label = conflict_sides(data)
    return PointerConflictError(where, _side_id(ours, where), _side_id(theirs, where), ours_label=ours_label,
                                theirs_label=theirs_label, file=file)


def pointer_path_for(target: Path) -> Path:
    return target.with_name(target.name + SUFFIX)


def load(pointer: Path, display: str | None = None) -> PointerFile:
    where = display or str(pointer)
    try:
        with open(pointer, "rb") as f:
            text = f.read(MAX_POINTER_BYTES + 1)  # parse() refuses it when longer
    except FileNotFoundError:
        raise PointerError(where, "file not found") from None
    except OSError as exc:
        raise PointerError(where, exc.strerror or str(exc)) from None
    return PointerFile.parse(text, where, display)


def target_of(pointer_path: Path, ptr: PointerFile) -> Path:
    return pointer_path.parent / ptr.path


def write(pointer: Path, ptr: PointerFile, fsync: bool = True) -> None:
    """Atomically replace the pointer file: temp + fsync + rename."""
    write_bytes(pointer, ptr.to_yaml().encode(), fsync=fsync)


def discover(root: Path, use_git: bool) -> list[Path]:
    """Every pointer file of the work tree (absolute paths, sorted).

    With git, ask `git ls-files` (fast, honours .gitignore, sees new pointers
    not yet committed); without, walk the tree skipping dot-directories.
    """
    if use_git:
        from . import gitcli as git

        listed = git.ls_files(root, "--cached", "--others", "--exclude-standard", "--", f"*{SUFFIX}")
        if listed is not None:
            return sorted(root / n for n in set(listed)
                          if not n.startswith(".mlvc/") and (root / n).is_file())
    found: list[Path] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        found.extend(Path(d) / f for f in files if f.endswith(SUFFIX))
    return sorted(found)


class PointerAt(NamedTuple):
    """A pointer file as committed at a revision (read from git's object database)."""

    rel_pointer: str  # the pointer file, repo-relative
    path: str  # the artifact it names (its directory + its `path`); the pointer path minus .mlvc when unreadable
    ptr: PointerFile | None
    error: MlvcError | None

    @property
    def parse_error(self) -> MlvcError:
        """Why the pointer did not parse (for one without `ptr`)."""
        return self.error if self.error is not None else MlvcError(f"{self.rel_pointer}: no pointer read")


def pointers_at(git: GitRepo, rev: str, label: str | None = None) -> list[PointerAt]:
    """Every pointer file committed at `rev`, parsed: the one walk every history reader shares
    (push/fetch of revisions, checkout --to, diff, params, manifests).  `label` names the
    revision in error messages (default: `rev`)."""
    out = []
    for rel in git.list_files(rev, SUFFIX):
        if rel.startswith(".mlvc/"):
            continue
        data = git.read_blob(rev, rel)
        try:
            ptr = PointerFile.parse(data or b"", f"{rel} at {label or rev}", rel)
        except MlvcError as exc:
            out.append(PointerAt(rel, rel[: -len(SUFFIX)], None, exc))
            continue
        parent = posixpath.dirname(rel)
        out.append(PointerAt(rel, posixpath.join(parent, ptr.path) if parent else ptr.path, ptr, None))
    return out
