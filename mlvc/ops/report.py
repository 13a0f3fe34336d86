"""`mlvc report`: how the model got here, collected from history in one pass.

The walk is `ops.log.report` (git's object database through dulwich, only the
subtrees that changed, no checkout).  On top of it, for every commit that
changed an artifact, this module adds what a reviewer asks next:

* the metrics recorded there (metrics files, numeric pointer meta, and the
  `metrics` of checkpoints saved with `mlvc.torch.save`), as series over commits;
* the parameters that changed (params files, and the `params` of checkpoints);
* per checkpoint, which modules changed (from the per-module ids in the
  pointer meta), with the largest relative L2 change among each module's
  tensors when both versions are in the cache;
* the lineage: the data versions (id, config hash, seed) and model versions
  (id, module ids) of the commit;
* the environment (python, torch, CUDA, packages fingerprint) where it moved.

Checkpoint contents (birth certificates, tensors) are read from the cache
through the chunk-backed reader; a version whose objects are not there keeps
what its pointer says and notes it, it never fails the report.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
from dataclasses import asdict, dataclass, field
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeGuard

from .. import pointer as pointers
from ..errors import MlvcError, ObjectNotFoundError, PathError
from .log import parse_since
from .log import report as log_report
from .modules import Meta, is_checkpoint_name
from .params import flatten
from .diff import MAX_CHECKPOINTS_PER_ARTIFACT  # the cap `mlvc diff` uses, per artifact version
from ..checkpoint import is_shard_index
from .report_checkpoints import CheckpointChange, StoredCheckpoints, changes_from_ids, checkpoint_files, module_ids

if TYPE_CHECKING:
    import os

    from ..git import GitRepo
    from ..repo import Repo
    from .log import CommitReport

# Birth-certificate fields that describe the environment (see docs/concepts/lineage.md).
ENVIRONMENT_KEYS = ("python", "torch", "cuda", "cudnn", "device", "packages", "packages_count")
# Pointer meta keys that are neither metrics nor parameters.
_STRUCTURAL_META = ("modules", "blocks", "config", "config_hash", "seed", "follow_links")


@dataclass
class ArtifactVersion:
    path: str
    change: str  # added / modified / removed / invalid
    id: str | None = None
    size: int | None = None
    files: int | None = None
    kind: str | None = None
    role: str | None = None
    error: str | None = None
    source: dict[str, object] | None = None  # imported from another repository: url, path, rev, commit


@dataclass
class ParamChange:
    key: str
    source: str  # params file, or the checkpoint whose birth certificate holds it
    change: str  # added / removed / modified
    old: object = None
    new: object = None


@dataclass
class MetricChange:
    name: str
    old: float | None
    new: float


@dataclass
class EnvironmentChange:
    artifact: str
    key: str
    old: object
    new: object


@dataclass
class DataVersion:
    path: str
    id: str
    config: str | None = None
    config_hash: str | None = None
    seed: object = None
    source: dict[str, object] | None = None  # imported from another repository: url, path, rev, commit


@dataclass
class ModelVersion:
    path: str
    id: str
    modules: dict[str, object] = field(default_factory=dict)
    data: dict[str, object] = field(default_factory=dict)  # from the birth certificate: {path: {id, config_hash, seed}}
    code_commit: str | None = None  # the commit the checkpoint was saved from
    source: dict[str, object] | None = None  # imported from another repository: url, path, rev, commit


@dataclass
class ReportCommit:
    commit: str
    short: str
    date: str
    author: str
    message: str
    artifacts: list[ArtifactVersion] = field(default_factory=list)
    params: list[ParamChange] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # "source: key" -> value recorded here
    metric_changes: list[MetricChange] = field(default_factory=list)  # against the previous value
    checkpoints: list[CheckpointChange] = field(default_factory=list)
    environment: list[EnvironmentChange] = field(default_factory=list)
    data: list[DataVersion] = field(default_factory=list)  # every data version at this commit
    models: list[ModelVersion] = field(default_factory=list)  # every model version at this commit


@dataclass
class Report:
    title: str
    rev: str
    since: str | None
    generated_at: str
    commits: list[ReportCommit] = field(default_factory=list)  # oldest first
    metric_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # a metric recorded alike in several places (the checkpoint and metrics.json) is shown once:
    # shown name -> the other names it stands for
    metric_aliases: dict[str, list[str]] = field(default_factory=dict)

    def series(self, name: str) -> list[tuple[int, float]]:
        """(commit index, value) of one metric, oldest first."""
        return [(i, c.metrics[name]) for i, c in enumerate(self.commits) if name in c.metrics]

    def as_dict(self) -> dict[str, object]:
        doc = asdict(self)
        for c in doc["commits"]:  # JSON has no inf
            for ck in c["checkpoints"]:
                for m in ck["modules"]:
                    if m["rel_l2"] is not None and math.isinf(m["rel_l2"]):
                        m["rel_l2"] = "inf"
        return doc


# ------------------------------------------------------------------ revisions


def _split_range(rev: str) -> tuple[str | None, str]:
    """`A..B` -> (A, B); `B` -> (None, B).  An empty side means HEAD, as in git."""
    if "..." in rev:
        raise MlvcError(f"symmetric ranges are not supported: {rev!r}", hint="use A..B or a single revision")
    if ".." in rev:
        base, _, tip = rev.partition("..")
        return base or "HEAD", tip or "HEAD"
    return None, rev


def _reachable(git: GitRepo, rev: str) -> set[str]:
    return {c.sha for c in git.walk(rev)}


# ------------------------------------------------------------------ checkpoints


def _pointer_of(v: ArtifactVersion, meta: Meta) -> pointers.PointerFile:
    return pointers.PointerFile(posixpath.basename(v.path), v.kind or "file", v.id or "", v.size or 0,
                                v.files or 0, role=v.role, meta=meta)


# ------------------------------------------------------------------ collection


def _mapping(v: object) -> Mapping[str, object]:
    """A mapping of a birth certificate (its metrics, params, data); {} where another tool wrote
    something else under that key."""
    return v if isinstance(v, Mapping) else {}


def _numeric(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _param_changes(source: str, old: Mapping[str, object], new: Mapping[str, object]) -> list[ParamChange]:
    out = []
    for k in sorted(set(old) | set(new)):
        if k not in old:
            out.append(ParamChange(k, source, "added", None, new[k]))
        elif k not in new:
            out.append(ParamChange(k, source, "removed", old[k], None))
        elif old[k] != new[k]:
            out.append(ParamChange(k, source, "modified", old[k], new[k]))
    return out


class _Collector:
    """Walks the commits oldest first, keeping the state of every artifact as it goes."""

    def __init__(self, repo: Repo, contents: bool):
        self.repo = repo
        self.contents = contents
        self.stored = StoredCheckpoints(repo.store) if contents else None  # None: no checkpoint is read
        self.pointers: dict[str, tuple[ArtifactVersion, Meta]] = {}  # path -> (version, meta)
        self.certificates: dict[str, dict[str, object]] = {}  # artifact path -> latest birth certificate
        self.last_metric: dict[str, float] = {}
        self.missing: set[str] = set()

    def seed_from(self, git: GitRepo, sha: str) -> None:
        """Start from the artifacts as they were at `sha` (the parent of the first reported commit)."""
        from .diff import pointers_at_rev

        for path, (ptr, error) in pointers_at_rev(git, sha).items():
            if ptr is None:
                continue
            v = ArtifactVersion(path, "unchanged", ptr.oid, ptr.size, ptr.files, ptr.kind, ptr.role, error,
                                ptr.source.as_dict() if ptr.source is not None else None)
            self.pointers[path] = (v, dict(ptr.meta or {}))
            if self.contents and self._is_model(v, ptr.meta or {}):
                cert = self._certificate(v, ptr.meta or {})
                if cert:
                    self.certificates[path] = cert

    def _is_model(self, v: ArtifactVersion, meta: Meta) -> bool:
        if v.role in ("data", "other"):
            return False  # a data set saved with torch.save is still data
        return v.role == "model" or bool(meta.get("modules")) or is_checkpoint_name(v.path)

    def _certificate(self, v: ArtifactVersion, meta: Meta) -> dict[str, object] | None:
        """The newest birth certificate among the artifact's checkpoints (by saved_at), or None."""
        stored = self.stored
        if stored is None:  # a report without contents reads no checkpoint
            return None
        try:
            files = checkpoint_files(stored.store, _pointer_of(v, meta))
            found = []
            for rel, fid in sorted(files.items())[:MAX_CHECKPOINTS_PER_ARTIFACT]:
                cert = stored.certificate(fid, posixpath.basename(rel or v.path))
                if cert:
                    found.append(cert)
            return max(found, key=lambda c: str(c.get("saved_at", ""))) if found else None
        except ObjectNotFoundError:
            self.missing.add(v.path)
        except MlvcError:
            pass  # unsafe pickle, damaged object: the pointer's view is all there is
        return None

    def _weights_changes(self, v: ArtifactVersion, meta: Meta, old_v: ArtifactVersion,
                         old_meta: Meta) -> list[CheckpointChange] | None:
        """Tensor-level module changes, or None when either version is not in the cache."""
        stored = self.stored
        if stored is None:  # a report without contents reads no checkpoint
            return None
        ids_a, ids_b = module_ids(old_meta), module_ids(meta)
        try:
            a = checkpoint_files(stored.store, _pointer_of(old_v, old_meta), indexes=True)
            b = checkpoint_files(stored.store, _pointer_of(v, meta), indexes=True)
            out = []
            covered: set[str] = set()  # shards, compared as the one model their index names
            for index_rel in sorted(r for r in set(a) | set(b) if is_shard_index(r)):
                shards = set(stored.shard_paths(a, index_rel)) | set(stored.shard_paths(b, index_rel))
                covered.update(shards, [index_rel])
                if all(a.get(r) == b.get(r) for r in shards | {index_rel}):
                    continue
                ma, mb = ids_a.get(index_rel), ids_b.get(index_rel)
                only = {m for m in set(ma) | set(mb) if ma.get(m) != mb.get(m)} if ma and mb else None
                ck = stored.compare_sharded(v.path, index_rel, a, b, only)
                if ck is not None and ck.modules:
                    out.append(ck)
            pairs = [(rel, a[rel], b[rel]) for rel in sorted(set(a) & set(b))
                     if a[rel] != b[rel] and rel not in covered]
            for rel, fa, fb in pairs[:MAX_CHECKPOINTS_PER_ARTIFACT]:
                only = None
                ma, mb = ids_a.get(rel), ids_b.get(rel)
                if ma and mb:  # the module ids say which modules moved: read only their tensors
                    only = {m for m in set(ma) | set(mb) if ma.get(m) != mb.get(m)}
                ck = stored.compare(v.path, rel, fa, fb, posixpath.basename(rel or v.path), only)
                if ck is not None and ck.modules:
                    out.append(ck)
            return out
        except ObjectNotFoundError:
            self.missing.add(v.path)
        except MlvcError:
            pass
        return None

    def commit(self, rep: CommitReport) -> ReportCommit:
        out = ReportCommit(rep.commit, rep.short, rep.date, rep.author, rep.message)
        out.params.extend(ParamChange(p.key, p.source, p.change, p.old, p.new) for p in rep.params)
        for source, values in rep.metrics.items():
            for key, value in values.items():
                if _numeric(value) and key.split(".", 1)[0] not in _STRUCTURAL_META:
                    out.metrics[f"{source}: {key}"] = value
        for e in rep.artifacts:
            v = ArtifactVersion(e.path, e.change, e.id, e.size, e.files, e.kind, e.role, e.error, e.source)
            out.artifacts.append(v)
            if e.change == "removed":
                self.pointers.pop(e.path, None)
                self.certificates.pop(e.path, None)
                continue
            if e.error:
                continue
            meta = dict(e.meta or {})
            before = self.pointers.get(e.path)
            self.pointers[e.path] = (v, meta)
            if self._is_model(v, meta):
                self._model_version(out, v, meta, before)
        self._snapshot(out)
        for name, value in sorted(out.metrics.items()):
            out.metric_changes.append(MetricChange(name, self.last_metric.get(name), value))
            self.last_metric[name] = value
        return out

    def _model_version(self, out: ReportCommit, v: ArtifactVersion, meta: Meta,
                       before: tuple[ArtifactVersion, Meta] | None) -> None:
        if before is not None:
            old_v, old_meta = before
            changes = None
            if self.contents:
                changes = self._weights_changes(v, meta, old_v, old_meta)
            if changes is None:
                changes = changes_from_ids(v.path, old_meta, meta)
                note = "weights not in the cache: module ids compared, no L2 change" if self.contents else None
                for ck in changes:
                    ck.note = note
            out.checkpoints.extend(changes)
        if not self.contents:
            return
        cert = self._certificate(v, meta)
        if cert is None:
            return
        previous = self.certificates.get(v.path, {})
        self.certificates[v.path] = cert
        for key, value in flatten(_mapping(cert.get("metrics"))).items():
            if _numeric(value):
                out.metrics[f"{v.path}: {key}"] = value
        out.params.extend(_param_changes(v.path, flatten(_mapping(previous.get("params"))),
                                         flatten(_mapping(cert.get("params")))))
        for key in ENVIRONMENT_KEYS:
            old, new = previous.get(key), cert.get(key)
            if new != old and (new is not None or key in previous):
                out.environment.append(EnvironmentChange(v.path, key, old, new))

    def _snapshot(self, out: ReportCommit) -> None:
        for path, (v, meta) in sorted(self.pointers.items()):
            if self._is_model(v, meta):
                cert = self.certificates.get(path) or {}
                found = meta.get("modules")
                modules = dict(found) if isinstance(found, dict) else {}
                code = cert.get("commit")
                out.models.append(ModelVersion(path, v.id or "", modules, dict(_mapping(cert.get("data"))),
                                               code if isinstance(code, str) else None, v.source))
            elif v.role == "data" or "config_hash" in meta or "seed" in meta or v.source is not None:
                # an imported artifact that is not a model is an input: its source is its lineage
                out.data.append(DataVersion(path, v.id or "", meta.get("config"), meta.get("config_hash"),
                                            meta.get("seed"), v.source))


def collect(repo: Repo, paths: list[str] | None = None, *, since: str | None = None, rev: str = "HEAD",
            max_count: int | None = None, contents: bool = True) -> Report:
    """The report of the commits that changed an artifact in `rev` (a revision or `A..B`), oldest first.

    `paths` narrows it to those artifacts (or directories of them); `since` is
    what `mlvc log --since` takes; `contents=False` reads pointers only (no
    birth certificates, module changes from the ids alone).
    """
    from ..git import GitRepo
    from .common import path_selected, wanted_paths

    if not repo.has_git:
        raise MlvcError("`mlvc report` reads git history; this repository was set up with --no-scm")
    since_dt = parse_since(since)
    base, tip = _split_range(rev)
    wanted = wanted_paths(repo, paths)
    git = GitRepo(repo.root)
    collector = _Collector(repo, contents)
    try:
        if git.has_commits() or tip != "HEAD":
            git.resolve(tip)
            if base is not None:
                git.resolve(base)
        excluded = _reachable(git, base) if base is not None else set()
        walked = [r for r in log_report(repo, None, since_dt, None, tip, contents=contents)
                  if r.commit not in excluded]
        if wanted is not None:
            _check_wanted(repo, wanted, {e.path for r in walked for e in r.artifacts})
            for r in walked:
                others = {e.path for e in r.artifacts if not path_selected(e.path, wanted)}
                r.artifacts = [e for e in r.artifacts if path_selected(e.path, wanted)]
                r.metrics = {k: v for k, v in r.metrics.items()
                             if k not in others and not any(k.startswith(o + "/") for o in others)}
            walked = [r for r in walked if r.artifacts]
        if max_count is not None:
            walked = walked[:max_count]
        walked.reverse()
        if walked:
            parents = git.commit_info(walked[0].commit).parents
            if parents:
                collector.seed_from(git, parents[0])
        commits = [collector.commit(r) for r in walked]
    finally:
        git.close()
        if collector.stored is not None:
            collector.stored.close()
    if wanted is not None:
        for c in commits:
            c.data = [d for d in c.data if path_selected(d.path, wanted)] or c.data
            c.models = [m for m in c.models if path_selected(m.path, wanted)]
    aliases = merge_duplicate_metrics(commits)
    names = sorted({n for c in commits for n in c.metrics})
    title = f"{repo.root.name}: {rev}" + (f" since {since}" if since else "")
    out = Report(title, rev, since, datetime.now(timezone.utc).isoformat(timespec="seconds"), commits, names,
                 metric_aliases=aliases)
    if collector.missing:
        out.notes.append("not in the cache, so read from their pointers only: "
                         + ", ".join(sorted(collector.missing)) + " (run `mlvc pull` for the full report)")
    return out


def merge_duplicate_metrics(commits: list[ReportCommit]) -> dict[str, list[str]]:
    """Show once a metric recorded under one key in several sources ("checkpoints/model.pt: val_acc"
    and "metrics.json: val_acc") whose values agree at every commit recording both: the first
    name keeps the union of their points (a checkpoint's before a metrics file's, then sorted),
    the others are dropped from every commit.  Returns {kept name: [dropped names]}."""
    def order(name: str) -> tuple[bool, str]:
        return name.rpartition(": ")[0].endswith((".json", ".yaml", ".yml")), name

    names = sorted({n for c in commits for n in c.metrics}, key=order)
    by_key: dict[str, list[str]] = {}
    for n in names:
        by_key.setdefault(n.rpartition(": ")[2], []).append(n)
    aliases: dict[str, list[str]] = {}
    for group in by_key.values():
        while len(group) > 1:
            kept, rest = group[0], group[1:]
            same = [o for o in rest if _agree(commits, kept, o)]
            for o in same:
                for c in commits:
                    if o in c.metrics and kept not in c.metrics:  # only the other recorded it here
                        c.metrics[kept] = c.metrics[o]
                        c.metric_changes = [dataclasses.replace(m, name=kept) if m.name == o else m
                                            for m in c.metric_changes]
                    c.metrics.pop(o, None)
                    c.metric_changes = [m for m in c.metric_changes if m.name != o]
            if same:
                aliases[kept] = same
            group = [o for o in rest if o not in same]
    return aliases


def _agree(commits: list[ReportCommit], a: str, b: str) -> bool:
    both = [(c.metrics[a], c.metrics[b]) for c in commits if a in c.metrics and b in c.metrics]
    return bool(both) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0) for x, y in both)


def _check_wanted(repo: Repo, wanted: list[str], in_history: set[str]) -> None:
    """Each PATH must name an artifact (or a directory of them) of the history walked, or exist here."""
    from .common import path_selected

    for w in wanted:
        if any(path_selected(p, [w]) for p in in_history):
            continue
        if (repo.root / w).exists() or (repo.root / (w + pointers.SUFFIX)).exists():
            continue
        raise PathError(w, "is neither a tracked artifact nor a directory of them in this history",
                        hint="run `mlvc ls` to list what is tracked")


# ------------------------------------------------------------------ summaries


def param_effects(report: Report) -> list[tuple[ReportCommit, list[MetricChange]]]:
    """The commits that changed a parameter, each with the metric changes recorded in it."""
    return [(c, [m for m in c.metric_changes if m.old is not None]) for c in report.commits if c.params]


def metric_span(report: Report, name: str) -> tuple[float, float] | None:
    """(first, last) recorded value of a metric over the report."""
    s = report.series(name)
    if not s:
        return None
    return s[0][1], s[-1][1]


# ------------------------------------------------------------------ output


def write_report(path: str | os.PathLike[str], text: str) -> None:
    """Write the rendered report atomically (temp file + rename): a reader never sees half a page."""
    from pathlib import Path

    from ..atomic import write_text
    from ..errors import DiskError

    target = Path(path)
    if target.is_dir():
        raise PathError(path, "is a directory", hint="give a file name, e.g. -o report.html")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise PathError(path, f"cannot write the report: directory {parent} does not exist")
    # the umask decides the page's permissions, as for any other file the user writes
    try:
        write_text(target, text)
    except OSError as exc:
        raise DiskError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
