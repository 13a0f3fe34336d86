"""`.mlvc/config` (YAML, committed) and `.mlvc/config.local` (git-ignored, for secrets)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from .errors import ConfigError

DEFAULTS: dict = {
    "core": {
        "chunker": {"min": 16384, "avg": 65536, "max": 262144},
        "compression_level": 3,
        "fsync": True,
        "pack_size": 32 * 1024 * 1024,
    },
    "cache": {"dir": None},
    "remotes": {},
    "default_remote": None,
}

SECRET_KEYS = {"secret_access_key", "access_key_id", "session_token", "password", "token", "key", "secret"}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_yaml(path: Path) -> dict:
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
        read from git (None: it has none).  Secrets in it are dropped, never used."""
        from . import safeyaml

        data: dict = {}
        if text is not None:
            try:
                data = safeyaml.load(text.decode("utf-8", "replace"), 1024 * 1024) or {}
            except safeyaml.YamlRefused as exc:
                raise ConfigError(f"{where}: invalid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{where}: expected a mapping at the top level")
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

    def own(self, section: str, key: str):
        """`section.key` as this work tree's own files set it (None if only inherited or default)."""
        for layer in (self.local, self.shared):
            value = (layer.get(section) or {}).get(key) if isinstance(layer.get(section), dict) else None
            if value is not None:
                return value
        return None

    def _validate(self) -> None:
        core = self.data.get("core")
        if not isinstance(core, dict):
            raise ConfigError(f"{self.path}: 'core' must be a mapping")
        ch = core.get("chunker", {})
        try:
            mn, avg, mx = int(ch["min"]), int(ch["avg"]), int(ch["max"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{self.path}: core.chunker needs integer min/avg/max") from None
        if not (256 <= mn < avg < mx <= 16 * 1024 * 1024):
            raise ConfigError(f"{self.path}: core.chunker must satisfy 256 <= min < avg < max <= 16 MiB")
        if not isinstance(self.data.get("remotes"), dict):
            raise ConfigError(f"{self.path}: 'remotes' must be a mapping")

    def __getitem__(self, key):
        return self.data[key]

    @property
    def core(self) -> dict:
        return self.data["core"]

    @staticmethod
    def write(path: Path, data: dict) -> None:
        import yaml

        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        os.replace(tmp, path)

    def update_shared(self, fn) -> None:
        """Apply `fn(dict)` to the committed config and rewrite it atomically."""
        self._writable()
        data = copy.deepcopy(self.shared)
        fn(data)
        self.write(self.path, data)
        self._load()

    def update_local(self, fn) -> None:
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
