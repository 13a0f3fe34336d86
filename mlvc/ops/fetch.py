"""`mlvc fetch` (remote -> cache, verified) and `mlvc pull` (fetch + checkout)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import MlvcError
from ..progress import NULL, Progress
from ..store.transfer import TransferResult, transfer
from .checkout import CheckoutResult, checkout
from .push import add_errors, select_artifacts


def fetch(repo, paths=None, *, remote: str | None = None, revs=(), all_commits: bool = False,
          all_branches: bool = False, jobs: int | None = None, progress: Progress = NULL,
          workspace: bool | None = None, _selected=None) -> TransferResult:
    """Bring the objects of the selected artifacts into the cache.

    Per-artifact failures (an object missing on the remote or failing its check) are collected
    in the result; the other artifacts complete.  Remote-wide failures raise.
    """
    if _selected is None:
        _selected = select_artifacts(repo, paths, revs=revs, all_commits=all_commits,
                                     all_branches=all_branches, workspace=workspace)
    arts, errors = _selected
    result = TransferResult()
    if arts:
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
                result.failed.setdefault("(remote index)", problem)
                result.failed_codes.setdefault("(remote index)", 6)
        finally:
            rstore.close()
    add_errors(result, errors)
    return result


@dataclass
class PullResult:
    fetch: TransferResult
    checkout: CheckoutResult
    failed: dict[str, str] = field(default_factory=dict)
    failed_codes: dict[str, int] = field(default_factory=dict)

    @property
    def restored(self) -> list[str]:
        return self.checkout.restored

    def as_dict(self) -> dict:
        return {"fetch": self.fetch.as_dict(), "checkout": self.checkout.as_dict(), "failed": self.failed}


def pull(repo, paths=None, *, remote: str | None = None, revs=(), all_commits: bool = False,
         all_branches: bool = False, jobs: int | None = None, force: bool = False,
         progress: Progress = NULL) -> PullResult:
    """Fetch the workspace's artifacts (plus those of any revisions named), then check out the
    workspace's artifacts whose objects all arrived."""
    arts, errors = select_artifacts(repo, paths, revs=revs, all_commits=all_commits,
                                    all_branches=all_branches, workspace=True)
    fetched = fetch(repo, remote=remote, jobs=jobs, progress=progress, _selected=(arts, errors))
    ready = [a.pointer_path for a in arts if a.pointer_path is not None and a.name not in fetched.failed]
    co = checkout(repo, ready, force=force, progress=progress) if ready else CheckoutResult()
    result = PullResult(fetched, co)
    for source in (fetched, co):
        for name, msg in source.failed.items():
            result.failed.setdefault(name, msg)
            result.failed_codes.setdefault(name, source.failed_codes.get(name, MlvcError.exit_code))
    return result


__all__ = ["fetch", "pull", "PullResult", "asdict"]
