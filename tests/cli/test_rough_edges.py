"""The rough edges a new user hits (issue 9): each one a real run of the `mlvc` entry point."""

from __future__ import annotations

import pytest

from helpers import commit, mlvc_cli, write

import mlvc
from mlvc.errors import EXIT_USAGE


def test_version_prints_the_package_version(cli):
    r = cli("--version")
    assert r.code == 0, r
    assert r.out.strip() == f"mlvc {mlvc.__version__}"


@pytest.mark.parametrize("args, names", [
    (("params", "diff"), "REV_A"),
    (("show",), "TARGET"),
    (("remote", "add"), "NAME"),
])
def test_a_missing_required_argument_is_a_one_line_usage_error(cli, args, names):
    r = cli(*args)
    assert r.code == EXIT_USAGE, r
    assert "Traceback" not in r.err and "internal error" not in r.err and "None" not in r.err
    first, *rest = r.err.strip().splitlines()
    assert first.startswith("error: Missing argument") and names in first
    assert all(line.startswith("hint: ") for line in rest)


def test_an_unknown_option_is_a_one_line_usage_error(cli):
    r = cli("status", "--bogus")
    assert r.code == EXIT_USAGE, r
    assert r.err.strip().splitlines()[0] == "error: No such option '--bogus'."


@pytest.mark.parametrize("args, message", [
    (("gc",), "choose what to keep"),
    (("gc", "--workspace", "--all-commits"), "choose what to keep"),
    (("log", "--format", "xml"), "--format must be text, md or json"),
    (("log", "--since", "last week"), "cannot understand the date 'last week'"),
    (("report", "--since", "last week"), "cannot understand the date 'last week'"),
    (("log", "--rev", "no-such-rev"), "unknown revision 'no-such-rev'"),
    (("diff", "no-such-rev..HEAD"), "unknown revision 'no-such-rev'"),
    (("params", "diff", "no-such-rev"), "unknown revision 'no-such-rev'"),
])
def test_wrong_usage_exits_2_with_its_message(cli, repo_dir, args, message):
    write(repo_dir / "params.yaml", "lr: 0.1\n")
    commit(repo_dir, "v1")
    r = cli(*args)
    assert r.code == EXIT_USAGE, r
    assert r.err.startswith(f"error: {message}") and "Traceback" not in r.err


def test_a_parseable_since_still_runs(cli, repo_dir):
    write(repo_dir / "params.yaml", "lr: 0.1\n")
    commit(repo_dir, "v1")
    assert cli("log", "--since", "7.days").code == 0


def test_status_exits_0_when_the_comparison_ran_and_1_with_exit_code(cli, repo_dir):
    write(repo_dir / "d" / "a.bin", b"a")
    assert cli("add", "-q", "d").code == 0
    commit(repo_dir, "v1")
    assert cli("status", "--exit-code").code == 0
    write(repo_dir / "d" / "b.bin", b"b")  # added file
    r = cli("status")
    assert r.code == 0 and "added: b.bin" in r.out, r
    assert cli("status", "--exit-code").code == 1
    assert cli("status", "--exit-code", "--json").code == 1
    r = cli("status", "-q", "--exit-code")
    assert r.code == 1 and r.out == ""
    (repo_dir / "d.mlvc").write_text("not: [valid\n")
    assert cli("status").code == 5  # an unreadable pointer could not be compared at all


def test_the_first_add_says_added_then_unchanged_then_updated(cli, repo_dir):
    write(repo_dir / "m.bin", b"one")
    r = cli("add", "m.bin")
    assert r.code == 0 and r.out.startswith("m.bin.mlvc: added "), r
    r = cli("add", "m.bin")
    assert r.out.startswith("m.bin.mlvc: unchanged "), r
    write(repo_dir / "m.bin", b"two")
    r = cli("add", "m.bin")
    assert r.out.startswith("m.bin.mlvc: updated "), r
    write(repo_dir / "d" / "a.bin", b"a")
    r = cli("add", "d/")
    assert r.out.startswith("d.mlvc: added "), r


def test_gc_quiet_prints_no_warnings(cli, repo_dir):
    write(repo_dir / "m.bin", b"one")
    assert cli("add", "-q", "m.bin").code == 0
    commit(repo_dir, "v1")
    (repo_dir / "broken.mlvc").write_text("not: [valid\n")  # gc warns that it ignores it
    r = cli("gc", "--workspace", "--grace", "0")
    assert r.code == 0 and "warning: broken.mlvc" in r.err, r
    r = cli("gc", "--workspace", "--grace", "0", "-q")
    assert r.code == 0 and r.out == "" and r.err == "", r


def test_show_prints_module_meta_as_lines_not_a_dict_repr(cli, repo_dir):
    torch = pytest.importorskip("torch")
    (repo_dir / "d").mkdir()
    torch.save({"enc.weight": torch.ones(3, 3), "enc.bias": torch.zeros(3), "head.weight": torch.ones(2, 3)},
               repo_dir / "d" / "model.pt")
    assert cli("add", "-q", "d").code == 0
    for target, indent in (("d", "      "), ("d/model.pt", "  ")):
        r = cli("show", target)
        assert r.code == 0, r
        assert "{" not in r.out and "'" not in r.out, r.out
        lines = r.out.splitlines()
        if target == "d":
            assert "meta:" in lines and "  modules:" in lines and "    model.pt:" in lines
        else:  # the file's own ids, not every file's meta again (issue 22)
            assert "modules:" in lines and "meta:" not in lines
        assert any(line.startswith(f"{indent}enc: xxh128:") for line in lines), r.out
        assert any(line.startswith(f"{indent}head: xxh128:") for line in lines), r.out


def test_progress_bars_count_bytes_in_binary_units_as_the_summaries_do():
    from rich.progress import Progress as Bar

    from mlvc.cli.output import RichProgress, human_size

    cols = RichProgress.columns("B")
    bar = Bar(*cols, disable=True)
    task = bar.add_task("push", total=3 * 2**30)
    bar.advance(task, 3 * 2**29)
    rendered = " ".join(str(c.render(bar.tasks[0])) for c in cols[2:4])
    assert "GiB" in rendered and "1.5/3.0 GiB" in rendered, rendered
    assert human_size(3 * 2**29) == "1.5 GiB"
    assert "GB" not in rendered.replace("GiB", "")


def test_a_pointer_in_merge_conflict_names_both_ids_and_the_way_out(cli, repo_dir):
    from helpers import git

    write(repo_dir / "d" / "a.bin", b"a")
    assert cli("add", "-q", "d").code == 0
    commit(repo_dir, "v1")
    git(repo_dir, "checkout", "-q", "-b", "feat")
    write(repo_dir / "d" / "b.bin", b"b")
    assert cli("add", "-q", "d").code == 0
    commit(repo_dir, "feat adds b")
    theirs = cli("show", "d", "--field", "id").out.strip()
    git(repo_dir, "checkout", "-q", "main")
    assert cli("checkout", "-q").code == 0
    write(repo_dir / "d" / "c.bin", b"c")
    assert cli("add", "-q", "d").code == 0
    commit(repo_dir, "main adds c")
    ours = cli("show", "d", "--field", "id").out.strip()
    proc = __import__("subprocess").run(["git", "merge", "-q", "feat"], cwd=repo_dir, capture_output=True)
    assert proc.returncode != 0 and b"<<<<<<<" in (repo_dir / "d.mlvc").read_bytes()

    expected = f"unresolved git merge conflict: ours (HEAD) {ours}, theirs (feat) {theirs}"
    hint = ("keep one side: `git checkout --ours d.mlvc` or `git checkout --theirs d.mlvc`, "
            "then `git add d.mlvc` and `mlvc checkout d`; a directory merges file by file with `mlvc merge d.mlvc`")
    r = cli("status")
    assert r.code == 5 and expected in r.out and f"    hint: {hint}" in r.out.splitlines(), r
    r = cli("show", "d")
    assert r.code == 5 and r.err == f"error: invalid pointer file d.mlvc: {expected}\nhint: {hint}\n", r
    r = cli("checkout")
    assert r.code == 5 and expected in r.err and hint in r.err, r
    assert sorted(p.name for p in (repo_dir / "d").iterdir()) == ["a.bin", "c.bin"]  # nothing touched

    git(repo_dir, "checkout", "--theirs", "d.mlvc")  # what the hint says
    git(repo_dir, "add", "d.mlvc")
    assert cli("checkout", "-q", "d").code == 0
    assert sorted(p.name for p in (repo_dir / "d").iterdir()) == ["a.bin", "b.bin"]
    r = cli("status", "--exit-code")
    assert r.code == 0 and r.out == "d: unchanged\n", r


def test_a_hugging_face_snapshot_of_links_is_added_with_follow_links(cli, repo_dir, tmp_path):
    import os
    import subprocess

    from helpers import git

    blobs, snap = repo_dir / "hf" / "blobs", repo_dir / "hf" / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i in range(7):
        (blobs / f"b{i}").write_bytes(f"weights {i}".encode())
        os.symlink(f"../../blobs/b{i}", snap / f"model-{i}.safetensors")
    (snap / "config.json").write_text("{}")
    r = cli("add", "hf/snapshots/abc")
    assert r.code == 4 and "holds 7 symlinks (hf/snapshots/abc/model-0.safetensors -> ../../blobs/b0" in r.err, r
    assert "and 2 more)" in r.err and "hint: `mlvc add --follow-links hf/snapshots/abc`" in r.err

    r = cli("add", "--follow-links", "hf/snapshots/abc")
    assert r.code == 0 and r.out.startswith("hf/snapshots/abc.mlvc: added "), r
    assert "its links point to files git does not ignore (hf/blobs/b0, hf/blobs/b1, hf/blobs/b2 and 4 more)" in r.err
    (repo_dir / ".gitignore").write_text("/hf/blobs\n")
    r = cli("add", "hf/snapshots/abc")  # remembered: no flag needed again; blobs ignored now: no warning
    assert r.code == 0 and r.out.startswith("hf/snapshots/abc.mlvc: unchanged ") and r.err == "", r
    assert cli("status", "--exit-code").code == 0
    assert cli("checkout").code == 0 and (snap / "model-3.safetensors").is_symlink()  # unchanged: links stay
    import json

    (art,) = json.loads(cli("manifest", "--json").out)["artifacts"]
    assert art["follow_links"] is True and "params" not in art  # how it is read, not a parameter

    (blobs / "b3").write_bytes(b"changed weights")  # the bytes behind a link changed
    r = cli("status")
    assert "modified: model-3.safetensors" in r.out, r
    os.symlink("/etc/hostname", snap / "outside")
    r = cli("add", "hf/snapshots/abc")
    assert r.code == 4 and "1 symlink points outside the repository" in r.err and "outside -> /etc/hostname" in r.err
    (snap / "outside").unlink()

    # elsewhere the artifact is plain files
    assert cli("remote", "add", "origin", str(tmp_path / "remote"), "--default", "-q").code == 0
    (blobs / "b3").write_bytes(b"weights 3")
    commit(repo_dir, "hf snapshot")
    assert cli("push", "-q").code == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True)
    assert mlvc_cli(clone, "pull", "-q").code == 0
    got = clone / "hf" / "snapshots" / "abc" / "model-3.safetensors"
    assert not got.is_symlink() and got.read_bytes() == b"weights 3"
    assert git(repo_dir, "status", "--porcelain") == ""
