"""The CLI edge: messages, exit codes, --json, --quiet; no tracebacks on bad input."""

import json
import os

import pytest

from mlvc import errors


def no_traceback(r):
    assert "Traceback" not in r.err and "Traceback" not in r.out, r


def test_quiet_success_and_json(cli, repo_dir):
    (repo_dir / "m.bin").write_bytes(os.urandom(5000))
    r = cli("add", "-q", "m.bin")
    assert r.code == 0 and r.out == "" and r.err == ""
    r = cli("status", "--exit-code", "--json")
    assert r.code == 0
    (st,) = json.loads(r.out)
    assert st["path"] == "m.bin" and st["state"] == "unchanged" and st["cache_complete"] is True
    r = cli("ls", "--json")
    assert json.loads(r.out)[0]["kind"] == "file"
    r = cli("show", "m.bin", "--field", "id")
    assert r.out.strip().startswith("xxh128:")


def test_add_role_and_meta_are_recorded(cli, repo_dir):
    (repo_dir / "m.bin").write_bytes(b"x")
    assert cli("add", "m.bin", "--role", "model", "--meta", "lr=1e-3", "--meta", "note=first").code == 0
    text = (repo_dir / "m.bin.mlvc").read_text()
    assert "role: model" in text and "lr: 0.001" in text and "note: first" in text


def test_status_exit_code_signals_changes(cli, repo_dir):
    (repo_dir / "m.bin").write_bytes(b"x")
    cli("add", "m.bin")
    (repo_dir / "m.bin").write_bytes(b"y")
    r = cli("status")
    assert r.code == 0 and "m.bin: modified" in r.out  # the comparison ran: not an error
    r = cli("status", "--exit-code")
    assert r.code == 1 and "m.bin: modified" in r.out


@pytest.mark.parametrize("args, code, text", [
    (["add", "does-not-exist"], errors.EXIT_BAD_PATH, "does not exist"),
    (["add", ".."], errors.EXIT_BAD_PATH, "outside the repository"),
    (["add", ".git"], errors.EXIT_BAD_PATH, ".git"),
    (["add", ".mlvc"], errors.EXIT_BAD_PATH, ".mlvc"),
    (["checkout", "unknown-path"], errors.EXIT_BAD_PATH, "neither a tracked path nor a known revision"),
    (["add", "m.bin", "--role", "boss"], errors.EXIT_USAGE, "--role"),
    (["add", "m.bin", "--meta", "novalue"], errors.EXIT_USAGE, "KEY=VALUE"),
    (["frobnicate"], errors.EXIT_USAGE, "No such command"),
])
def test_bad_input_gives_one_line_and_code(cli, repo_dir, args, code, text):
    (repo_dir / "m.bin").write_bytes(b"x")
    r = cli(*args)
    assert r.code == code, r
    assert text in r.err, r
    no_traceback(r)


def test_outside_a_repo(tmp_path):
    from helpers import mlvc_cli

    r = mlvc_cli(tmp_path, "status")
    assert r.code == errors.EXIT_NOT_A_REPO and "not an mlvc repository" in r.err
    r = mlvc_cli(tmp_path, "init")
    assert r.code == errors.EXIT_NOT_A_REPO and "git" in r.err
    assert mlvc_cli(tmp_path, "init", "--no-scm").code == 0
    (tmp_path / "f").write_text("x")
    assert mlvc_cli(tmp_path, "add", "f").code == 0


def test_checkout_without_git(tmp_path):
    """A repository set up with --no-scm restores its pointers (only switching to a revision needs git)."""
    from helpers import mlvc_cli

    assert mlvc_cli(tmp_path, "init", "--no-scm").code == 0
    (tmp_path / "f").write_text("x")
    assert mlvc_cli(tmp_path, "add", "f").code == 0
    (tmp_path / "f").unlink()
    r = mlvc_cli(tmp_path, "checkout")
    assert r.code == 0 and (tmp_path / "f").read_text() == "x", r


@pytest.mark.parametrize("edit, code, text", [
    (lambda s: s.replace("kind: file", "kind: [file"), errors.EXIT_BAD_POINTER, "not valid YAML"),
    (lambda s: s.replace("mlvc: 1", "mlvc: 7"), errors.EXIT_BAD_POINTER, "unsupported format version 7"),
    (lambda s: s.replace("path: m.bin", "path: ../../etc/passwd"), errors.EXIT_BAD_POINTER, "unsafe path"),
    (lambda s: s.replace("path: m.bin", "path: /etc/passwd"), errors.EXIT_BAD_POINTER, "unsafe path"),
])
def test_hand_edited_pointer_checkout_is_refused_without_damage(cli, repo_dir, edit, code, text):
    (repo_dir / "m.bin").write_bytes(b"payload")
    cli("add", "m.bin")
    ptr = repo_dir / "m.bin.mlvc"
    ptr.write_text(edit(ptr.read_text()))
    r = cli("checkout")
    assert r.code == code and text in r.err, r
    no_traceback(r)
    r = cli("status")
    assert r.code == errors.EXIT_BAD_POINTER and "invalid" in r.out
    assert (repo_dir / "m.bin").read_bytes() == b"payload"


def test_corrupt_chunk_on_checkout_reports_and_leaves_workspace(cli, repo_dir):
    f = repo_dir / "m.bin"
    f.write_bytes(os.urandom(1 << 20))
    cli("add", "m.bin")
    original = f.read_bytes()
    f.unlink()
    (pack,) = (repo_dir / ".mlvc" / "cache" / "packs").glob("*.pack")
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 3] ^= 1
    pack.write_bytes(bytes(raw))
    r = cli("checkout")
    assert r.code == errors.EXIT_CORRUPT and "corrupt" in r.err, r
    assert not f.exists()
    r = cli("verify")
    assert r.code == errors.EXIT_CORRUPT and "corrupt" in r.out
    # the workspace file is the only copy left: re-adding it repairs nothing here, so check message names the id
    assert "xxh128:" in r.out
    assert original  # keep flake quiet about unused


def test_permission_denied_is_a_clear_error(cli, repo_dir):
    if os.geteuid() == 0:
        # root ignores file modes; use a directory we cannot list via a read-only bind? Not available:
        # instead make the cache unwritable by replacing it with a file.
        (repo_dir / "m.bin").write_bytes(b"x")
        cache = repo_dir / ".mlvc" / "cache"
        import shutil

        shutil.rmtree(cache)
        cache.write_text("not a directory")
        r = cli("add", "m.bin")
        assert r.code == errors.EXIT_DISK, r
        no_traceback(r)
        assert not (repo_dir / "m.bin.mlvc").exists()
        return
    secret = repo_dir / "secret.bin"
    secret.write_bytes(b"x")
    secret.chmod(0)
    r = cli("add", "secret.bin")
    assert r.code == errors.EXIT_BAD_PATH and "permission denied" in r.err


def test_help_explains(cli):
    r = cli("--help")
    assert r.code == 0 and "Exit codes" in r.out
    r = cli("add", "--help")
    assert "--role" in r.out and "--meta" in r.out


def test_show_a_file_inside_a_tracked_directory(cli, repo_dir):
    d = repo_dir / "ckpt"
    d.mkdir()
    (d / "a.bin").write_bytes(b"a" * 100)
    (d / "b.bin").write_bytes(b"b" * 50)
    assert cli("add", "ckpt").code == 0
    r = cli("show", "ckpt/b.bin", "--json")
    info = json.loads(r.out)
    assert info["path"] == "ckpt/b.bin" and info["size"] == 50 and info["artifact"] == "ckpt"
    r = cli("show", "ckpt/zzz.bin")
    assert r.code == errors.EXIT_BAD_PATH and "not a file of the tracked artifact" in r.err


def test_adding_a_path_git_already_tracks_is_refused(cli, repo_dir):
    from helpers import git

    (repo_dir / "w.bin").write_bytes(b"weights")
    git(repo_dir, "add", "w.bin")
    r = cli("add", "w.bin")
    assert r.code == errors.EXIT_BAD_PATH and "tracked by git" in r.err and "git rm -r --cached w.bin" in r.err
    assert not (repo_dir / "w.bin.mlvc").exists()
    git(repo_dir, "rm", "-q", "--cached", "w.bin")
    assert cli("add", "w.bin").code == 0
