"""mlvc.torch: birth certificates, safe loading, module ids, one tensor from the cache."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from helpers import git
from torch import nn

import mlvc
import mlvc.torch as mt
from mlvc.checkpoint import CheckpointFormatError
from mlvc.errors import MlvcError, NotARepoError, PathError, UnsafeCheckpointError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(64, 256)
        self.head = nn.Linear(256, 10)


@pytest.fixture(autouse=True)
def _fresh_dirty_warning(monkeypatch):
    monkeypatch.setattr(mt, "_warned_dirty", False)


def commit_all(repo: Path, msg: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD").strip()


def test_save_embeds_birth_certificate_and_load_roundtrips(repo_dir):
    (repo_dir / "train.py").write_text("print('train')\n")
    sha = commit_all(repo_dir, "code")
    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "x.bin").write_bytes(b"abc" * 100)
    data_v = mlvc.add("data", role="data", config={"n": 3}, seed=7)
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean save warns about nothing
        prov = mt.save(model, "ckpt/model.pt", optimizer=opt, epoch=3, params={"lr": 0.1},
                       metrics={"acc": torch.tensor(0.5)}, data=["data"])
    assert prov["commit"] == sha and prov["branch"] == "main" and prov["dirty"] is False
    assert prov["params"] == {"lr": 0.1} and prov["metrics"] == {"acc": 0.5} and prov["epoch"] == 3
    assert prov["data"]["data"]["id"] == data_v.oid and prov["data"]["data"]["seed"] == 7
    assert prov["data"]["data"]["config_hash"].startswith("xxh128:")
    for key in ("python", "torch", "cuda", "cudnn", "device", "packages", "saved_at", "mlvc_version"):
        assert key in prov
    assert prov["packages"].startswith("xxh128:") and prov["packages_count"] > 10
    assert not list((repo_dir / "ckpt").glob(".*tmp*"))  # atomic: no temp file left behind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = mt.load("ckpt/model.pt")
    assert set(doc) >= {"model", "optimizer", "epoch", "mlvc"}
    assert torch.equal(doc["model"]["head.weight"], model.head.weight)
    assert doc["mlvc"]["commit"] == sha


def test_module_versions_match_pointer_meta_and_change_per_module(repo_dir):
    torch.manual_seed(0)
    model = Net()
    mt.save(model, "model.pt")
    mlvc.add("model.pt")
    from mlvc.pointer import load

    meta = load(repo_dir / "model.pt.mlvc").meta
    ids = mt.module_versions(model)
    assert set(ids) == {"encoder", "head"}
    assert meta["modules"] == ids  # the same algorithm, torch-free at add time
    assert mt.module_versions(model.state_dict()) == ids
    with torch.no_grad():
        model.head.bias += 1
    ids2 = mt.module_versions(model)
    assert ids2["encoder"] == ids["encoder"] and ids2["head"] != ids["head"]


def test_load_tensor_reads_one_tensor_at_any_revision_from_the_cache(repo_dir):
    torch.manual_seed(0)
    big = nn.ModuleDict({f"l{i}": nn.Linear(256, 256) for i in range(12)})  # ~3 MiB
    mt.save(big, "model.pt")
    mlvc.add("model.pt")
    v1 = commit_all(repo_dir, "v1")
    old = big["l5"].weight.detach().clone()
    with torch.no_grad():
        big["l5"].weight.mul_(2)
    mt.save(big, "model.pt")
    mlvc.add("model.pt")
    commit_all(repo_dir, "v2")
    os.remove("model.pt")  # only the cache has it now
    t1 = mt.load_tensor("model.pt", "l5.weight", rev=v1)
    t2 = mt.load_tensor("model.pt", "model.l5.weight", rev="HEAD")
    t_ws = mt.load_tensor("model.pt", "l5.weight")  # the workspace pointer
    assert torch.equal(t1, old) and torch.equal(t2, old * 2) and torch.equal(t_ws, t2)
    f = mt.open_tracked("model.pt", rev=v1)
    from mlvc import checkpoint as ckpt

    layout = ckpt.read_layout(f)
    ckpt.tensor_bytes(f, layout.tensor("model.l5.weight"))
    size = (repo_dir / ".mlvc").exists() and f.seek(0, os.SEEK_END)
    assert f.bytes_read < size / 2, (f.bytes_read, size)  # never materialised
    with pytest.raises(Exception, match="no tensor named"):
        mt.load_tensor("model.pt", "nope.weight")


def test_load_tensor_and_open_tracked_take_the_repository_as_a_path(repo_dir, tmp_path, monkeypatch):
    """`repo=` is a path as everywhere in the API (it crashed with "'str' object has no attribute
    'root'"), and names the repository when the current directory is elsewhere."""
    lin = nn.Linear(4, 2)
    mt.save(lin, "model.pt")
    mlvc.add("model.pt")
    expected = lin.weight.detach()
    monkeypatch.chdir(tmp_path)
    for repo in (str(repo_dir), repo_dir):
        assert torch.equal(mt.load_tensor(repo_dir / "model.pt", "weight", repo=repo), expected)
        with mt.open_tracked(repo_dir / "model.pt", repo=repo) as f:
            assert f.read(2) == b"PK"


def test_tensor_aware_chunking_keeps_fine_tune_small(repo_dir):
    torch.manual_seed(0)
    model = nn.ModuleDict({f"l{i}": nn.Linear(128, 128) for i in range(40)})  # 40 x 64 KiB + biases
    mt.save(model, "model.pt")
    first = mlvc.add("model.pt")
    with torch.no_grad():
        for i in range(0, 40, 10):  # 10% of the layers
            model[f"l{i}"].weight.add_(0.01)
    mt.save(model, "model.pt")
    second = mlvc.add("model.pt")
    assert second.new_bytes < 0.12 * second.size, (second.new_bytes, second.size, first.new_bytes)


def test_non_torch_file_is_a_clear_error(repo_dir):
    Path("notes.pt").write_text("hello, not a checkpoint\n" * 10)
    with pytest.raises(CheckpointFormatError, match="not a PyTorch checkpoint"):
        mt.load("notes.pt")
    mlvc.add("notes.pt")
    with pytest.raises(CheckpointFormatError, match="not a torch.save zip or safetensors"):
        mt.load_tensor("notes.pt", "x")
    with pytest.raises(PathError, match="not inside an artifact tracked"):
        mt.load_tensor("untracked.pt", "x")


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_not_executed(repo_dir, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": Evil(str(marker))}, "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        mt.load("evil.pt")
    assert not marker.exists()
    mlvc.add("evil.pt")  # adding never runs the pickle either; no module ids recorded
    from mlvc.pointer import load

    assert "modules" not in load(repo_dir / "evil.pt.mlvc").meta
    with pytest.raises(UnsafeCheckpointError):
        mt.load_tensor("evil.pt", "model.w")
    assert not marker.exists()


def test_save_outside_git_records_why_and_does_not_crash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prov = mt.save(Net(), tmp_path / "out" / "m.pt", params={"lr": 1})
    assert prov["commit"] is None and "not inside a git repository" in prov["commit_reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = mt.load(tmp_path / "out" / "m.pt")
    assert doc["mlvc"]["commit"] is None


def test_dirty_tree_is_recorded_and_warned_once(repo_dir):
    Path("train.py").write_text("lr = 1\n")
    commit_all(repo_dir, "code")
    Path("train.py").write_text("lr = 2\n")
    with pytest.warns(mt.ProvenanceWarning, match="uncommitted changes") as record:
        prov = mt.save(Net(), "a.pt")
        prov2 = mt.save(Net(), "b.pt")
    assert len([w for w in record if "uncommitted" in str(w.message)]) == 1
    assert prov["dirty"] is True and prov["dirty_files"] == ["train.py"]
    assert prov["dirty_diff"].startswith("xxh3_128:") and prov2["dirty_diff"] == prov["dirty_diff"]
    with pytest.warns(mt.ProvenanceWarning, match="saved from a work tree with uncommitted changes"):
        mt.load("a.pt")


def test_pointer_changes_do_not_make_the_tree_dirty(repo_dir):
    Path("d").mkdir()
    Path("d/x").write_text("1")
    mlvc.add("d")
    commit_all(repo_dir, "v1")
    Path("d/x").write_text("2")
    mlvc.add("d")  # the pointer is modified, not yet committed: an artifact, not code
    prov = mt.save(Net(), "m.pt", data=["d"])
    assert prov["dirty"] is False


def test_missing_data_pointer_is_a_path_error(repo_dir):
    with pytest.raises(PathError, match="not tracked by mlvc"):
        mt.save(Net(), "m.pt", data=["data/never-added"])
    assert not Path("m.pt").exists()


def test_load_warns_when_data_or_code_moved_on(repo_dir):
    Path("d").mkdir()
    Path("d/x").write_text("1")
    mlvc.add("d")
    Path("train.py").write_text("a = 1\n")
    commit_all(repo_dir, "v1")
    mt.save(Net(), "m.pt", data=["d"])
    Path("d/x").write_text("2")
    mlvc.add("d")
    with pytest.warns(mt.ProvenanceWarning, match="data d is now"):
        mt.load("m.pt")
    Path("train.py").write_text("a = 2\n")
    commit_all(repo_dir, "v2")
    with pytest.warns(mt.ProvenanceWarning, match="different code"):
        mt.load("m.pt")


def test_safetensors_save_carries_provenance(repo_dir):
    sha = commit_all(repo_dir, "init")
    model = Net()
    mt.save(model, "m.safetensors", params={"lr": 3})
    doc = mt.load("m.safetensors")
    assert torch.equal(doc["model"]["head.weight"], model.head.weight)
    assert doc["mlvc"]["commit"] == sha and doc["mlvc"]["params"] == {"lr": 3}
    mlvc.add("m.safetensors")
    from mlvc.pointer import load

    assert load(repo_dir / "m.safetensors.mlvc").meta["modules"] == mt.module_versions(model)


def test_load_tensor_reads_a_sharded_hf_model_by_index_or_directory_across_reshards(repo_dir):
    from hf_model import llama_state, save_pretrained

    sd1 = llama_state(layers=4, seed=1)
    assert len(save_pretrained(sd1, repo_dir / "model", shards=3)) == 3
    mlvc.add("model")
    commit_all(repo_dir, "v1")
    sd2 = dict(sd1)
    sd2["lm_head.weight"] = sd1["lm_head.weight"] * 2
    sd2["model.layers.2.mlp.up_proj.weight"] = sd1["model.layers.2.mlp.up_proj.weight"] + 1
    assert len(save_pretrained(sd2, repo_dir / "model", shards=4)) == 4  # transformers re-shards
    mlvc.add("model")
    commit_all(repo_dir, "v2")
    for where in ("model/model.safetensors.index.json", "model", "model/"):
        for rev, sd in (("HEAD~1", sd1), ("HEAD", sd2), (None, sd2)):
            for name in ("lm_head.weight", "model.layers.2.mlp.up_proj.weight", "model.norm.weight"):
                t = mt.load_tensor(where, name, rev=rev)
                assert t.dtype == torch.bfloat16 and torch.equal(t, sd[name]), (where, rev, name)
    with pytest.raises(MlvcError, match="no tensor named 'nope'"):
        mt.load_tensor("model", "nope", rev="HEAD~1")
    with pytest.raises(MlvcError, match="no checkpoint"):
        (repo_dir / "other").mkdir()
        (repo_dir / "other" / "notes.txt").write_text("x")
        mlvc.add("other")
        mt.load_tensor("other", "w")


def test_load_tensor_repo_takes_a_path_like_mlvc_open(repo_dir, tmp_path, monkeypatch):
    torch.save({"w": torch.arange(6.0)}, "ck.pt")
    mlvc.add("ck.pt")
    commit_all(repo_dir, "v1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for repo in (str(repo_dir), repo_dir):
        assert torch.equal(mt.load_tensor("ck.pt", "w", repo=repo), torch.arange(6.0))
        assert torch.equal(mt.load_tensor("ck.pt", "w", rev="HEAD", repo=repo), torch.arange(6.0))
        with mt.open_tracked("ck.pt", repo=repo) as f:
            assert f.read(2) == b"PK"
    with pytest.raises(NotARepoError):  # the one resolver mlvc.open uses: no fallback to another repo
        mt.load_tensor("ck.pt", "w", repo=elsewhere)
    monkeypatch.chdir(repo_dir)
    assert torch.equal(mt.load_tensor("ck.pt", "w", repo="."), torch.arange(6.0))


def test_load_tensor_of_a_directory_finds_its_one_checkpoint_or_says_which(repo_dir):
    (repo_dir / "run" / "sub").mkdir(parents=True)
    torch.save({"w": torch.ones(3)}, repo_dir / "run" / "sub" / "final.pt")
    (repo_dir / "run" / "sub" / "notes.txt").write_text("x")
    (repo_dir / "run" / "other.txt").write_text("y")
    mlvc.add("run")
    commit_all(repo_dir, "v1")
    assert torch.equal(mt.load_tensor("run/sub", "w", rev="HEAD"), torch.ones(3))
    with pytest.raises(PathError, match="holding no checkpoint"):  # not one below a subdirectory
        mt.load_tensor("run", "w")
    torch.save({"w": torch.zeros(3)}, repo_dir / "run" / "sub" / "best.pt")
    mlvc.add("run")
    with pytest.raises(PathError, match=r"several checkpoints \(best.pt, final.pt\): name one"):
        mt.load_tensor("run/sub", "w")
