"""A format-1 store checked into tests/: every later version must still read it byte-exactly."""

import shutil

from helpers import FIXTURES, assert_expected_bytes, assert_restores_exactly, golden

from mlvc.pointer import load


def test_golden_store_restores_exact_bytes(tmp_path):
    work, _packs = golden("golden_v1", tmp_path)
    assert_restores_exactly(work, ["data", "model.bin"], read_data=False)
    assert load(work / "model.bin.mlvc").oid == "xxh128:4843260ec804cf7eb47f0c4196603aba"


GOLDEN_REMOTE = FIXTURES / "golden_remote_v1"


def test_golden_remote_written_before_the_one_store_redesign_is_read_and_extended(tmp_path):
    """A directory remote written by the code before the one-store redesign (packs, indexes and
    pointers exactly as that version pushed them): a fresh clone pulls it byte-exactly, it
    verifies, and the new code pushes to it next to the old packs."""
    import subprocess

    from helpers import commit, git, mlvc_cli, write

    work = tmp_path / "golden"
    shutil.copytree(GOLDEN_REMOTE, work)
    repo = work / "repo"
    git(repo, "init", "-q", "-b", "main")
    r = mlvc_cli(repo, "pull")
    assert r.code == 0, r
    assert_expected_bytes(repo)
    assert mlvc_cli(repo, "verify", "--remote", "origin", "--read-data").code == 0
    old_packs = sorted(p.name for p in (work / "remote" / "packs").iterdir())
    write(repo / "new.bin", b"written by the new code" * 1000)
    assert mlvc_cli(repo, "add", "-q", "new.bin").code == 0
    commit(repo, "new")
    assert mlvc_cli(repo, "push", "-q").code == 0
    now = sorted(p.name for p in (work / "remote" / "packs").iterdir())
    assert set(old_packs) < set(now)  # old packs untouched, new ones beside them
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True)
    (fresh / ".mlvc" / "config").write_text((repo / ".mlvc" / "config").read_text().replace("../remote",
                                                                                            str(work / "remote")))
    r = mlvc_cli(fresh, "pull")
    assert r.code == 0, r
    assert (fresh / "new.bin").read_bytes() == (repo / "new.bin").read_bytes()
    assert (fresh / "model.bin").read_bytes() == (repo / "model.bin").read_bytes()
