"""Remote definitions: which remotes exist, their URLs, options and secrets.

Where things live:

* ``.mlvc/config`` (committed): ``remotes: {NAME: {url: ..., endpoint_url: ..., region: ...}}`` and
  ``default_remote: NAME``.  Never a secret.
* ``.mlvc/config.local`` (git-ignored, mode 0600): secrets such as ``access_key_id`` and
  ``secret_access_key`` under the same ``remotes: {NAME: {...}}`` shape.
* the environment: ``MLVC_REMOTE_<NAME>_<KEY>`` (name upper-cased, ``-``/``.`` as ``_``) overrides
  both, e.g. ``MLVC_REMOTE_ORIGIN_SECRET_ACCESS_KEY``.  Without explicit keys the usual AWS chain
  (``AWS_*`` variables, ``--profile``) applies.

Relative directory URLs are stored relative to the repository root and resolved against it,
so a committed config works in every clone.

Which remotes a command can use (`known_remotes`): this work tree's ``.mlvc/config`` with its
``config.local`` over it (``mlvc remote add --local`` keeps a whole remote there, for this
machine only and at every commit); then, for what those lack (a commit checked out from
before ``mlvc remote add``), the ``.mlvc/config`` committed at the tip of the current branch,
or with a detached HEAD the newest branch containing it.  ``-r`` also takes a URL or a
directory path of a remote that is configured nowhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ..config import SECRET_KEYS, Config, ConfigData
from ..errors import ConfigError, RemoteNotFoundError

if TYPE_CHECKING:
    from ..store.backend import Backend

Remotes = dict[str, dict[str, Any]]  # a config's `remotes:` mapping: name -> its settings


class Project(Protocol):
    """What remote configuration reads of a repository (a `mlvc.repo.Repo`, a layer above
    this module): its root, whether git tracks it, and its configuration files."""

    @property
    def root(self) -> Path: ...

    @property
    def has_git(self) -> bool: ...

    @property
    def config(self) -> Config: ...

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
S3_OPTIONS = ("endpoint_url", "region", "profile", "access_key_id", "secret_access_key")
ENV_PREFIX = "MLVC_REMOTE_"


def is_secret(key: str) -> bool:
    return key in SECRET_KEYS or key.endswith(("_secret", "_token", "_password", "_key_id", "_access_key"))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"invalid remote name {name!r}: use letters, digits, '-', '_' and '.'")
    return name


def check_key(key: str) -> str:
    if not KEY_RE.match(key or ""):
        raise ConfigError(f"invalid option name {key!r}: use lower-case letters, digits and '_'")
    return key


def check_endpoint_url(value: Any, remote: str) -> str:
    """An S3 endpoint is an http(s) URL naming a host; anything else (a flag swallowed as the
    value of `--endpoint-url`, a bare host name) is refused before it is stored or used."""
    try:
        parts = urlsplit(str(value))
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # out of range or not a number: ValueError
    except ValueError:
        valid = False  # e.g. an unclosed IPv6 bracket
    if not valid:
        raise ConfigError(f"remote {remote}: endpoint_url {str(value)!r} is not an http(s) URL",
                          hint="give it as http://HOST:PORT or https://HOST, e.g. "
                               f"`mlvc remote modify {remote} endpoint_url http://127.0.0.1:9000`")
    return str(value)


def is_local_url(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and scheme.isalpha())  # C:\ style


def normalize_url(url: str, root: Path, cwd: Path | None = None) -> str:
    """What `remote add` stores: remote URLs as given, relative directories relative to the repo root."""
    if not url or not isinstance(url, str):
        raise ConfigError("a remote needs a URL or a directory path")
    if not is_local_url(url):
        parts = urlsplit(url)
        if not (parts.netloc or parts.path.strip("/")):
            raise ConfigError(f"remote URL {url!r} names no bucket or base path")
        return url
    if url.startswith("file:"):
        return url
    path = Path(os.path.expanduser(url))
    if path.is_absolute() or url.startswith("~"):
        return str(path) if not url.startswith("~") else url
    absolute = Path(os.path.abspath((cwd or Path.cwd()) / path))
    return Path(os.path.relpath(absolute, root)).as_posix()


def resolve_url(url: str, root: Path) -> str:
    """The URL a backend is given: relative directories become absolute under the repo root."""
    if is_local_url(url) and not url.startswith("file:"):
        path = Path(os.path.expanduser(url))
        return str(path if path.is_absolute() else (root / path))
    return url


@dataclass
class RemoteDef:
    name: str
    url: str  # as configured
    resolved_url: str  # relative directories made absolute
    options: dict[str, Any] = field(default_factory=dict)  # including secrets: never print
    is_default: bool = False
    jobs: int | None = None
    local: bool = False  # kept in config.local: this machine's only


    @property
    def kind(self) -> str:
        return "local" if is_local_url(self.resolved_url) else urlsplit(self.resolved_url).scheme

    def public(self) -> dict[str, Any]:
        """What `remote list` shows: secret values are never included."""
        shown = {k: ("***" if is_secret(k) else v) for k, v in sorted(self.options.items())}
        return {"name": self.name, "url": self.url, "default": self.is_default, "options": shown,
                "local": self.local}

    def backend(self) -> Backend:
        from ..store.backend import open_backend

        options = dict(self.options)
        if options.get("endpoint_url"):  # hand-edited config or environment: refused as at `remote add`
            check_endpoint_url(options["endpoint_url"], self.name)
        if self.kind not in ("s3", "s3a", "local"):
            return open_backend(self.resolved_url, options)
        return open_backend(self.resolved_url, {k: v for k, v in options.items() if k in S3_OPTIONS})

    def default_jobs(self) -> int:
        if self.jobs:
            return self.jobs
        return 2 if self.kind == "local" else 4


def _env_options(name: str) -> dict[str, str]:
    prefix = ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_"
    return {k[len(prefix):].lower(): v for k, v in os.environ.items() if k.startswith(prefix) and v}


def configured(config: Config) -> Remotes:
    remotes = config["remotes"] or {}
    if not isinstance(remotes, dict):
        raise ConfigError("'remotes' must be a mapping")
    return remotes


def default_name(config: Config) -> str | None:
    return config["default_remote"]


def implied_remote(config: Config) -> str | None:
    """The remote used when none is named: the default one, or the only one configured."""
    remotes = configured(config)
    name = default_name(config)
    if name is None and len(remotes) == 1:
        name = next(iter(remotes))
    return name


def _branch_config(repo: Project) -> tuple[ConfigData | None, str]:
    """(the `.mlvc/config` committed at the branch the checked-out commit belongs to, its
    label): the current branch's tip, or with a detached HEAD the newest local (else
    remote-tracking) branch containing HEAD.  (None, "") without git or such a branch."""
    if not repo.has_git:
        return None, ""
    from .. import safeyaml
    from ..errors import MlvcError
    from ..git import GitRepo

    try:
        git = GitRepo(repo.root)
    except MlvcError:
        return None, ""
    try:
        branch = git.branch()
        refs = [f"refs/heads/{branch}"] if branch else []
        for where in ("refs/heads", "refs/remotes"):
            if refs:
                break
            try:
                out = git.run_git("for-each-ref", "--contains", "HEAD", "--sort=-committerdate",
                                  "--format=%(refname)", where)
            except MlvcError:
                out = ""
            refs = [r for r in out.split() if not r.endswith("/HEAD")]
        for ref in refs:
            try:
                data = git.read_blob(ref, ".mlvc/config")
            except MlvcError:
                continue
            if not data:
                continue
            try:
                doc = safeyaml.load(data, 1024 * 1024)
            except safeyaml.YamlRefused:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("remotes"), dict) and doc["remotes"]:
                short = ref.removeprefix("refs/heads/").removeprefix("refs/remotes/")
                return doc, f"the .mlvc/config of branch {short}"
        return None, ""
    finally:
        git.close()


def known_remotes(repo: Project) -> tuple[Remotes, str | None]:
    """(every usable remote by name, the one used when none is named): this work tree's config
    (committed, then config.local), and for what it lacks the branch's committed config."""
    remotes = {k: v for k, v in configured(repo.config).items() if isinstance(v, dict)}
    implied = implied_remote(repo.config)
    if implied is not None and not (remotes.get(implied) or {}).get("url"):
        implied = None  # config.local holds only its secrets
    if implied is not None and all(v.get("url") for v in remotes.values()):
        return remotes, implied
    doc, _label = _branch_config(repo)
    if doc is None:
        return remotes, implied
    branch_remotes = doc["remotes"]
    for name, entry in branch_remotes.items():
        if isinstance(entry, dict) and entry.get("url") and not (remotes.get(name) or {}).get("url"):
            remotes[name] = {**entry, **(remotes.get(name) or {})}  # this machine's secrets win
    if implied is None:
        implied = doc.get("default_remote") or (next(iter(branch_remotes)) if len(branch_remotes) == 1 else None)
        if implied is not None and not (remotes.get(implied) or {}).get("url"):
            implied = None
    return remotes, implied


def looks_like_url(name: str) -> bool:
    """A `-r` value that cannot be a remote's name: a URL or a directory path."""
    return "/" in name or "\\" in name or name.startswith(("~", ".")) or "://" in name


def load_remote(repo: Project, name: str | None = None) -> RemoteDef:
    """The named remote (default: the implied one of `known_remotes`), secrets merged; a URL or
    a directory path names a remote configured nowhere."""
    remotes = configured(repo.config)
    if name is None or not (remotes.get(name) or {}).get("url"):
        remotes, implied = known_remotes(repo)
        if name is None:
            name = implied
    if name is not None and name not in remotes and looks_like_url(name):
        url = normalize_url(name, repo.root)
        return RemoteDef(name, url, resolve_url(url, repo.root), {})
    if name is None:
        if not any(v.get("url") for v in remotes.values() if isinstance(v, dict)):
            raise RemoteNotFoundError("no remote is configured",
                                      hint="run `mlvc remote add NAME URL --default` (and commit .mlvc/config), "
                                           "or `mlvc remote add --local NAME URL` for this machine only")
        raise RemoteNotFoundError("several remotes are configured and none is the default",
                                  hint="pass --remote NAME or run `mlvc remote default NAME`")
    entry = remotes.get(name)
    if not isinstance(entry, dict) or not entry.get("url"):
        known = ", ".join(sorted(remotes)) or "none"
        raise RemoteNotFoundError(f"no remote named {name!r} (configured: {known})",
                                  hint="run `mlvc remote list`, or `mlvc remote add NAME URL`")
    options = {k: v for k, v in entry.items() if k not in ("url", "jobs") and v is not None}
    options.update(_env_options(name))
    url = str(entry["url"])
    jobs = entry.get("jobs")
    try:
        jobs = int(jobs) if jobs is not None else None
    except (TypeError, ValueError):
        raise ConfigError(f"remote {name}: jobs must be an integer") from None
    return RemoteDef(name, url, resolve_url(url, repo.root), options,
                     is_default=default_name(repo.config) == name, jobs=jobs,
                     local=bool(((repo.config.local.get("remotes") or {}).get(name) or {}).get("url")))


def list_remotes(repo: Project) -> list[RemoteDef]:
    return [load_remote(repo, n) for n in sorted(configured(repo.config))]


def add_remote(repo: Project, name: str, url: str, options: dict[str, Any], *, make_default: bool = False,
               force: bool = False, local: bool = False) -> RemoteDef:
    """Add a remote to the committed config, or (`local`) wholly to config.local: this
    machine's, seen at every commit, never committed."""
    check_name(name)
    stored_url = normalize_url(url, repo.root)
    if options.get("endpoint_url") is not None:
        check_endpoint_url(options["endpoint_url"], name)
    if (configured(repo.config).get(name) or {}).get("url") and not force:
        raise ConfigError(f"remote {name!r} already exists",
                          hint=f"use `mlvc remote modify {name} url URL`, or remove it first")
    shared = {k: v for k, v in options.items() if v is not None and not is_secret(k)}
    secrets = {k: v for k, v in options.items() if v is not None and is_secret(k)}
    if local:
        def update_local(data: ConfigData) -> None:
            remotes = data.setdefault("remotes", {}) or {}
            data["remotes"] = remotes
            remotes[name] = {"url": stored_url, **shared, **secrets}
            if make_default or not (data.get("default_remote") or repo.config.shared.get("default_remote")):
                data["default_remote"] = name

        repo.config.update_local(update_local)
        return load_remote(repo, name)

    def update(data: ConfigData) -> None:
        remotes = data.setdefault("remotes", {}) or {}
        data["remotes"] = remotes
        remotes[name] = {"url": stored_url, **shared}
        if make_default or not data.get("default_remote"):
            data["default_remote"] = name  # the first remote becomes the default

    repo.config.update_shared(update)
    if secrets:
        repo.config.update_local(lambda d: d.setdefault("remotes", {}).setdefault(name, {}).update(secrets))
    return load_remote(repo, name)


def remove_remote(repo: Project, name: str) -> None:
    if name not in configured(repo.config):
        raise RemoteNotFoundError(f"no remote named {name!r}", hint="run `mlvc remote list`")

    def drop(data: ConfigData) -> None:
        (data.get("remotes") or {}).pop(name, None)
        if data.get("default_remote") == name:
            data["default_remote"] = None

    repo.config.update_shared(drop)
    if name in (repo.config.local.get("remotes") or {}) or repo.config.local.get("default_remote") == name:
        repo.config.update_local(drop)


def modify_remote(repo: Project, name: str, key: str, value: str | None, *, local: bool = False) -> str:
    """Set (or with value None, unset) one option.  Returns which file was written."""
    if name not in configured(repo.config):
        raise RemoteNotFoundError(f"no remote named {name!r}", hint="run `mlvc remote list`")
    check_key(key)
    if key == "url" and value is not None:
        value = normalize_url(value, repo.root)
    if key == "url" and value is None:
        raise ConfigError("a remote's url cannot be unset; use `mlvc remote remove`")
    if key == "endpoint_url" and value is not None:
        check_endpoint_url(value, name)
    stored: str | int | None = value
    if key == "jobs" and value is not None:
        try:
            stored = int(value)
        except ValueError:
            raise ConfigError("jobs must be an integer") from None
    to_local = local or is_secret(key) or name not in (repo.config.shared.get("remotes") or {})

    def apply(data: ConfigData) -> None:
        remotes = data.setdefault("remotes", {}) or {}
        data["remotes"] = remotes
        entry = remotes.setdefault(name, {}) or {}
        remotes[name] = entry
        if stored is None:
            entry.pop(key, None)
        else:
            entry[key] = stored

    if to_local:
        repo.config.update_local(apply)
        if is_secret(key) and key in ((repo.config.shared.get("remotes") or {}).get(name) or {}):
            # a secret that was committed by hand earlier: take it out of the shared file
            repo.config.update_shared(lambda d: d["remotes"][name].pop(key, None))
        return str(repo.config.local_path)
    repo.config.update_shared(apply)
    return str(repo.config.path)


def set_default(repo: Project, name: str | None) -> None:
    if name is not None and name not in configured(repo.config):
        raise RemoteNotFoundError(f"no remote named {name!r}", hint="run `mlvc remote list`")

    def apply(data: ConfigData) -> None:
        data["default_remote"] = name

    repo.config.update_shared(apply)
