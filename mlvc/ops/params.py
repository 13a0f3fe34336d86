"""`mlvc params diff A [B]`: hyper-parameters compared between two commits.

Parameters come from params files (`params.yaml`, `params.yml`, `params.json`
and any files listed under `params:` in `.mlvc/config`), flattened to dotted
keys (`train.lr`), and from the `meta` of every pointer (`<artifact>:<key>`).
Everything is read from git's object database; B defaults to the workspace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .. import pointer as pointers
from .. import safeyaml
from ..errors import MlvcError

if TYPE_CHECKING:
    from ..git import GitRepo
    from ..repo import Repo

DEFAULT_PARAMS_FILES = ("params.yaml", "params.yml", "params.json")
DEFAULT_METRICS_FILES = ("metrics.json", "metrics.yaml", "metrics.yml")
MAX_PARAMS_BYTES = 16 * 1024 * 1024
ID_META = ("modules", "blocks")  # pointer meta holding per-module and per-block ids: not parameters


@dataclass
class ParamChange:
    key: str
    source: str  # params file, or the artifact whose pointer meta holds it
    change: str  # added / removed / modified
    old: object = None
    new: object = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _listed(repo: Repo, key: str, defaults: tuple[str, ...]) -> list[str]:
    try:
        extra = repo.config.data.get(key) or []
    except MlvcError:
        extra = []
    if isinstance(extra, str):
        extra = [extra]
    out = list(defaults)
    out.extend(str(x) for x in extra if str(x) not in out)
    return out


def params_files(repo: Repo) -> list[str]:
    return _listed(repo, "params", DEFAULT_PARAMS_FILES)


def metrics_files(repo: Repo) -> list[str]:
    return _listed(repo, "metrics", DEFAULT_METRICS_FILES)


def parse_values(data: bytes, name: str) -> dict[str, object] | None:
    """Flattened key -> value of a YAML or JSON document; None when unreadable."""
    try:
        if name.endswith(".json"):
            doc = json.loads(data)
        else:
            doc = safeyaml.load(data, MAX_PARAMS_BYTES)  # no alias bombs from a cloned repository
    except (ValueError, UnicodeDecodeError, Exception):  # noqa: BLE001 - yaml raises many types
        return None
    if not isinstance(doc, dict):
        return None
    return flatten(doc)


def flatten(doc: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class _Source:
    """Reads files at a git revision, or from the workspace when rev is None."""

    def __init__(self, repo: Repo, git: GitRepo, rev: str | None) -> None:
        self.repo, self.git, self.rev = repo, git, rev

    def read(self, rel: str) -> bytes | None:
        if self.rev is None:
            p = self.repo.root / rel
            try:
                return p.read_bytes() if p.is_file() else None
            except OSError:
                return None
        return self.git.read_blob(self.rev, rel)

    def pointer_metas(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        if self.rev is None:
            from .common import select

            for t in select(self.repo):
                if t.ptr is not None:
                    out[t.display] = t.ptr.meta or {}
            return out
        for p in pointers.pointers_at(self.git, self.rev):
            if p.ptr is not None:
                out[p.path] = p.ptr.meta or {}
        return out


def collect(repo: Repo, git: GitRepo, rev: str | None) -> dict[tuple[str, str], object]:
    """{(source, key): value} of every parameter at `rev` (None: workspace)."""
    src = _Source(repo, git, rev)
    values: dict[tuple[str, str], object] = {}
    for name in params_files(repo):
        data = src.read(name)
        if data is None:
            continue
        parsed = parse_values(data, name)
        if parsed is None:
            continue
        for k, v in parsed.items():
            values[(name, k)] = v
    for artifact, meta in src.pointer_metas().items():
        for k, v in flatten({k: v for k, v in meta.items() if k not in ID_META}).items():
            values[(artifact, k)] = v
    return values


def compare(a: dict[tuple[str, str], object], b: dict[tuple[str, str], object]) -> list[ParamChange]:
    out = []
    for key in sorted(set(a) | set(b)):
        source, name = key
        if key not in a:
            out.append(ParamChange(name, source, "added", None, b[key]))
        elif key not in b:
            out.append(ParamChange(name, source, "removed", a[key], None))
        elif a[key] != b[key]:
            out.append(ParamChange(name, source, "modified", a[key], b[key]))
    return out


def params_diff(repo: Repo, rev_a: str, rev_b: str | None = None, git: GitRepo | None = None) -> list[ParamChange]:
    from ..git import GitRepo

    own = git is None
    git = git or GitRepo(repo.root)
    try:
        git.resolve(rev_a)
        if rev_b is not None:
            git.resolve(rev_b)
        return compare(collect(repo, git, rev_a), collect(repo, git, rev_b))
    finally:
        if own:
            git.close()
