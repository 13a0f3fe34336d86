"""The Python API beneath the CLI: `import mlvc; mlvc.add(...)`.

Each function finds the repository from `repo` (a path, default: the current
directory), runs one operation and returns its result object.
"""

from __future__ import annotations

from pathlib import Path

from .progress import NULL, Progress
from .repo import Repo


def _repo(repo) -> Repo:
    if isinstance(repo, Repo):
        return repo
    return Repo.find(repo)


def init(path: str | Path | None = None, *, no_scm: bool = False) -> Repo:
    return Repo.init(path, no_scm=no_scm)


def _config_meta(repo: Repo, config, seed) -> dict:
    meta: dict = {}
    if config is not None:
        from .hashing import digest, to_oid

        if isinstance(config, dict):
            import json

            meta["config_hash"] = to_oid(digest(json.dumps(config, sort_keys=True).encode()))
        else:
            p = Path(config)
            p = p if p.is_absolute() else Path.cwd() / p
            from .errors import PathError

            if not p.is_file():
                raise PathError(config, "config file does not exist")
            meta["config"] = repo.rel(p) if repo.root in p.absolute().parents else str(config)
            meta["config_hash"] = to_oid(digest(p.read_bytes()))
    if seed is not None:
        meta["seed"] = seed
    return meta


def add(paths, *, role: str | None = None, meta: dict | None = None, config=None, seed=None,
        repo=None, progress: Progress = NULL):
    """Add one path (returns its AddResult) or a list of paths (returns a list).

    `config` (a file path or a dict) and `seed` are recorded in the pointer's
    meta beside the content id, so a data version says what produced it.
    """
    from .ops.add import add as _add

    r = _repo(repo)
    try:
        full_meta = {**_config_meta(r, config, seed), **(meta or {})}
        single = isinstance(paths, (str, Path))
        results = _add(r, [paths] if single else list(paths), role=role, meta=full_meta, progress=progress)
        return results[0] if single else results
    finally:
        r.close()


def status(paths=None, *, repo=None, check_cache: bool = True, progress: Progress = NULL):
    from .ops.status import status as _status

    r = _repo(repo)
    try:
        return _status(r, paths, check_cache=check_cache, progress=progress)
    finally:
        r.close()


def checkout(paths=None, *, force: bool = False, repo=None, progress: Progress = NULL):
    from .ops.checkout import checkout as _checkout

    r = _repo(repo)
    try:
        return _checkout(r, paths, force=force, progress=progress)
    finally:
        r.close()


def verify(*, repo=None, remote: str | None = None, read_data: bool | None = None, progress: Progress = NULL):
    from .ops.verify import verify_store

    r = _repo(repo)
    try:
        return verify_store(r, remote=remote, read_data=read_data, progress=progress)
    finally:
        r.close()
