"""What produced a data version: the config (its path and hash) and the sampling seed, recorded
in the pointer's meta beside the content id, and kept honest.

* `config_meta` turns `--config PATH` / `config=` (a file or a dict) and `--seed N` into meta.
* `carry_over` decides what a re-add keeps: when the bytes changed and no config or seed was
  given again, the old `config`, `config_hash` and `seed` are dropped (they described the old
  bytes, not these), with a warning saying so.
* `config_drift` notices a recorded config file whose content changed since the data was added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import json
import os
from pathlib import Path

from ..errors import PathError
from ..hashing import digest, to_oid

if TYPE_CHECKING:
    from ..repo import Repo

PRODUCED_BY = ("config", "config_hash", "seed")


def config_meta(repo: Repo, config: str | os.PathLike[str] | dict[str, Any] | None = None,
                seed: int | str | None = None) -> dict[str, Any]:
    """Pointer meta recording what produced a data version: config path and hash, seed."""
    meta: dict[str, Any] = {}
    if config is not None:
        if isinstance(config, dict):
            meta["config_hash"] = to_oid(digest(json.dumps(config, sort_keys=True).encode()))
        else:
            p = Path(config)
            p = p if p.is_absolute() else Path.cwd() / p
            if not p.is_file():
                raise PathError(config, "config file does not exist")
            meta["config"] = repo.rel(p) if repo.root in p.absolute().parents else str(config)
            meta["config_hash"] = _file_hash(p)
    if seed is not None:
        meta["seed"] = seed
    return meta


def _file_hash(p: Path) -> str:
    return to_oid(digest(p.read_bytes()))


def carry_over(old_meta: Mapping[str, Any] | None, given: Mapping[str, object] | None, changed: bool,
               display: str) -> tuple[dict[str, Any], list[str]]:
    """(meta for the new pointer, warnings) when re-adding an artifact whose pointer had `old_meta`.

    `given`: meta passed to this add; `changed`: whether the content id changed.  A config given
    as a dict (a hash without a path) replaces a recorded config path too."""
    meta = dict(old_meta or {})
    given = dict(given or {})
    if "config_hash" in given and "config" not in given:
        meta.pop("config", None)
    warnings = []
    if changed:
        dropped = [k for k in PRODUCED_BY if k in meta and k not in given]
        for k in dropped:
            del meta[k]
        if dropped:
            warnings.append(f"{display}: its content changed, so the recorded {', '.join(dropped)} no longer "
                            "describe it and were dropped; pass --config/--seed (config=/seed=) to record what "
                            "produced the new bytes")
    meta.update(given)
    return meta, warnings


def config_drift(repo: Repo, meta: dict[str, Any] | None, display: str) -> str | None:
    """A message when the config file recorded in `meta` changed (or vanished) since the data was
    added with it; None when it is unchanged or none is recorded."""
    meta = meta or {}
    rel, recorded = meta.get("config"), meta.get("config_hash")
    if not isinstance(rel, str) or not isinstance(recorded, str):
        return None
    p = Path(rel) if Path(rel).is_absolute() else repo.root / rel
    try:
        now = _file_hash(p)
    except OSError:
        return f"{display}: its config {rel} is gone (the data was added with {recorded})"
    if now == recorded:
        return None
    return (f"{display}: its config {rel} changed since the data was added ({recorded}, now {now}); "
            f"re-create the data and `mlvc add {display} --config {rel}`")
