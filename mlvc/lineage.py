"""Lineage: which code, data and model versions belong together.

* `manifest(repo, rev)` - the version manifest of a revision (or of the
  workspace): commit, branch, dirty flag and every tracked artifact with its
  role, id, size, data config hash + seed, per-module model ids and params, all
  derived from the pointers committed there (read through git, no checkout).
* `current(repo)` - the same for the workspace as a flat `{key: scalar}` dict,
  ready for experiment trackers (W&B config, TensorBoard hparams, MLflow params).
* `log_tensorboard`, `log_wandb`, `log_mlflow` - thin, import-guarded helpers.
* `git_state(path)` - commit / branch / dirty of the work tree, shared with
  `mlvc.torch.save`'s birth certificate.

"Code" is every file git tracks except what is not code (`NOT_CODE`, extended by the config key
`lineage.not_code`): pointer files (`*.mlvc`), `.gitignore`/`.gitattributes` and `.mlvc/` are
what mlvc itself writes and are recorded separately as artifact ids; YAML experiment files and
docs are parameters and prose, recorded (when given) as params.  "Dirty" means uncommitted
changes to code, and a checkpoint loads without a "different code" warning when only such
files changed since it was saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pointer as pointers
from .errors import MlvcError

if TYPE_CHECKING:
    from .git import GitRepo
    from .repo import Repo, RepoArg

# What is not code (git pathspec / fnmatch patterns, where `*` also matches `/`): files mlvc
# writes itself (their changes are artifact versions), experiment configs and docs.
NOT_CODE = ("*.mlvc", "*.gitignore", "*.gitattributes", ".mlvc/*", "*.yaml", "*.yml", "*.md", "*.rst",
            "docs/*")
_META_KNOWN = ("config", "config_hash", "seed", "modules", "blocks", pointers.FOLLOW_LINKS)


# ----------------------------------------------------------------- git state


def _git_repo(path: Path | str) -> GitRepo:
    from .git import GitRepo

    return GitRepo(path)


def not_code(path: Path | str) -> tuple[str, ...]:
    """`NOT_CODE` plus the patterns of `lineage.not_code` in the config of the repository at `path`."""
    from .repo import Repo

    try:
        extra = (Repo.find(Path(path)).config.data.get("lineage") or {}).get("not_code") or []
    except MlvcError:
        extra = []
    return NOT_CODE + tuple(p for p in extra if isinstance(p, str) and p) if isinstance(extra, list) else NOT_CODE


def is_code(name: str, patterns: tuple[str, ...] = NOT_CODE) -> bool:
    from fnmatch import fnmatchcase

    return not any(fnmatchcase(name, p) for p in patterns)


def changed_code_files(git: GitRepo, patterns: tuple[str, ...] = NOT_CODE) -> list[str]:
    """Tracked files with uncommitted changes (staged or not) that are code (`is_code`)."""
    out = git.run_git("status", "--porcelain=v1", "--untracked-files=no", "-z")
    files = []
    entries = iter(out.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        status, name = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            next(entries, None)  # the rename source follows as its own field
        if is_code(name, patterns):
            files.append(name)
    return sorted(files)


def git_state(path: Path | str = ".") -> dict[str, Any]:
    """{"commit", "branch", "dirty", "dirty_diff", "dirty_files"} of the work tree at `path`.

    Outside a git repository (or before the first commit) commit is None and
    "commit_reason" says why; this never raises.
    """
    from .errors import NotARepoError

    state: dict[str, Any] = {"commit": None, "branch": None, "dirty": None}
    try:
        git = _git_repo(path)
    except NotARepoError:
        state["commit_reason"] = f"not inside a git repository ({Path(path).absolute()})"
        return state
    except Exception as exc:  # noqa: BLE001 - a broken .git must not break saving a checkpoint
        state["commit_reason"] = f"cannot read the git repository: {exc}"
        return state
    try:
        state["commit"] = git.head_commit()
        state["branch"] = git.branch()
        if state["commit"] is None:
            state["commit_reason"] = "the repository has no commits yet"
        try:
            files = changed_code_files(git, not_code(path))
        except MlvcError as exc:
            state["dirty_reason"] = str(exc)
            return state
        state["dirty"] = bool(files)
        if files:
            state["dirty_files"] = files[:50]
            state["dirty_diff"] = "xxh3_128:" + (git.dirty_diff_hash() or "")
    finally:
        git.close()
    return state


def code_differs(path: Path | str, commit: str) -> bool | None:
    """Whether tracked code at HEAD differs from `commit` (changes to what is not code ignored).

    None when it cannot be told (no git, unknown commit).
    """
    try:
        git = _git_repo(path)
    except MlvcError:
        return None
    try:
        head = git.head_commit()
        if head is None:
            return None
        if head == commit:
            return False
        try:
            out = git.run_git("diff", "--name-only", "-z", commit, head)
        except MlvcError:
            return None
        patterns = not_code(path)
        return any(is_code(name, patterns) for name in out.split("\0") if name)
    finally:
        git.close()


# -------------------------------------------------------------- the manifest


def _repo(repo: RepoArg) -> Repo:
    from .repo import Repo

    if repo is None:
        return Repo.find()
    if isinstance(repo, Repo):
        return repo
    return Repo.find(repo)


def _artifact(display: str, rel_pointer: str, ptr: pointers.PointerFile) -> dict[str, Any]:
    meta = dict(ptr.meta or {})
    role = ptr.role or ("model" if meta.get("modules") else None)
    entry: dict[str, Any] = {"path": display, "pointer": rel_pointer, "kind": ptr.kind, "role": role,
                             "id": ptr.oid, "size": ptr.size, "files": ptr.files}
    for key in _META_KNOWN:
        if key in meta:
            entry[key] = meta[key]
    params = {k: v for k, v in meta.items() if k not in _META_KNOWN}
    if params:
        entry["params"] = params
    if ptr.source is not None:
        entry["source"] = ptr.source.as_dict()  # imported: which repository, path and commit it came from
    return entry


def _display(rel_pointer: str, ptr: pointers.PointerFile) -> str:
    parent = Path(rel_pointer).parent
    return (parent / ptr.path).as_posix() if str(parent) != "." else ptr.path


def manifest(repo: RepoArg = None, rev: str | None = None) -> dict[str, Any]:
    """The version manifest of `rev` (a git revision) or, with rev None, of the workspace.

    {"rev", "commit", "branch", "dirty", "artifacts": [{path, role, id, size, config_hash,
    seed, modules, params, ...}], "errors": {pointer: message}}
    """
    r = _repo(repo)
    artifacts: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    if rev is None:
        from .ops.common import select

        state = git_state(r.root) if r.has_git else {"commit": None, "branch": None, "dirty": None,
                                                      "commit_reason": "mlvc is used without git"}
        for t in select(r):
            if t.ptr is None:
                errors[t.rel_pointer] = str(t.error)
            else:
                artifacts.append(_artifact(t.display, t.rel_pointer, t.ptr))
        doc = {"rev": None, **state}
    else:
        if not r.has_git:
            raise MlvcError("a revision needs git; this mlvc repository has no git work tree")
        git = _git_repo(r.root)
        try:
            sha = git.resolve(rev)
            branches = sorted(name for name, head in git.branch_heads().items() if head == sha)
            current = git.branch()
            branch = current if current in branches else (branches[0] if branches else None)
            for p in pointers.pointers_at(git, sha, label=sha[:12]):
                if p.ptr is None:
                    errors[p.rel_pointer] = str(p.error)
                    continue
                artifacts.append(_artifact(_display(p.rel_pointer, p.ptr), p.rel_pointer, p.ptr))
        finally:
            git.close()
        doc = {"rev": rev, "commit": sha, "branch": branch, "dirty": False}
    doc["artifacts"] = sorted(artifacts, key=lambda a: a["path"])
    if errors:
        doc["errors"] = errors
    return doc


# ---------------------------------------------------------------- flat dict


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def flatten(doc: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become JSON strings."""
    from .ops.params import flatten as dotted

    out = {} if out is None else out
    out.update((k, _scalar(v)) for k, v in dotted(doc, prefix).items())
    return out


def current(repo: RepoArg = None) -> dict[str, Any]:
    """The workspace's lineage as a flat dict of scalars (None values dropped).

    Keys: mlvc.commit, mlvc.branch, mlvc.dirty, mlvc.artifact.<path>.id / .role / .size /
    .config_hash / .seed / .modules.<module> / .params.<key>.
    """
    m = manifest(repo)
    flat: dict[str, Any] = {"mlvc.commit": m.get("commit"), "mlvc.branch": m.get("branch"),
                            "mlvc.dirty": m.get("dirty")}
    if m.get("dirty_diff"):
        flat["mlvc.dirty_diff"] = m["dirty_diff"]
    for a in m["artifacts"]:
        fields = {k: v for k, v in a.items() if k not in ("path", "pointer", "kind", "files")}
        flatten(fields, f"mlvc.artifact.{a['path']}.", flat)
    return {k: v for k, v in flat.items() if v is not None}


# ----------------------------------------------------------------- trackers


def log_tensorboard(writer: Any, metrics: dict[str, float] | None = None, repo: RepoArg = None) -> dict[str, Any]:
    """Log `current()` to a TensorBoard SummaryWriter: a text table, plus hparams when possible.

    `metrics` are the hparams plugin's metric values (e.g. {"val_acc": 0.8}); they are
    written into the writer's own run directory.  Returns the logged dict.
    """
    flat = current(repo)
    table = "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(flat.items()))
    writer.add_text("mlvc/lineage", table)
    if hasattr(writer, "add_hparams"):
        hparams = {k: v for k, v in flat.items() if isinstance(v, (bool, int, float, str))}
        writer.add_hparams(hparams, dict(metrics or {}), run_name=".")
    if hasattr(writer, "flush"):
        writer.flush()
    return flat


def checkpoint_lineage(path: str | Path, repo: RepoArg = None) -> dict[str, Any]:
    """What produced one checkpoint file, as a flat dict of scalars for a tracker.

    From the birth certificate `mlvc.torch.save` embedded (read without torch and
    without running pickle): `mlvc.checkpoint.commit` / `.branch` / `.dirty`,
    `.params.<key>`, `.metrics.<key>`, `.data.<path>.id` (+ config_hash, seed); and
    the model's per-module ids `mlvc.checkpoint.modules.<module>`, computed from the
    file (the same ids `mlvc add` records).  MlvcError when the file is not a checkpoint.
    """
    from . import checkpoint as ckpt
    from .ops.modules import file_module_ids
    from .ops.provenance import read_provenance

    p = Path(path)
    if not p.is_file():
        raise MlvcError(f"{path}: no such checkpoint file")
    with open(p, "rb") as f:
        try:
            prov = read_provenance(f, p.name)
        except ckpt.CheckpointFormatError as exc:
            raise MlvcError(f"{path}: not a checkpoint mlvc can read ({exc})") from None
    try:
        modules = file_module_ids(p)
    except ckpt.CheckpointFormatError:
        modules = None
    if prov is None and modules is None:
        raise MlvcError(f"{path}: not a torch.save or safetensors checkpoint")
    r = _repo(repo) if repo is not None else None
    shown = p.as_posix()
    if r is not None and r.root in p.absolute().parents:
        shown = Path(p.absolute()).relative_to(r.root).as_posix()
    flat: dict[str, Any] = {"mlvc.checkpoint.path": shown}
    keep = ("commit", "branch", "dirty", "dirty_diff", "params", "metrics", "epoch", "data", "torch",
            "saved_at")
    flatten({k: v for k, v in (prov or {}).items() if k in keep}, "mlvc.checkpoint.", flat)
    for module, mid in sorted((modules or {}).items()):
        flat[f"mlvc.checkpoint.modules.{module}"] = mid
    return {k: v for k, v in flat.items() if v is not None}


def _tracker_dict(repo: RepoArg, checkpoint: str | Path | None) -> dict[str, Any]:
    flat = current(repo)
    if checkpoint is not None:
        flat.update(checkpoint_lineage(checkpoint, repo))
    return flat


def log_wandb(run: Any = None, repo: RepoArg = None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """`run.config.update(...)` with `current()` (the workspace's commit, data ids, model and
    per-module ids, params) and, given a `checkpoint` file, its `checkpoint_lineage`.

    The default run is `wandb.run`.  Returns the logged dict.
    """
    if run is None:
        try:
            import wandb
        except ImportError:
            raise MlvcError("wandb is not installed", hint="pip install wandb, or pass run=") from None
        run = wandb.run
        if run is None:
            raise MlvcError("no active W&B run", hint="call wandb.init() first")
    flat = _tracker_dict(repo, checkpoint)
    run.config.update(flat, allow_val_change=True)
    return flat


def log_mlflow(repo: RepoArg = None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """`mlflow.log_params(...)` of the active run (one is started when none is) with `current()` and,
    given a `checkpoint` file, its `checkpoint_lineage`; mlvc.commit / .branch / .dirty also as tags.

    MLflow caps a parameter value at 6,000 characters: longer values are cut.  Returns the logged dict.
    """
    try:
        import mlflow
    except ImportError:
        raise MlvcError("mlflow is not installed", hint="pip install mlflow-skinny (or mlflow)") from None
    flat = _tracker_dict(repo, checkpoint)
    mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})
    keys = ("mlvc.commit", "mlvc.branch", "mlvc.dirty", "mlvc.checkpoint.commit")
    tags: dict[str, str] = {k: str(flat[k]) for k in keys if k in flat}
    mlflow.set_tags(tags)
    return flat
