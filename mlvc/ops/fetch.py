"""`mlvc fetch` (remote -> cache, verified) and `mlvc pull` (fetch + checkout)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import EXIT_MISSING_OBJECT, MlvcError, ObjectNotFoundError, PathError, describe
from ..hashing import from_oid, to_oid
from ..pointer import PointerFile
from ..progress import NULL, Progress
from ..store.transfer import Artifact, TransferResult, transfer
from .checkout import CheckoutResult, checkout
from .common import Tracked
from .selection import Selected, Selection, add_errors, select_artifacts

if TYPE_CHECKING:
    from ..repo import Repo
    from .object_source import ObjectSource


class FilesOf:
    """`narrow` for `select_artifacts`: a path inside a directory artifact (`models/m.bin`)
    becomes one file artifact per file it covers, so a fetch moves just their objects.  The
    artifact's tree manifest comes from the cache, else from the remote (one ranged read, kept
    in the cache); `close()` publishes it, before the transfer writes to the cache."""

    def __init__(self, repo: Repo, remote: str | None):
        self.repo, self.remote = repo, remote
        self.source: ObjectSource | None = None
        self.selection: dict[str, str] = {}  # file artifact name -> the selection it came from

    def __call__(self, t: Tracked) -> list[Artifact]:
        from .object_source import ObjectSource

        if self.source is None:
            self.source = ObjectSource(self.repo, self.remote)
        ptr = t.pointer
        entries = t.within(self.source.tree(from_oid(ptr.oid)).entries)
        if not entries:
            raise PathError(t.shown, f"is not a file of the tracked artifact {t.display}",
                            hint=f"`mlvc show {t.display}` lists its files")
        arts = []
        for e in entries:
            name = f"{t.display}/{e.path}"
            self.selection[name] = t.shown
            one = PointerFile(e.path.rsplit("/", 1)[-1], "file", to_oid(e.file_id), e.size, 1, ptr.chunker,
                              source=ptr.source)
            arts.append(Artifact(name, one, t.pointer_path))
        return arts

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None


def select_for_fetch(repo: Repo, selection: Selection, remote: str | None) -> Selected:
    """`select_artifacts`, with paths inside directory artifacts narrowed to their files (`within`
    names the path each such file was selected by)."""
    files_of = FilesOf(repo, remote)
    try:
        arts, errors, _ = select_artifacts(repo, selection, narrow=files_of)
    finally:
        files_of.close()
    return Selected(arts, errors, files_of.selection)


def fetch(repo: Repo, selection: Selection = Selection(), *, remote: str | None = None, jobs: int | None = None,
          progress: Progress = NULL) -> TransferResult:
    """Bring the objects of the selected artifacts into the cache.

    Per-artifact failures (an object missing on the remote or failing its check) are collected
    in the result; the other artifacts complete.  Remote-wide failures raise.
    """
    return fetch_selected(repo, select_for_fetch(repo, selection, remote), remote=remote, jobs=jobs,
                          progress=progress)


def fetch_selected(repo: Repo, selected: Selected, *, remote: str | None = None, jobs: int | None = None,
                   progress: Progress = NULL) -> TransferResult:
    """`fetch` of artifacts already selected (`select_for_fetch`): pull selects once for both steps."""
    arts, errors, _ = selected
    result = TransferResult()
    imported = [a for a in arts if isinstance(a.ptr, PointerFile) and a.ptr.source is not None]
    if arts and not _only_from_sources(repo, remote, arts, imported):
        rdef, rstore = repo.remote_store(remote, jobs=jobs)
        try:
            try:
                repo.store.sweep_tmp()
            except OSError:
                pass
            with repo.store.host_lock():  # shared: a concurrent gc must not delete what we are fetching
                result = transfer(rstore, repo.store, arts, jobs=rstore.jobs, progress=progress,
                                  description=f"fetch from {rdef.name}")
            for problem in rstore.problems:
                result.fail("(remote index)", problem)
        finally:
            rstore.close()
        _explain_absent(repo, rdef.name, arts, result)
        imported = [a for a in imported if a.name in result.failed]
    _from_sources(repo, imported, result)
    add_errors(result, errors)
    return result


_OBJECT_ID = re.compile(r"xxh128:[0-9a-f]{32}(?: \([a-z ]+\))?")  # an id, and the type transfer adds


def absent_from_remote(result: TransferResult) -> list[str]:
    """The artifacts of a fetch whose objects the remote does not have (nor the cache)."""
    return [name for name, code in result.failed_codes.items() if code == EXIT_MISSING_OBJECT]


def _explain_absent(repo: Repo, remote: str, arts: list[Artifact], result: TransferResult) -> None:
    """One short line per artifact whose objects the remote lacks (the CLI adds the one hint that
    can work: push them from where they are), and a note for `status`."""
    from . import remote_gaps

    absent = absent_from_remote(result)
    for name in absent:
        exc = result.failed[name]
        oid = exc.oid if isinstance(exc, ObjectNotFoundError) else name
        # no hint: the CLI adds the one that can work (`push_hint`) once, under all of them
        absent_err = ObjectNotFoundError(oid, where=f"remote {remote!r} and from the cache", hint="")
        result.failed[name] = (absent_err if _OBJECT_ID.fullmatch(oid) else
                               absent_err.reworded(f"its objects is missing from remote {remote!r} and from the cache"))
    by_name = {a.name: a.ptr.oid for a in arts}
    remote_gaps.record(repo, remote, [by_name[n] for n in absent if n in by_name],
                       [by_name[n] for n in result.done if n in by_name])


def push_hint(remote: str) -> str:
    """What to do about artifacts whose objects a remote lacks: a pull cannot help."""
    return (f"they were never pushed to remote {remote!r}: run `mlvc push --all-commits` (or "
            "`mlvc push --rev REV`) on the machine that has them, then pull again")


def _only_from_sources(repo: Repo, remote: str | None, arts: list[Artifact], imported: list[Artifact]) -> bool:
    """Every selected artifact is imported and this project has no remote of its own: their
    sources serve them."""
    if remote is not None or len(imported) < len(arts):
        return False
    from ..remote.config import configured

    return not configured(repo.config)


def _from_sources(repo: Repo, arts: list[Artifact], result: TransferResult) -> None:
    """Imported artifacts this project's remote could not serve (or there is none): fetched from
    the remote their source repository names at the recorded commit."""
    from .imports import fetch_imported

    for a in arts:
        assert isinstance(a.ptr, PointerFile)  # imported: its pointer names its source
        try:
            stats = fetch_imported(repo, a.ptr)
        except MlvcError as exc:
            before = result.failed.get(a.name)
            result.failed[a.name] = exc.reworded(f"{describe(before)}; from its source: {exc}") if before else exc
            continue
        result.failed.pop(a.name, None)
        result.done.append(a.name)
        result.objects += stats.objects_fetched
        result.bytes += stats.bytes_downloaded
        result.requests += stats.requests


@dataclass
class PullResult:
    fetch: TransferResult
    checkout: CheckoutResult
    failed: dict[str, MlvcError] = field(default_factory=dict)  # fetch's and checkout's failures

    @property
    def restored(self) -> list[str]:
        return self.checkout.restored

    @property
    def failed_codes(self) -> dict[str, int]:
        """{artifact: the exit code of what stopped it}."""
        return {name: exc.exit_code for name, exc in self.failed.items()}

    def as_dict(self, describe: Callable[[MlvcError], str] = describe) -> dict[str, object]:
        """The result as plain data (`--json`), each failure as one line (`describe`: how)."""
        return {"fetch": self.fetch.as_dict(describe), "checkout": self.checkout.as_dict(describe),
                "failed": {name: describe(exc) for name, exc in self.failed.items()}}


def pull(repo: Repo, selection: Selection = Selection(), *, remote: str | None = None, jobs: int | None = None,
         force: bool = False, progress: Progress = NULL) -> PullResult:
    """Fetch the workspace's artifacts (plus those of any revisions named), then check out the
    workspace's artifacts whose objects all arrived."""
    selected = select_for_fetch(repo, replace(selection, workspace=True), remote)
    arts, selection_of = selected.artifacts, selected.within
    fetched = fetch_selected(repo, selected, remote=remote, jobs=jobs, progress=progress)
    # a path inside an artifact is checked out as selected, once all of its files arrived
    incomplete = {selection_of[a.name] for a in arts if a.name in selection_of and a.name in fetched.failed}
    ready = list(dict.fromkeys(
        repo.root / selection_of[a.name] if a.name in selection_of else a.pointer_path for a in arts
        if a.pointer_path is not None and a.name not in fetched.failed
        and selection_of.get(a.name) not in incomplete))
    co = checkout(repo, ready, force=force, progress=progress) if ready else CheckoutResult()
    result = PullResult(fetched, co)
    for name, exc in [*fetched.failed.items(), *co.failed.items()]:
        result.failed.setdefault(name, exc)
    return result


__all__ = ["fetch", "pull", "PullResult", "asdict", "absent_from_remote", "push_hint"]
