"""A pull whose objects are on no remote: one line per artifact, a hint that can work (push
them from where they are), and a `status` that does not send the user back to `mlvc pull`."""

from __future__ import annotations

from helpers import commit, git, mlvc_cli


def errors_of(err: str) -> list[str]:
    assert "Traceback" not in err and "internal error" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_objects_never_pushed(repo_dir, tmp_path):
    r = repo_dir
    (r / "data").mkdir()
    for i in range(3):
        (r / f"data/f{i}").write_text(f"{i}\n")
    (r / "m.bin").write_bytes(b"m1" * 100)
    (r / "n.bin").write_bytes(b"n1" * 100)
    assert mlvc_cli(r, "add", "data", "m.bin", "n.bin").code == 0
    commit(r, "v1")
    assert mlvc_cli(r, "remote", "add", "shared", str(tmp_path / "nfs")).code == 0
    (r / "m.bin").write_bytes(b"m2" * 100)
    (r / "n.bin").write_bytes(b"n2" * 100)
    assert mlvc_cli(r, "add", "m.bin", "n.bin").code == 0
    commit(r, "v2 and the remote")
    assert mlvc_cli(r, "push").code == 0  # the workspace's artifacts only: v1's m.bin and n.bin stay here
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(r), str(clone))
    git(clone, "checkout", "-q", "HEAD~1")

    out = mlvc_cli(clone, "pull")
    assert out.code == 12, out
    lines = errors_of(out.err)
    assert [line.split(":")[1].strip() for line in lines] == ["m.bin", "n.bin"]
    for line, name in zip(lines, ("m.bin", "n.bin"), strict=True):
        assert line.startswith(f"error: {name}: object xxh128:") and line.endswith(
            "(file) is missing from remote 'shared' and from the cache"), line
    hints = [line for line in out.err.splitlines() if line.startswith("hint:")]
    assert hints == ["hint: they were never pushed to remote 'shared': run `mlvc push --all-commits` (or "
                     "`mlvc push --rev REV`) on the machine that has them, then pull again"]
    assert "mlvc pull" not in out.err

    out = mlvc_cli(clone, "status")
    assert "mlvc pull" not in out.out, out.out
    assert "m.bin: missing (objects missing from the cache)" in out.out
    assert "remote 'shared' lacked them at the last fetch" in out.out and "mlvc push --all-commits" in out.out

    out = mlvc_cli(clone, "checkout")
    assert out.code == 7, out
    lines = errors_of(out.err)
    assert len(lines) == 2 and all("mlvc pull" not in line and line.count("xxh128:") == 1 for line in lines), lines
    assert lines[0].startswith("error: m.bin: object xxh128:") and "is missing from the cache and from remote " \
        "'shared': they were never pushed" in lines[0], lines[0]

    # pushed from where they are: the hint worked, and status no longer mentions it
    assert mlvc_cli(r, "push", "--all-commits").code == 0
    out = mlvc_cli(clone, "pull")
    assert out.code == 0, out
    out = mlvc_cli(clone, "status")
    assert "missing" not in out.out and "lacked" not in out.out, out.out


def test_a_checkout_whose_fetch_fails_says_why_in_one_line(repo_dir, tmp_path):
    """The objects are missing from the cache and fetching them failed as a whole (the remote's
    directory is gone): the line names the remote and why, with the fetch error's own words."""
    r = repo_dir
    (r / "m.bin").write_bytes(b"m1" * 100)
    assert mlvc_cli(r, "remote", "add", "shared", str(tmp_path / "nfs"), "--default").code == 0
    assert mlvc_cli(r, "add", "m.bin").code == 0
    commit(r, "v1")
    assert mlvc_cli(r, "push").code == 0
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(r), str(clone))
    (tmp_path / "nfs").rename(tmp_path / "nfs-gone")
    (tmp_path / "nfs").write_text("not a directory\n")

    out = mlvc_cli(clone, "checkout")
    assert out.code == 7, out
    lines = errors_of(out.err)
    assert len(lines) == 1, out.err
    assert lines[0].startswith("error: m.bin: object xxh128:") and \
        "; fetching it from remote 'shared' failed (" in lines[0] and \
        lines[0].endswith("): run `mlvc pull` once that is fixed"), lines[0]
