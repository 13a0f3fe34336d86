"""`mlvc diff`: artifacts, directory files, torch / safetensors tensors by module, meta and params."""

from __future__ import annotations

import json
import os

import pytest
from helpers import commit, git, mlvc

from mlvc.repo import Repo


def diff_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert mlvc("diff", *args, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_torch_checkpoint_diff_names_the_changed_module(repo_dir, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({
        "encoder": torch.nn.Linear(64, 64),
        "decoder": torch.nn.Linear(64, 64),
        "head": torch.nn.Linear(64, 4),
    })
    torch.save(net.state_dict(), repo_dir / "model.pt")
    assert mlvc("add", "model.pt", "--role", "model") == 0
    commit(repo_dir, "v1")
    with torch.no_grad():
        net["decoder"].weight.add_(0.01 * torch.randn_like(net["decoder"].weight))
        net["decoder"].bias.mul_(2.0)
    torch.save(net.state_dict(), repo_dir / "model.pt")
    assert mlvc("add", "model.pt", "--role", "model") == 0
    commit(repo_dir, "tune decoder")

    doc = diff_json(capsys, "HEAD~1", "HEAD")
    [art] = doc["artifacts"]
    assert art["path"] == "model.pt" and art["change"] == "modified"
    [ck] = art["checkpoints"]
    assert ck["format"] == "torch-zip" and ck["error"] is None
    assert set(ck["modules"]) == {"decoder"}
    assert sorted(ck["unchanged_modules"]) == ["encoder", "head"]
    changed = {t["name"]: t for t in ck["modules"]["decoder"]}
    assert set(changed) == {"decoder.weight", "decoder.bias"}
    assert all(t["rel_l2"] > 0 for t in changed.values())
    assert 0 < changed["decoder.weight"]["rel_l2"] < 0.5
    assert changed["decoder.bias"]["rel_l2"] == pytest.approx(1.0, rel=1e-5)  # b -> 2b

    # text output names the module and the tensors
    assert mlvc("diff", "HEAD~1", "HEAD") == 0
    out = capsys.readouterr().out
    section = out.split("checkpoint (torch-zip)")[1]
    assert "decoder:" in section and "decoder.weight" in section and "encoder." not in section

    # added / removed tensors, compared against the workspace pointer (REV_B omitted)
    sd = net.state_dict()
    sd["extra.weight"] = torch.ones(3)
    del sd["head.bias"]
    torch.save(sd, repo_dir / "model.pt")
    assert mlvc("add", "model.pt") == 0
    doc = diff_json(capsys, "HEAD")
    [ck] = doc["artifacts"][0]["checkpoints"]
    assert set(ck["modules"]) == {"extra", "head"}
    assert [t["change"] for t in ck["modules"]["extra"]] == ["added"]
    assert [(t["name"], t["change"]) for t in ck["modules"]["head"]] == [("head.bias", "removed")]


def test_safetensors_diff(repo_dir, capsys):
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {"blocks.0.w": rng.standard_normal((32, 32)).astype("float32"),
               "blocks.1.w": rng.standard_normal((32, 32)).astype("float32"),
               "emb.w": rng.standard_normal((16, 8)).astype("float32")}
    st.save_file(tensors, str(repo_dir / "model.safetensors"))
    assert mlvc("add", "model.safetensors") == 0
    commit(repo_dir, "v1")
    tensors["emb.w"] = tensors["emb.w"] * 1.5
    st.save_file(tensors, str(repo_dir / "model.safetensors"))
    assert mlvc("add", "model.safetensors") == 0
    commit(repo_dir, "v2")
    doc = diff_json(capsys, "HEAD~1", "HEAD")
    [ck] = doc["artifacts"][0]["checkpoints"]
    assert ck["format"] == "safetensors"
    assert list(ck["modules"]) == ["emb"]
    assert ck["modules"]["emb"][0]["rel_l2"] == pytest.approx(0.5, rel=1e-5)
    assert ck["unchanged_modules"] == ["blocks"]


def test_directory_and_meta_and_params_diff(repo_dir, capsys):
    d = repo_dir / "data"
    d.mkdir()
    (d / "keep.txt").write_text("same")
    (d / "gone.txt").write_text("bye")
    (d / "edit.txt").write_text("v1")
    (repo_dir / "params.json").write_text(json.dumps({"lr": 0.1, "layers": 2}))
    (repo_dir / "w.bin").write_bytes(os.urandom(1000))
    assert mlvc("add", "data", "w.bin", "--meta", "acc=0.5") == 0
    commit(repo_dir, "v1")
    git(repo_dir, "tag", "v1")
    (d / "gone.txt").unlink()
    (d / "edit.txt").write_text("version two")
    (d / "new.txt").write_text("hello")
    (repo_dir / "params.json").write_text(json.dumps({"lr": 0.05, "layers": 2}))
    assert mlvc("add", "data") == 0
    assert mlvc("add", "w.bin", "--meta", "acc=0.6") == 0  # same content, new meta
    (repo_dir / "extra.bin").write_bytes(b"x" * 10)
    assert mlvc("add", "extra.bin") == 0
    commit(repo_dir, "v2")
    git(repo_dir, "rm", "-q", "w.bin.mlvc")
    commit(repo_dir, "drop w")

    doc = diff_json(capsys, "v1", "HEAD~1")
    arts = {a["path"]: a for a in doc["artifacts"]}
    files = {f["path"]: f for f in arts["data"]["files"]}
    assert files["gone.txt"] == {"path": "gone.txt", "change": "removed", "old_size": 3, "new_size": None}
    assert files["new.txt"]["change"] == "added" and files["new.txt"]["new_size"] == 5
    assert files["edit.txt"]["change"] == "modified" and files["edit.txt"]["new_size"] == 11
    assert "keep.txt" not in files
    assert arts["w.bin"]["change"] == "modified" and arts["w.bin"]["old_id"] == arts["w.bin"]["new_id"]
    assert arts["w.bin"]["meta"] == {"acc": {"old": 0.5, "new": 0.6}}
    assert arts["extra.bin"]["change"] == "added"
    assert doc["params"] == [{"key": "lr", "source": "params.json", "change": "modified", "old": 0.1, "new": 0.05}]
    assert mlvc("diff", "v1", "HEAD~1", "--no-contents") == 0  # the text form names the same change
    assert "params.json: lr: 0.1 -> 0.05" in capsys.readouterr().out

    doc = diff_json(capsys, "HEAD~1", "HEAD")
    assert [(a["path"], a["change"]) for a in doc["artifacts"]] == [("w.bin", "removed")]
    doc = diff_json(capsys, "v1", "HEAD~1", "data")  # restricted to a path
    assert [a["path"] for a in doc["artifacts"]] == ["data"]
    assert mlvc("diff", "HEAD", "HEAD") == 0
    assert "no artifact or parameter changes" in capsys.readouterr().out


def test_diff_when_objects_are_not_in_the_cache(repo_dir, capsys):
    (repo_dir / "m.pt").write_bytes(os.urandom(5000))
    assert mlvc("add", "m.pt") == 0
    commit(repo_dir, "v1")
    (repo_dir / "m.pt").write_bytes(os.urandom(6000))
    assert mlvc("add", "m.pt") == 0
    commit(repo_dir, "v2")
    assert mlvc("gc", "--workspace", "--grace", "0", "--quiet") == 0
    doc = diff_json(capsys, "HEAD~1", "HEAD")
    [art] = doc["artifacts"]
    assert art["change"] == "modified" and art["old_size"] == 5000 and art["new_size"] == 6000
    assert any("mlvc pull" in (c["error"] or "") for c in art["checkpoints"]) or art["error"]


def test_chunked_reader_is_seekable_and_exact(repo_dir):
    from mlvc.hashing import from_oid
    from mlvc.ops.chunked_reader import ChunkedFile
    from mlvc.pointer import load

    data = os.urandom(700_000)
    (repo_dir / "big.bin").write_bytes(data)
    assert mlvc("add", "big.bin") == 0
    repo = Repo.find(repo_dir)
    try:
        ptr = load(repo_dir / "big.bin.mlvc")
        f = ChunkedFile.for_file(repo.store, from_oid(ptr.oid), "big.bin")
        assert f.seek(0, 2) == len(data)
        for off, n in [(0, 10), (65_000, 200_000), (699_990, 100), (123, 0)]:
            f.seek(off)
            assert f.read(n) == data[off:off + n]
        f.seek(-5, 2)
        assert f.read() == data[-5:]
        assert f.bytes_read <= 4 * len(data)  # only touched chunks, a few re-read after eviction
    finally:
        repo.close()
