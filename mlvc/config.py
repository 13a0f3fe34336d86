"""`.mlvc/config` (YAML, committed) and `.mlvc/config.local` (git-ignored, for secrets)."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .atomic import write_text
from .chunking import ChunkerParams
from .errors import ConfigError

MiB = 1024 * 1024
ConfigData = dict[str, Any]  # a config file's mapping, as YAML gives it

# The sections every config has (empty: each setting's default is in `Settings`).
DEFAULTS: ConfigData = {"core": {}, "cache": {}, "gc": {}, "remotes": {}, "default_remote": None}


@dataclass(frozen=True)
class Settings:
    """The settings of `.mlvc/config` (and config.local) that mlvc reads, validated once when the
    config is loaded; each default is written here and nowhere else."""

    chunker: ChunkerParams = field(default_factory=ChunkerParams)  # core.chunker {min, avg, max}
    compression_level: int = 3  # core.compression_level: zstd level; 0 = never compress
    fsync: bool = True  # core.fsync
    float_planes: bool = False  # core.float_planes: store checkpoint floats as byte planes (smaller, slower restore)
    pack_size: int = 32 * MiB  # core.pack_size: bytes (or "32 MiB") of a cache pack
    remote_pack_size: int = 64 * MiB  # core.remote_pack_size: of a pack uploaded to a remote
    cache_dir: str | None = None  # cache.dir
    gc_grace_seconds: float | None = None  # gc.grace_seconds (None: gc's own default)

    @classmethod
    def parse(cls, data: ConfigData, where: str) -> Settings:
        """The settings of a merged config; ConfigError naming the key and the value when one is unusable."""
        core, cache, gc = (_section(data, name, where) for name in ("core", "cache", "gc"))
        default = cls()
        chunker = _section(core, "chunker", where, "core.")
        try:
            mn, avg, mx = (_integer(chunker.get(k, d)) for k, d in (
                ("min", default.chunker.min_size), ("avg", default.chunker.avg_size),
                ("max", default.chunker.max_size)))
        except ValueError:
            raise ConfigError(f"{where}: core.chunker needs integer min/avg/max") from None
        if not (256 <= mn < avg < mx <= 16 * MiB):
            raise ConfigError(f"{where}: core.chunker must satisfy 256 <= min < avg < max <= 16 MiB")
        level = core.get("compression_level", default.compression_level)
        if isinstance(level, bool) or not isinstance(level, int) or not -7 <= level <= 22:
            raise ConfigError(f"{where}: core.compression_level must be an integer from -7 to 22 "
                              f"(0: never compress), not {level!r}")
        fsync = core.get("fsync", default.fsync)
        if not isinstance(fsync, bool):
            raise ConfigError(f"{where}: core.fsync must be true or false, not {fsync!r}")
        float_planes = core.get("float_planes", default.float_planes)
        if not isinstance(float_planes, bool):
            raise ConfigError(f"{where}: core.float_planes must be true or false, not {float_planes!r}")
        cache_dir = cache.get("dir")
        if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir):
            raise ConfigError(f"{where}: cache.dir must be a directory path, not {cache_dir!r}")
        grace = gc.get("grace_seconds")
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0):
            raise ConfigError(f"{where}: gc.grace_seconds must be a number of seconds (0 or more), not {grace!r}")
        return cls(chunker=ChunkerParams(mn, avg, mx), compression_level=level, fsync=fsync, float_planes=float_planes,
                   pack_size=_size(core, "pack_size", default.pack_size, where),
                   remote_pack_size=_size(core, "remote_pack_size", default.remote_pack_size, where),
                   cache_dir=cache_dir, gc_grace_seconds=None if grace is None else float(grace))


def _section(data: ConfigData, name: str, where: str, prefix: str = "") -> ConfigData:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{prefix}{name}' must be a mapping")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(value)
    return value


_SIZE = re.compile(r"\s*(\d+)\s*([KMG]i?B?|B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}


def _size(core: ConfigData, key: str, default: int, where: str) -> int:
    """A byte count: an integer, or a string such as "32 MiB" (binary units)."""
    value = core.get(key)
    if value is None:
        return default
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        n = int(m.group(1)) * _UNITS[(m.group(2) or "")[:1].upper()]
    if n is None or n <= 0:
        raise ConfigError(f"{where}: core.{key} must be a size in bytes, such as 33554432 or \"32 MiB\", "
                          f"not {value!r}")
    return n

SECRET_KEYS = {"secret_access_key", "access_key_id", "session_token", "password", "token", "key", "secret"}


def _merge(base: ConfigData, over: ConfigData) -> ConfigData:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_yaml(path: Path) -> ConfigData:
    from . import safeyaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = safeyaml.load(text, 1024 * 1024) or {}  # committed: a cloned repository's alias bomb
    except safeyaml.YamlRefused as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


class Config:
    """The committed config, then `inherited` (a linked worktree's: its main work tree's
    config.local, which holds this machine's cache dir and remote secrets for the whole
    repository), then this work tree's own config.local; later layers win."""

    def __init__(self, path: Path, local_path: Path, inherited_path: Path | None = None):
        self.path = path
        self.local_path: Path | None = local_path  # None: a committed config read from git (read-only)
        self.inherited_path = inherited_path
        self._load()

    def _load(self) -> None:
        self.shared = _load_yaml(self.path)
        self.inherited = _load_yaml(self.inherited_path) if self.inherited_path is not None else {}
        self.local = _load_yaml(self.local_path) if self.local_path is not None else {}
        self.data = _merge(_merge(_merge(DEFAULTS, self.shared), self.inherited), self.local)
        self._validate()

    @classmethod
    def committed(cls, text: bytes | None, where: str) -> "Config":
        """A read-only config from committed contents alone: another repository's `.mlvc/config`
        read from git (None: it has none).  Only its remotes are taken; secrets in them are
        dropped, never used."""
        from . import safeyaml

        data: ConfigData = {}
        if text is not None:
            try:
                data = safeyaml.load(text.decode("utf-8", "replace"), 1024 * 1024) or {}
            except safeyaml.YamlRefused as exc:
                raise ConfigError(f"{where}: invalid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{where}: expected a mapping at the top level")
        # Only where its objects are: another repository's core/cache settings never apply here.
        data = {k: data[k] for k in ("remotes", "default_remote") if k in data}
        remotes = data.get("remotes")
        if isinstance(remotes, dict):
            data["remotes"] = {name: ({k: v for k, v in entry.items() if k not in SECRET_KEYS}
                                      if isinstance(entry, dict) else entry)
                               for name, entry in remotes.items()}
        self = cls.__new__(cls)
        self.path, self.local_path, self.inherited_path = Path(where), None, None
        self.shared, self.inherited, self.local = data, {}, {}
        self.data = _merge(DEFAULTS, data)
        self._validate()
        return self

    @property
    def settings(self) -> Settings:
        """The validated settings (`Settings`): what the code reads, never the raw mapping."""
        return self._settings

    def own(self, section: str, key: str) -> Any:
        """`section.key` as this work tree's own files set it (None if only inherited or default)."""
        for layer in (self.local, self.shared):
            value = (layer.get(section) or {}).get(key) if isinstance(layer.get(section), dict) else None
            if value is not None:
                return value
        return None

    def _validate(self) -> None:
        self._settings = Settings.parse(self.data, str(self.path))
        if not isinstance(self.data.get("remotes"), dict):
            raise ConfigError(f"{self.path}: 'remotes' must be a mapping")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @staticmethod
    def write(path: Path, data: ConfigData) -> None:
        import yaml

        write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))

    def update_shared(self, fn: Callable[[ConfigData], object]) -> None:
        """Apply `fn(dict)` to the committed config and rewrite it atomically."""
        self._writable()
        data = copy.deepcopy(self.shared)
        fn(data)
        self.write(self.path, data)
        self._load()

    def update_local(self, fn: Callable[[ConfigData], object]) -> None:
        local_path = self._writable()
        data = copy.deepcopy(self.local)
        fn(data)
        self.write(local_path, data)
        os.chmod(local_path, 0o600)
        self._load()

    def _writable(self) -> Path:
        if self.local_path is None:
            raise ConfigError(f"{self.path}: a configuration read from a commit cannot be changed")
        return self.local_path
