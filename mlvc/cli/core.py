"""Core commands: init, add, status, checkout, ls, show, verify."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import List, Optional, TYPE_CHECKING

import typer

from .options import JSON, QUIET
from .. import errors
from . import error_table
from .main import app
from .output import open_repo, echo, emit_json, human_size, progress_for

if TYPE_CHECKING:
    from ..ops.checkout import CheckoutResult
    from ..repo import Repo




@app.command()
def init(
    no_scm: bool = typer.Option(False, "--no-scm", help="Use mlvc without a git repository."),
    quiet: bool = QUIET,
) -> None:
    """Set up mlvc in the current git repository (.mlvc/config, committed; cache git-ignored).

    Examples:

    \b
      git init demo && cd demo && mlvc init
      mlvc init --no-scm   # without git
    """
    from ..repo import Repo

    repo = Repo.init(Path.cwd(), no_scm=no_scm)
    if not quiet:
        echo(f"initialised mlvc in {repo.dot}; commit .mlvc/config and .mlvc/.gitignore")


def _parse_meta(items: list[str]) -> dict[str, object]:
    meta: dict[str, object] = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise errors.UsageError(f"--meta expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        meta[k.strip()] = _typed(v)
    return meta


def _typed(v: str) -> object:
    """Numbers and booleans keep their type: lr=1e-3 -> 0.001 (YAML 1.1 alone would keep "1e-3")."""
    import yaml

    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(v) if v else ""
    except yaml.YAMLError:
        return v
    return value if isinstance(value, (bool, type(None), list, dict)) else v


@app.command()
def add(
    paths: List[Path] = typer.Argument(..., help="Files or directories to track."),
    role: Optional[str] = typer.Option(None, "--role", help="model, data or other (shown in manifests; "
                                       "default: the recorded role, else data when --config or --seed is given)."),
    meta: List[str] = typer.Option([], "--meta", help="KEY=VALUE recorded in the pointer (repeatable)."),
    config: Optional[Path] = typer.Option(None, "--config", help="The config file that produced the data: "
                                          "its path and hash are recorded (meta config, config_hash)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="The sampling seed that produced the data (meta seed)."),
    follow_links: Optional[bool] = typer.Option(None, "--follow-links/--no-follow-links",
                                                help="Store what symlinks inside the repository point to (a "
                                                "Hugging Face cache snapshot); links pointing outside stay "
                                                "refused. Remembered in the pointer for status and checkout."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Chunk and store PATHS in the cache; write PATH.mlvc pointers and git-ignore PATHS.

    Re-adding an unchanged path is near-instant (a hash cache skips unchanged files).
    Re-adding changed data drops the config and seed recorded for the old bytes unless
    --config/--seed are given again; a recorded config file that changed since is flagged.

    Examples:

    \b
      mlvc add checkpoints data/processed
      mlvc add model.pt --role model --meta lr=1e-3
      mlvc add data/processed --role data --config configs/data.yaml --seed 7
      mlvc add --follow-links hf/models--gpt2/snapshots/607a30d7   # links into ../../blobs
    """
    from ..ops.add import add as add_op
    from ..ops.data_meta import config_meta
    from ..pointer import FOLLOW_LINKS, ROLES

    if role is not None and role not in ROLES:
        raise errors.UsageError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    tracked_before = {q.resolve() for q in (Path(str(p).rstrip("/\\") + ".mlvc") for p in paths) if q.is_file()}
    with open_repo() as repo:
        full_meta = {**config_meta(repo, config, seed), **_parse_meta(meta)}
        if follow_links is not None:
            full_meta[FOLLOW_LINKS] = follow_links
        results = add_op(repo, [str(p) for p in paths], role=role, meta=full_meta,
                         progress=progress_for(quiet or json_out))
        root = repo.root
    for r in results:
        for w in r.warnings:
            if not quiet:
                echo(f"warning: {w}", err=True)
    if json_out:
        emit_json([r.as_dict() for r in results])
    elif not quiet:
        for r in results:
            first = (root / r.pointer).resolve() not in tracked_before
            what = "added" if first else "updated" if r.changed else "unchanged"
            role = f", role {r.role}" if r.role else ""
            manifests = r.new_bytes - r.new_data_bytes
            new = f"{human_size(r.new_data_bytes)} new" + (f" + {human_size(manifests)} manifests" if manifests else "")
            echo(f"{r.pointer}: {what} {r.oid} ({human_size(r.size)}, {r.files} file"
                 f"{'s' if r.files != 1 else ''}, {new}{role})")


@app.command()
def status(
    paths: List[Path] = typer.Argument(None, help="Artifacts, or files inside one, to check (default: all)."),
    remote: bool = typer.Option(False, "--remote", help="Also report objects the remote lacks (not pushed)."),
    remote_name: Optional[str] = typer.Option(None, "--remote-name", help="Remote for --remote (default: "
                                              "the default remote)."),
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 1 when something differs (as `git diff "
                                   "--exit-code`); without it, 0 whenever the comparison ran."),
    sources: bool = typer.Option(True, "--sources/--no-sources", help="Fetch imported artifacts' sources to "
                                 "say when one moved (`mlvc update` moves it); --no-sources stays offline."),
    json_out: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Compare the workspace and the cache with the pointers (and imported artifacts with their sources).

    Exit code 0 when the comparison ran, even if something differs (with --exit-code: 1 when
    something differs); the error's own code when an artifact could not be compared (5 for an
    unreadable pointer, 4 for a symlink on the way, 6 for a corrupt manifest).

    Examples:

    \b
      mlvc status
      mlvc status --exit-code -q   # in scripts: exit 1 when anything differs
      mlvc status data/processed --json
    """
    from ..ops.status import INVALID, UNCHANGED, status as status_op

    with open_repo() as repo:
        results = status_op(repo, [str(p) for p in paths] if paths else None, progress=progress_for(quiet or json_out))
        remote_missing = None
        if remote or remote_name:
            from ..ops.push import unpushed_counts

            remote_missing = unpushed_counts(repo, remote_name, [r.path for r in results])
        moved = {}
        if sources:
            from ..ops.imports import source_moves

            moved = source_moves(repo, [str(p) for p in paths] if paths else None)
    dirty = [r for r in results if r.state != UNCHANGED or r.cache_complete is False]
    if json_out:
        doc = []
        for r in results:
            d = r.as_dict()
            if remote_missing is not None:
                d["not_on_remote"] = remote_missing.get(r.path, 0)
            if r.path in moved:
                d["source_moved"] = moved[r.path].as_dict()
            doc.append(d)
        emit_json(doc)
    elif not quiet:
        for r in results:
            line = f"{r.path}: {r.state}"
            if r.cache_complete is False:
                line += " (objects missing from the cache" + (": run `mlvc pull`)" if r.hint is None else ")")
            if remote_missing is not None and remote_missing.get(r.path):
                line += f" ({remote_missing[r.path]} objects not pushed)"
            echo(line)
            for label, items in (("added", r.added), ("removed", r.removed), ("modified", r.modified)):
                for item in items:
                    echo(f"    {label}: {item}")
            if r.error:
                echo(f"    note: {r.error}")
            if r.hint:
                echo(f"    hint: {r.hint}")
            if r.config_changed:
                echo(f"    note: {r.config_changed}")
            move = moved.get(r.path)
            if move is not None and move.error:
                echo(f"    note: its source could not be checked: {move.error}")
            elif move is not None:
                what = {True: "the artifact changed there", False: "the artifact is the same there",
                        None: "the artifact is not readable there"}[move.artifact_changed]
                echo(f"    source moved: {move.rev or 'HEAD'} is now {move.commit[:12]} ({what}): "
                     f"run `mlvc update {r.path}`")
        if not results:
            echo("no tracked artifacts (use `mlvc add PATH`)")
    # an artifact that could not be compared at all (unreadable pointer, symlink, corrupt manifest)
    failed = {code for r in results
              if (code := errors.EXIT_BAD_POINTER if r.state == INVALID else r.failed_code) is not None}
    if failed:
        raise typer.Exit(failed.pop() if len(failed) == 1 else errors.EXIT_ERROR)
    if exit_code and (dirty or (remote_missing and any(remote_missing.values()))):
        raise typer.Exit(1)


@app.command()
def ls(
    url: Optional[str] = typer.Argument(None, help="List this repository instead (any git URL or a "
                                        "directory path): git's files and its tracked artifacts."),
    path: Optional[str] = typer.Argument(None, help="With URL: the directory (or file) to list."),
    rev: Optional[str] = typer.Option(None, "--rev", help="With URL: a branch, tag or commit (default: HEAD)."),
    recursive: bool = typer.Option(False, "--recursive", "-R", help="With URL: every file below PATH."),
    json_out: bool = JSON,
) -> None:
    """List tracked artifacts: path, kind, size, files, role and id; or, with URL, what another
    repository holds at a revision (without cloning its history).

    Examples:

    \b
      mlvc ls
      mlvc ls --json
      mlvc ls https://github.com/org/registry datasets --rev v1
      mlvc ls ../registry datasets/images -R --json
    """
    if url is not None:
        from .sources import ls_url

        ls_url(url, path, rev, recursive, json_out)
        return
    if rev is not None or path is not None or recursive:
        raise errors.UsageError("PATH, --rev and --recursive list another repository: give its URL first")
    from ..ops.common import select

    with open_repo() as repo:
        tracked = select(repo)
    rows: list[dict[str, object]] = []  # for --json
    lines: list[str] = []  # for people
    for t in tracked:
        if t.ptr is None:
            rows.append({"path": t.display, "pointer": t.rel_pointer, "error": str(t.error)})
            lines.append(f"{t.display}\tINVALID: {t.error}")
        else:
            p = t.ptr
            rows.append({"path": t.display, "pointer": t.rel_pointer, "kind": p.kind, "size": p.size,
                         "files": p.files, "role": p.role, "id": p.oid})
            lines.append(f"{t.display}\t{p.kind}\t{human_size(p.size)}\t{p.files} files\t{p.role or '-'}\t{p.oid}")
    if json_out:
        emit_json(rows)
        return
    for line in lines:
        echo(line)


def _percent(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = -1.0
    if not 0 < value <= 100:
        raise errors.UsageError(f"--read-data-subset takes a percentage in (0, 100], not {text!r}")
    return value / 100


@app.command()
def verify(
    remote: Optional[str] = typer.Option(None, "--remote", "-r", help="Check this remote instead of the cache."),
    read_data: Optional[bool] = typer.Option(None, "--read-data/--no-read-data",
                                             help="Read and check every chunk (default: yes for the cache, "
                                                  "no for a remote, which checks indexes and manifests)."),
    subset: Optional[str] = typer.Option(None, "--read-data-subset", metavar="N%",
                                         help="Read the chunks of a random N% of the packs."),
    repair: bool = typer.Option(False, "--repair", help="Re-index orphaned packs, quarantine damaged ones "
                                "(never deleted), and copy good objects back from another store."),
    source: Optional[str] = typer.Option(None, "--from", help="Where --repair copies from (default: the default "
                                         "remote for the cache; the cache for a remote)."),
    json_out: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Check the cache, or a remote, against the ids of its objects.

    Exit 0 when everything is intact (after --repair: when it is again), 6 when damage remains.

    Examples:

    \b
      mlvc verify                              # every object in the cache
      mlvc verify --remote origin --read-data-subset 10%
      mlvc verify --repair                     # quarantine bad packs, refetch from the default remote
    """
    from ..ops.verify import verify_store

    with open_repo() as repo:
        result = verify_store(repo, remote=remote, read_data=read_data, subset=_percent(subset), repair=repair,
                              source=source, progress=progress_for(quiet or json_out))
    if json_out:
        emit_json(result.as_dict(describe=error_table.message))
    else:
        report = result.report
        if not quiet or not result.ok:
            for p in report.problems:
                echo(f"corrupt: {p.message}" if p.oid or "corrupt" in p.message else f"corrupt: pack {p.pack}: "
                     f"{p.message}")
            for o in report.orphans:
                echo(f"orphan: pack {o} has no index (a writer died before publishing it)")
            if result.affected:
                echo(f"affected artifacts: {', '.join(result.affected)}")
            for line in result.repairs:
                echo(f"repair: {line}")
            if result.refill is not None:
                for name, exc in result.refill.failed.items():
                    echo(f"not repaired: {name}: {error_table.message(exc)}")
                if result.refill.done:
                    echo(f"restored from another store: {', '.join(result.refill.done)}")
        if not quiet:
            final = result.after or report
            echo(f"{report.store}: {final.packs} packs, {final.objects} objects checked, "
                 f"{len(final.problems)} problems")
    if not result.ok:
        raise typer.Exit(errors.EXIT_CORRUPT)


@app.command()
def checkout(
    targets: List[str] = typer.Argument(None, help="[REV] [PATH...]: a git revision to switch to first "
                                        "(optional), then artifacts, or files inside one, to restore "
                                        "(default: all)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite or remove unsaved workspace changes."),
    to: Optional[Path] = typer.Option(None, "--to", help="Export the artifacts of REV into this directory "
                                      "instead (HEAD and the workspace stay as they are)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Make the workspace match the pointers, writing only what differs, atomically.

    With a revision (`mlvc checkout v1.2`), first switch git to it, refusing when
    that would lose uncommitted work, then restore that commit's artifacts.
    Objects missing from the cache are fetched from the default remote.

    Examples:

    \b
      mlvc checkout             # the workspace bytes match the pointers again
      mlvc checkout models/m.bin      # just that file of the models/ artifact
      mlvc checkout v1 --to /tmp/v1   # export v1's artifacts, HEAD untouched
    """
    from ..ops.revcheckout import checkout_rev

    with open_repo() as repo:
        rev, paths = split_rev(repo, targets or [])
        progress = progress_for(quiet or json_out)
        result = checkout_rev(repo, rev, paths or None, force=force, to=to, progress=progress)
    if json_out:
        emit_json(result.as_dict(describe=error_table.message))
    elif not quiet:
        for name in result.restored:
            echo(f"restored {name}")
        if result.written_files or result.removed_files:
            echo(f"{result.written_files} files written ({human_size(result.written_bytes)}), "
                 f"{result.removed_files} removed")
    if result.kept and not json_out:
        echo(f"note: {', '.join(result.kept)}: not tracked at this commit; left on disk and kept out of git "
             "(.git/info/exclude)", err=True)
    for name, exc in result.failed.items():
        echo(f"error: {name}: {error_table.message(exc)}", err=True)
    if result.failed:
        raise typer.Exit(exit_code_for(result))


def exit_code_for(result: CheckoutResult) -> int:
    """One failure kind and nothing else done: its own code; otherwise the partial-failure code."""
    codes = set(result.failed_codes.values())
    if len(codes) == 1 and not result.restored:
        return codes.pop()
    return errors.EXIT_PARTIAL


def _inside_tracked(arg: str) -> bool:
    """A path inside a tracked directory (`models/m.bin` of `models.mlvc`), restored or not."""
    p = Path(arg).absolute()
    return any(a.with_name(a.name + ".mlvc").is_file() for a in p.parents if a != a.parent)


def split_rev(repo: Repo, targets: list[str]) -> tuple[str | None, list[str]]:
    """The first target is a revision when it is not a path in the workspace but git knows it."""
    if not targets:
        return None, []
    first = targets[0]
    if Path(first).exists() or Path(first + ".mlvc").exists() or not repo.has_git or _inside_tracked(first):
        return None, targets
    from ..git import GitRepo

    try:
        GitRepo(repo.root).resolve(first)
    except errors.RevisionError as exc:
        raise errors.PathError(first, f"is neither a tracked path nor a known revision ({exc})",
                               hint=exc.hint) from None
    return first, targets[1:]


def _echo_tree(mapping: Mapping[str, object], indent: str) -> None:
    """Nested meta (per-module ids, per-file modules) as indented `key: value` lines, not a dict repr."""
    for k, v in mapping.items():
        if isinstance(v, dict) and v:
            echo(f"{indent}{k}:")
            _echo_tree(v, indent + "  ")
        elif isinstance(v, (list, tuple)):
            echo(f"{indent}{k}: {', '.join(str(x) for x in v)}")
        else:
            echo(f"{indent}{k}: {v}")


@app.command()
def show(
    target: Path = typer.Argument(..., help="An artifact or its pointer file."),
    json_out: bool = JSON,
    field: Optional[str] = typer.Option(None, "--field", help="Print one field only (e.g. id, size, "
                                        "or a provenance field such as commit)."),
) -> None:
    """What an artifact contains: its pointer, files, sizes and ids (and checkpoint provenance).

    A checkpoint saved with `mlvc.torch.save` that is not tracked yet shows its birth
    certificate from the file itself, marked untracked.

    Examples:

    \b
      mlvc show checkpoints/model.pt
      mlvc show checkpoints/model.pt --field commit
    """
    from ..ops.show import ShownEntries, show as show_op

    with open_repo() as repo:
        info = show_op(repo, str(target))
    if field:
        found = info.get("provenance")
        prov: Mapping[str, object] = found if isinstance(found, Mapping) else {}
        if field not in info and field not in prov:
            raise errors.MlvcError(f"no field {field!r} in {target}")
        value = info[field] if field in info else prov[field]
        if isinstance(value, ShownEntries):
            value = list(value)
        if value is None:
            raise errors.MlvcError(f"field {field!r} of {target} is empty"
                                   + (f" ({prov['commit_reason']})" if field == "commit" and
                                      prov.get("commit_reason") else ""))
        echo(value if isinstance(value, str) else __import__("json").dumps(value, default=str))
        return
    if json_out:
        emit_json(info, stream="entries")  # a million entries are never one list or string
        return
    for key in ("path", "kind", "id", "size", "files", "role"):
        value = info.get(key)
        if value is not None:
            echo(f"{key}: {human_size(value) if key == 'size' and isinstance(value, int) else value}")
        if key == "path" and info.get("tracked") is False:
            echo(f"tracked: no (run `mlvc add {target}` to track it)")
    if info.get("provenance_error"):
        echo(f"provenance: unreadable: {info['provenance_error']}")
    for key in ("source", "modules", "blocks", "meta", "provenance"):
        tree = info.get(key)
        if tree and isinstance(tree, Mapping):
            echo(f"{key}:")
            _echo_tree(tree, "  ")
    entries = info.get("entries")
    if isinstance(entries, ShownEntries):
        echo("files:")
        for e in entries:
            echo(f"  {e['id']}  {human_size(e['size']):>10}  {e['path']}")
