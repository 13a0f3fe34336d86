"""Optional PyTorch helpers: checkpoints with a birth certificate, safe loading, per-module ids.

    import mlvc.torch as mt
    mt.save(model, "checkpoints/model.pt", optimizer=opt, epoch=3,
            params={"lr": 1e-3}, metrics={"val_acc": 0.81}, data=["data/processed"])
    ckpt = mt.load("checkpoints/model.pt")      # weights_only=True; warns on provenance mismatch
    mt.module_versions(model)                   # {"image_branch": "xxh128:...", ...}
    mt.block_versions(model)                    # {"model.layers.0": "xxh128:...", ...}
    mt.load_tensor("checkpoints/model.pt", "fusion.weight", rev="HEAD~2")

torch is imported inside the functions, so `import mlvc.torch` works without it.
The saved file is a plain `torch.save` zip of
`{"model": state_dict, "optimizer": ..., "epoch": ..., "mlvc": provenance}`;
the provenance holds only plain values, so `mlvc show` reads it without torch
and without executing pickled code.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import struct
import sys
import warnings
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Union

from .atomic import replacing
from .ops.chunked_reader import ChunkedFile  # torch-free; re-exported for users
from .errors import MlvcError, PathError, PointerError, UnsafeCheckpointError

if TYPE_CHECKING:
    from .repo import Repo, RepoArg

DataPaths = Union[str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]], None]
"""The data a checkpoint was trained on: a tracked path (file, directory or pointer), several, or none."""

PROVENANCE_KEY = "mlvc"
PROVENANCE_FORMAT = 1


class ProvenanceWarning(UserWarning):
    """A checkpoint's provenance does not match the current workspace (or the tree is dirty)."""


_warned_dirty = False


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MlvcError("PyTorch is not installed; mlvc.torch needs it",
                        hint="pip install 'mlvc[torch]'") from None
    return torch


# ------------------------------------------------------------- provenance


@functools.cache
def packages_fingerprint() -> tuple[str, int]:
    """("xxh128:<hex>", count) over the sorted `name==version` list of installed distributions."""
    import importlib.metadata

    import xxhash

    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").strip().lower().replace("_", "-")
        if name:
            names.add(f"{name}=={dist.version}")
    ordered = sorted(names)
    return "xxh128:" + xxhash.xxh3_128_hexdigest("\n".join(ordered).encode()), len(ordered)


def _plain(value: Any) -> Any:
    """Values the restricted unpickler (and JSON) can read: tensors/numpy scalars become numbers."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # exact types: TorchVersion, numpy.float64, enums...
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "numel", lambda: getattr(value, "size", 2))() == 1:
        try:
            return _plain(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _environment() -> dict[str, Any]:
    torch = _torch()
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cudnn": None, "device": None}
    try:
        if torch.backends.cudnn.is_available():
            env["cudnn"] = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - cuDNN probing must not break a save
        pass
    try:
        if torch.cuda.is_available():
            env["device"] = torch.cuda.get_device_name(torch.cuda.current_device())
    except Exception:  # noqa: BLE001
        pass
    if env["device"] is None:
        env["device"] = f"cpu ({platform.processor() or platform.machine()})"
    env["platform"] = platform.platform()
    env["packages"], env["packages_count"] = packages_fingerprint()
    return env


def _find_mlvc_repo(start: Path) -> Repo | None:
    from .repo import Repo

    try:
        return Repo.find(start)
    except MlvcError:
        return None


def data_ids(data: DataPaths, start: Path | None = None) -> dict[str, dict[str, Any]]:
    """{repo-relative path: {"id", "config_hash", "seed", ...}} from the pointers of `data` paths."""
    from . import pointer as pointers

    if data is None:
        return {}
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    repo = _find_mlvc_repo(start or Path.cwd())
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        p = Path(item)
        p = p if p.is_absolute() else Path.cwd() / p
        if p.name.endswith(pointers.SUFFIX):
            p = p.with_name(p.name[: -len(pointers.SUFFIX)])
        pp = pointers.pointer_path_for(p)
        if not pp.is_file():
            raise PathError(item, f"is not tracked by mlvc (no pointer file {pp.name})",
                            hint=f"run `mlvc add {item}` (or mlvc.add(...)) before saving the checkpoint")
        ptr = pointers.load(pp, str(pp))
        key = repo.rel(p) if repo is not None and repo.root in p.absolute().parents else str(item)
        entry: dict[str, Any] = {"id": ptr.oid}
        if ptr.role:
            entry["role"] = ptr.role
        for k in ("config", "config_hash", "seed"):
            if k in (ptr.meta or {}):
                entry[k] = _plain(ptr.meta[k])
        if ptr.source is not None:  # imported: the other repository's url, path and commit
            entry["source"] = ptr.source.as_dict()
        out[key] = entry
    return out


def provenance(path: Path | str | None = None, *, params: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None, epoch: int | None = None,
               data: DataPaths = None) -> dict[str, Any]:
    """The birth certificate `save` embeds (also useful on its own, e.g. for a side record)."""
    from . import __version__
    from .lineage import git_state

    global _warned_dirty
    where = Path(path).absolute().parent if path is not None else Path.cwd()
    while not where.exists() and where != where.parent:
        where = where.parent
    prov: dict[str, Any] = {"format": PROVENANCE_FORMAT}
    prov.update(git_state(where))
    prov["params"] = _plain(dict(params or {}))
    prov["metrics"] = _plain(dict(metrics or {}))
    prov["epoch"] = _plain(epoch)
    prov["data"] = data_ids(data, where)
    prov.update(_environment())
    prov["saved_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    prov["mlvc_version"] = __version__
    prov = _plain(prov)
    if prov.get("dirty") and not _warned_dirty:
        _warned_dirty = True
        files = ", ".join(prov.get("dirty_files", [])[:5])
        warnings.warn(f"saving a checkpoint from a work tree with uncommitted changes ({files}); "
                      "the diff hash is recorded, but commit your code to make it reproducible",
                      ProvenanceWarning, stacklevel=3)
    return prov


# -------------------------------------------------------------------- save


def _state_dict(obj: Any) -> Any:
    sd = getattr(obj, "state_dict", None)
    return sd() if callable(sd) else obj


def save(obj_or_model: Any, path: str | os.PathLike[str], *, optimizer: Any = None, epoch: int | None = None,
         params: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None, data: DataPaths = None,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save `{"model": state_dict, "optimizer": ..., "epoch": ..., "mlvc": provenance}` atomically.

    A `.safetensors` path writes the state dict with the provenance as JSON in the
    header metadata (no optimizer there).  Returns the provenance.
    """
    torch = _torch()
    path = Path(path)
    prov = provenance(path, params=params, metrics=metrics, epoch=epoch, data=data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, fsync=True) as tmp:
        if path.name.endswith(".safetensors"):
            if optimizer is not None or extra:
                raise MlvcError("a .safetensors checkpoint holds tensors only; save the optimizer "
                                "or extra objects to a .pt file")
            from safetensors.torch import save_file

            sd = {k: v.contiguous() for k, v in _state_dict(obj_or_model).items()}
            save_file(sd, str(tmp), metadata={PROVENANCE_KEY: json.dumps(prov, sort_keys=True)})
        else:
            doc: dict[str, Any] = {"model": _state_dict(obj_or_model)}
            if optimizer is not None:
                doc["optimizer"] = _state_dict(optimizer)
            if epoch is not None:
                doc["epoch"] = epoch
            for key, value in (extra or {}).items():
                if key in ("model", "optimizer", "epoch", PROVENANCE_KEY):
                    raise MlvcError(f"extra key {key!r} is reserved by mlvc.torch.save")
                doc[key] = value
            doc[PROVENANCE_KEY] = prov
            torch.save(doc, tmp)
    return prov


# -------------------------------------------------------------------- load


def _check_torch_file(path: Path) -> str:
    from . import checkpoint as ckpt

    try:
        with open(path, "rb") as f:
            head = f.read(ckpt.HEAD_SIZE)
    except FileNotFoundError:
        raise PathError(path, "does not exist") from None
    fmt = ckpt.detect_format(head, path.name)
    if fmt is not None:
        return fmt
    if head.startswith(b"PK\x03\x04"):
        raise ckpt.CheckpointFormatError(f"{path}: is a zip file but not a torch.save checkpoint")
    if head[:1] == b"\x80":
        return "torch-legacy"  # pre-1.6 pickle format: torch.load (weights_only) decides
    raise ckpt.CheckpointFormatError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip "
                                     "nor safetensors)")


def load(path: str | os.PathLike[str], *, weights_only: bool = True, map_location: Any = "cpu",
         check: bool = True) -> dict[str, Any]:
    """Load a checkpoint safely; warn (ProvenanceWarning) when it does not match the workspace.

    weights_only=True (the default) never unpickles arbitrary objects: a pickle
    naming anything but tensors and plain containers raises UnsafeCheckpointError.
    A safetensors file loads as {"model": tensors, "mlvc": provenance}.
    """
    import pickle

    torch = _torch()
    path = Path(path)
    fmt = _check_torch_file(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        from . import checkpoint as ckpt

        with open(path, "rb") as f:
            extras = ckpt.read_layout(f).extras
        device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
        doc = {"model": load_file(str(path), device=device)}
        prov = _parse_provenance(extras.get(PROVENANCE_KEY))
        if prov is not None:
            doc[PROVENANCE_KEY] = prov
    else:
        try:
            doc = torch.load(path, weights_only=weights_only, map_location=map_location)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling failed"
            if weights_only:
                raise UnsafeCheckpointError(
                    f"{path}: refusing to load: the checkpoint's pickle names objects other than tensors "
                    f"and plain values ({first[:200]})",
                    hint="load it with weights_only=False only if you trust where it came from") from None
            raise MlvcError(f"{path}: cannot load checkpoint: {first[:200]}") from None
        except (RuntimeError, EOFError, ValueError) as exc:
            from .checkpoint import CheckpointFormatError

            raise CheckpointFormatError(f"{path}: cannot load checkpoint: {str(exc)[:200]}") from None
    if check and isinstance(doc, dict):
        check_provenance(doc.get(PROVENANCE_KEY), path)
    return doc


def _parse_provenance(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def provenance_mismatches(prov: dict[str, Any] | None, path: Path | str) -> list[str]:
    """Reasons the provenance does not match the workspace around `path` (empty: it matches)."""
    from .lineage import code_differs, git_state

    if not isinstance(prov, dict):
        return []
    where = Path(path).absolute().parent
    reasons = []
    commit = prov.get("commit")
    now = git_state(where)
    if commit and now.get("commit") and commit != now["commit"]:
        differs = code_differs(where, commit)
        if differs or differs is None:
            reasons.append(f"saved at commit {commit[:12]}, the workspace is at {now['commit'][:12]} "
                           "with different code")
    if prov.get("dirty"):
        reasons.append("saved from a work tree with uncommitted changes")
    if now.get("dirty"):
        reasons.append("the workspace has uncommitted code changes")
    from . import pointer as pointers

    repo = _find_mlvc_repo(where)
    for rel, info in (prov.get("data") or {}).items():
        if repo is None or not isinstance(info, dict):
            break
        pp = pointers.pointer_path_for(repo.root / rel)
        try:
            cur = pointers.load(pp, rel).oid
        except PointerError:
            reasons.append(f"data {rel} is not tracked in this workspace")
            continue
        if cur != info.get("id"):
            reasons.append(f"data {rel} is now {cur}, the checkpoint was trained on {info.get('id')}")
    return reasons


def check_provenance(prov: dict[str, Any] | None, path: Path | str) -> list[str]:
    reasons = provenance_mismatches(prov, path)
    if reasons:
        warnings.warn(f"{path}: provenance does not match the workspace: " + "; ".join(reasons),
                      ProvenanceWarning, stacklevel=3)
    return reasons


# ---------------------------------------------------------- module versions


def module_versions(model_or_state_dict: Any) -> dict[str, str]:
    """{top-level module: "xxh128:<hex>"}, the same ids `mlvc add` records for a saved checkpoint."""
    return _versions(model_or_state_dict)[0]


def block_versions(model_or_state_dict: Any) -> dict[str, str]:
    """{repeated block ("model.layers.5"): "xxh128:<hex>"}, the block ids `mlvc add` records (meta
    `blocks`) for a saved checkpoint; {} for a model without numbered blocks."""
    return _versions(model_or_state_dict)[1]


def _versions(model_or_state_dict: Any) -> tuple[dict[str, str], dict[str, str]]:
    import xxhash

    from .checkpoint import DTYPE_ITEMSIZE, block_of, group_by_module, state_dict_wrapper

    torch = _torch()
    sd = _state_dict(model_or_state_dict)
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    wrapper = state_dict_wrapper(tensors)
    modules: dict[str, str] = {}
    blocks: dict[str, Any] = {}
    for module, names in sorted(group_by_module(tensors).items()):
        h = xxhash.xxh3_128()
        for name in sorted(names):
            block = block_of(name, module, wrapper)
            hashers = [h] if block is None else [h, blocks.setdefault(block, xxhash.xxh3_128())]
            t = tensors[name].detach()
            dtype = str(t.dtype).removeprefix("torch.")
            header = json.dumps([name, dtype, list(t.shape)]).encode()
            data = b""
            if t.numel():
                flat = t.cpu().contiguous().reshape(-1)
                data = (flat.view(torch.uint8).numpy().tobytes() if _has_numpy()
                        else bytes(flat.view(torch.uint8).tolist()))
            for hasher in hashers:
                hasher.update(struct.pack("<Q", len(header)) + header)
                hasher.update(struct.pack("<Q", t.numel() * DTYPE_ITEMSIZE[dtype]))
                hasher.update(data)
        modules[module] = "xxh128:" + h.hexdigest()
    return modules, {b: "xxh128:" + x.hexdigest() for b, x in sorted(blocks.items())}


@functools.cache
def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------ chunked reads


def open_tracked(path: str | os.PathLike[str], rev: str | None = None, repo: RepoArg = None,
                 remote: str | None = None) -> ChunkedFile:
    """A ChunkedFile over one file of a tracked artifact as committed at `rev` (None: the
    workspace's pointer), read from the local cache; objects it lacks come from `remote`
    (default: the default remote) and are kept in the cache."""
    from .ops.model_files import open_artifact_file, open_view

    view, entry, _ = open_view(path, rev, repo, remote)
    try:
        return open_artifact_file(view, entry)
    finally:
        # publishes what was fetched so far; the file keeps reading through the source (and so
        # through the repository's cache, which stays open)
        view.close()


_TORCH_DTYPES = {"float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                 "uint8", "bool", "complex64", "complex128", "uint16", "uint32", "uint64",
                 "float8_e4m3fn", "float8_e5m2"}


def load_tensor(path: str | os.PathLike[str], name: str, rev: str | None = None, *, repo: RepoArg = None,
                remote: str | None = None) -> Any:
    """One tensor of a tracked checkpoint at revision `rev` (None: the workspace's pointer).

    `path` is a checkpoint file, a Hugging Face sharded-checkpoint index
    (`model.safetensors.index.json`: its `weight_map` says which shard to read, so the same
    call works across revisions that were sharded differently), or a model directory (its
    index, or its one weights file).  `repo` is a Repo or the path of one (a relative `path`
    is then relative to its root), as for `mlvc.open`.
    Only the chunks covering the file's metadata and the tensor's bytes are read, from
    the cache, or, when the cache lacks them, as ranged reads of the remote's packs
    (`remote`, default: the default remote); the checkpoint is never materialised.
    `name` may omit a `model.` wrapper.
    """
    from . import checkpoint as ckpt

    torch = _torch()
    from .hashing import from_oid

    from .ops.model_files import close_view, open_artifact_file, open_view, shard_for

    view, entry, opened = open_view(path, rev, repo, remote, directory_ok=True)
    try:
        if ckpt.is_shard_index(entry.path):
            entry = shard_for(view, entry, name, path)
        f = open_artifact_file(view, entry)
    except BaseException:
        close_view(view, opened)
        raise
    try:
        head = f.read(ckpt.HEAD_SIZE)
        if ckpt.detect_format(head, f.name) is None:
            raise ckpt.CheckpointFormatError(f"{path}: not a torch.save zip or safetensors checkpoint")
        file_id = from_oid(entry.ref)
        view.source.prefetch(file_id, ckpt.layout_ranges(f))  # the zip's local headers, in one batch
        layout = ckpt.read_layout(f)
        info = None
        for candidate in (name, *(w + name for w in ckpt.STATE_DICT_WRAPPERS)):
            try:
                info = layout.tensor(candidate)
                break
            except KeyError:
                continue
        if info is None:
            names = ", ".join(t.name for t in layout.tensors[:8]) + (", ..." if len(layout.tensors) > 8 else "")
            raise MlvcError(f"{path}: no tensor named {name!r} (has {names})")
        if info.dtype not in _TORCH_DTYPES:
            raise MlvcError(f"{path}: tensor {info.name!r} has dtype {info.dtype}, which load_tensor does not read")
        view.source.prefetch(file_id, [(info.offset, info.nbytes)])
        raw = ckpt.tensor_bytes(f, info)
    finally:
        f.close()
        close_view(view, opened)
    dtype = getattr(torch, info.dtype)
    if layout.byteorder != sys.byteorder:
        raise MlvcError(f"{path}: checkpoint byte order {layout.byteorder} differs from this machine's")
    if not raw:
        return torch.empty(info.shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(info.shape).clone()


__all__ = ["save", "load", "load_tensor", "module_versions", "block_versions", "provenance", "ProvenanceWarning",
           "ChunkedFile", "open_tracked", "data_ids", "packages_fingerprint"]
