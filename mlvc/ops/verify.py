"""`mlvc verify [--remote NAME] [--read-data | --read-data-subset N%] [--repair [--from NAME]]`.

One operation for the cache and any remote (`mlvc.store.verify` does the checking).
Problems are reported with the artifacts they affect (every pointer of the
workspace and of every commit is walked).  `--repair`:

1. packs without an index whose records are all intact get their index back;
2. damaged packs are quarantined (their intact objects copied into new packs
   first, the pack moved under ``quarantine/`` with a record: never deleted);
3. what the affected artifacts now lack is copied from another store: for the
   cache the default remote, for a remote `--from NAME` or else the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING

from dataclasses import dataclass, field

from ..errors import MlvcError, RemoteNotFoundError, describe
from ..pointer import PointerFile
from ..hashing import to_oid
from ..progress import NULL, Progress
from ..store.packs import decode_index
from ..store.readers import FirstThatHas
from ..store.transfer import Artifact, TransferResult, transfer
from ..store.verify import VerifyReport, move_aside, quarantine, reindex_orphan, verify
from .common import reachable
from .selection import Selection, select_artifacts

if TYPE_CHECKING:
    from ..repo import Repo
    from ..store.packstore import PackStore


@dataclass
class VerifyResult:
    report: VerifyReport
    affected: list[str] = field(default_factory=list)  # artifacts (path[@commit]) the problems touch
    repairs: list[str] = field(default_factory=list)  # what --repair did
    refill: TransferResult | None = None
    after: VerifyReport | None = None  # the check after the repair

    @property
    def ok(self) -> bool:
        final = self.after or self.report
        return final.ok and not (self.refill and self.refill.failed)

    def as_dict(self, describe: Callable[[MlvcError], str] = describe) -> dict[str, object]:
        """The result as plain data (`--json`); `describe` words a refill's failures."""
        return {"store": self.report.store, "report": self.report.as_dict(), "affected": self.affected,
                "repairs": self.repairs, "refill": self.refill.as_dict(describe) if self.refill else None,
                "after": self.after.as_dict() if self.after else None, "ok": self.ok}


def _artifacts(repo: Repo) -> list[Artifact]:
    selection = Selection(workspace=True, all_commits=repo.has_git and _has_commits(repo))
    return select_artifacts(repo, selection).artifacts


def _has_commits(repo: Repo) -> bool:
    from ..git import GitRepo

    with GitRepo(repo.root) as git:
        return git.has_commits()


def affected_artifacts(repo: Repo, store: PackStore, report: VerifyReport) -> list[Artifact]:
    """Artifacts that need an object the store serves from a damaged record or pack, or lacks.
    An object whose damaged copy has an intact twin the store reads instead (a push uploaded it
    again after its pack was lost) affects nothing."""
    bad: set[tuple[int, bytes]] = set()
    for p in report.problems:
        try:
            bad.update((e.type, e.oid) for e in decode_index(store.index_bytes(p.pack), p.pack))
        except MlvcError:
            pass  # an unreadable index: its objects are unknown, the walk below finds them missing
    whole = {p.pack for p in report.problems if p.oid is None}  # every record of the pack is suspect
    records = {(p.pack, p.oid) for p in report.problems if p.oid is not None}

    def served_damaged(key: tuple[int, bytes]) -> bool:
        try:
            pack = store.location(*key).pack
        except MlvcError:
            return True
        return pack in whole or (pack, to_oid(key[1])) in records

    reader = FirstThatHas([store, repo.store], primary=store)  # manifests: the checked store, else the cache
    out = []
    for art in _artifacts(repo):
        ptr = art.ptr
        assert isinstance(ptr, PointerFile)  # store.transfer.Artifact types it as object
        try:
            needed = store.with_bases(reachable(reader, ptr))  # a delta's base too
        except MlvcError:
            out.append(art)
            continue
        if any(served_damaged(k) for k in bad.intersection(needed)) or any(not store.has(*k) for k in needed):
            out.append(art)
    return out


def verify_store(repo: Repo, *, remote: str | None = None, read_data: bool | None = None, subset: float | None = None,
                 repair: bool = False, source: str | None = None, progress: Progress = NULL) -> VerifyResult:
    """Check the cache (or `remote`); the cache reads every chunk by default, a remote only its
    indexes and manifests (reading a whole remote is a download of it)."""
    remote_store = None
    if remote is not None:
        _rdef, remote_store = repo.remote_store(remote)
        store = remote_store
    else:
        store = repo.store
    try:
        if read_data is None:
            read_data = remote is None
        report = verify(store, read_data=read_data, subset=subset, progress=progress)
        result = VerifyResult(report)
        needs_walk = report.problems or repair
        affected = affected_artifacts(repo, store, report) if needs_walk else []
        result.affected = [a.name for a in affected]
        if not repair:
            return result
        # The cache's repair moves packs aside and writes into it: exclusive, as gc (an add beside it
        # could rely on an object of a pack being quarantined).  A remote's writers coordinate by
        # their leases and journal instead.
        with store.host_lock(exclusive=True) if remote is None else nullcontext():
            return _repair(repo, store, remote, source, report, result, read_data, subset, progress)
    finally:
        if remote_store is not None:
            remote_store.close()


def _repair(repo: Repo, store: PackStore, remote: str | None, source: str | None, report: VerifyReport,
            result: VerifyResult, read_data: bool, subset: float | None, progress: Progress) -> VerifyResult:
    """Re-index orphans, quarantine damaged packs, refill what the affected artifacts lack."""
    for orphan in report.orphans:
        name = reindex_orphan(store, orphan)
        if name is not None:
            result.repairs.append(f"re-indexed pack {orphan} (as {name})")
        else:
            where = move_aside(store, orphan, "a pack without an index, with damaged records")
            result.repairs.append(f"quarantined damaged pack {orphan} without index -> {where}")
    for pack in report.bad_packs():
        reason = "; ".join(p.message for p in report.problems if p.pack == pack)
        where, saved = quarantine(store, pack, reason)
        result.repairs.append(f"quarantined pack {pack} -> {where} ({saved} intact objects kept)")
    store.refresh()
    affected = affected_artifacts(repo, store, verify(store, read_data=False))
    if affected:
        result.refill = _refill(repo, store, remote, source, affected, progress)
    result.after = verify(store, read_data=read_data, subset=subset, progress=progress)
    return result


def _refill(repo: Repo, store: PackStore, remote: str | None, source: str | None, affected: list[Artifact],
            progress: Progress) -> TransferResult:
    """Copy what `affected` lacks into `store` from the other store (see the module doc)."""
    src_store = None
    try:
        if remote is None:
            try:
                _rdef, src_store = repo.remote_store(source)
            except RemoteNotFoundError as exc:
                result = TransferResult()
                for art in affected:
                    result.fail(art.name, exc)
                return result
            src = src_store
        elif source is not None:
            _rdef, src_store = repo.remote_store(source)
            src = src_store
        else:
            src = repo.store
        return transfer(src, store, affected, jobs=store.jobs, progress=progress,
                        description=f"repair {store.name} from {src.name}", walk_all=True)
    finally:
        if src_store is not None:
            src_store.close()


__all__ = ["verify_store", "VerifyResult"]
