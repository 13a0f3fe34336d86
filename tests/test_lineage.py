"""Lineage: version manifests per commit, the flat tracker dict, tracker helpers, torch-free CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import blocking, cli_env, git, mlvc_cli
from torch import nn

import mlvc
import mlvc.torch as mt
from mlvc import lineage



def commit_all(repo: Path, msg: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", msg)
    return git(repo, "rev-parse", "HEAD").strip()


class TextBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        return out[:, -1]


class MultiModal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image_branch = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.text_branch = TextBranch()
        self.fusion = nn.Linear(12, 3)

    def forward(self, images, tokens):
        return self.fusion(torch.cat([self.image_branch(images), self.text_branch(tokens)], dim=1))


def make_data(root: Path, config: dict, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = config["n"]
    images = torch.randn(n, 3, 8, 8, generator=g)
    tokens = torch.randint(0, 50, (n, 5), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    (root / "images.bin").write_bytes(images.numpy().tobytes())
    (root / "tokens.bin").write_bytes(tokens.numpy().tobytes())
    (root / "labels.bin").write_bytes(labels.numpy().tobytes())


def train(model: MultiModal, root: Path, n: int, trainable: list[str], lr: float, steps: int = 3) -> float:
    import numpy as np

    images = torch.from_numpy(np.frombuffer((root / "images.bin").read_bytes(), dtype=np.float32).copy())
    tokens = torch.from_numpy(np.frombuffer((root / "tokens.bin").read_bytes(), dtype=np.int64).copy())
    labels = torch.from_numpy(np.frombuffer((root / "labels.bin").read_bytes(), dtype=np.int64).copy())
    images, tokens = images.reshape(n, 3, 8, 8), tokens.reshape(n, 5)
    for name, module in model.named_children():
        module.requires_grad_(name in trainable)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(images, tokens), labels)
        loss.backward()
        opt.step()
    return float(loss.detach()), opt


def test_seed_workflow_manifest_show_and_module_ids_per_commit(repo_dir):
    torch.manual_seed(0)
    model = MultiModal()
    plan = [  # (data config, seed, modules trained, lr)
        ({"n": 16, "augment": False}, 1, ["image_branch", "text_branch", "fusion"], 0.1),
        ({"n": 16, "augment": True}, 2, ["fusion"], 0.05),
        ({"n": 24, "augment": True}, 3, ["text_branch"], 0.05),
    ]
    commits = []
    for step, (config, seed, trainable, lr) in enumerate(plan):
        Path("data_config.yaml").write_text(json.dumps(config))
        Path("train.py").write_text(f"# step {step}: lr={lr}, train {trainable}\n")
        code_sha = commit_all(repo_dir, f"code {step}")
        make_data(repo_dir / "data" / "processed", config, seed)
        data_v = mlvc.add("data/processed", role="data", config="data_config.yaml", seed=seed)
        loss, opt = train(model, repo_dir / "data" / "processed", config["n"], trainable, lr)
        mt.save(model, "checkpoints/model.pt", optimizer=opt, epoch=step, params={"lr": lr, "step": step},
                metrics={"loss": loss}, data=["data/processed"])
        r = mlvc_cli(repo_dir, "add", "checkpoints/model.pt", "--role", "model")
        assert r.code == 0, r.err
        art_sha = commit_all(repo_dir, f"artifacts {step}")
        commits.append({"code": code_sha, "art": art_sha, "data": data_v.oid, "seed": seed,
                        "modules": mt.module_versions(model)})

    for c in commits:
        r = mlvc_cli(repo_dir, "manifest", c["art"], "--json")
        assert r.code == 0, r.err
        m = json.loads(r.out)
        assert m["commit"] == c["art"]
        arts = {a["path"]: a for a in m["artifacts"]}
        data, ckpt = arts["data/processed"], arts["checkpoints/model.pt"]
        assert data["role"] == "data" and data["id"] == c["data"] and data["seed"] == c["seed"]
        assert data["config"] == "data_config.yaml" and data["config_hash"].startswith("xxh128:")
        assert ckpt["role"] == "model" and ckpt["modules"] == c["modules"]
        assert set(ckpt["modules"]) == {"image_branch", "text_branch", "fusion"}
    assert len({c["data"] for c in commits}) == 3  # different config/seed -> different data versions
    m0, m1, m2 = (c["modules"] for c in commits)
    assert [k for k in m0 if m0[k] != m1[k]] == ["fusion"]  # only the trained module changed
    assert [k for k in m1 if m1[k] != m2[k]] == ["text_branch"]

    # mlvc show at every commit: the checkpoint names the code commit that made it (read from the cache)
    for c in commits:
        git(repo_dir, "checkout", "-q", c["art"])
        Path("checkpoints/model.pt").unlink(missing_ok=True)
        r = mlvc_cli(repo_dir, "show", "checkpoints/model.pt", "--field", "commit")
        assert r.code == 0, r.err
        assert r.out.strip() == c["code"]
        assert git(repo_dir, "show", "-s", "--format=%s", r.out.strip()).startswith("code")
    # one tensor of an old checkpoint, straight from the cache
    old = mt.load_tensor("checkpoints/model.pt", "fusion.weight", rev=commits[0]["art"])
    assert old.shape == (3, 12)


def test_manifest_of_workspace_and_current_flat_dict(repo_dir):
    commit_all(repo_dir, "init")
    Path("d").mkdir()
    Path("d/x").write_text("1")
    mlvc.add("d", role="data", config={"a": 1}, seed=5, meta={"source": "s3://x"})
    mt.save(nn.Linear(2, 2), "m.pt")
    mlvc.add("m.pt")
    m = lineage.manifest(None)
    assert m["rev"] is None and m["dirty"] is False and m["branch"] == "main"
    flat = lineage.current()
    assert flat["mlvc.commit"] == git(repo_dir, "rev-parse", "HEAD").strip()
    assert flat["mlvc.branch"] == "main" and flat["mlvc.dirty"] is False
    assert flat["mlvc.artifact.d.role"] == "data" and flat["mlvc.artifact.d.seed"] == 5
    assert flat["mlvc.artifact.d.params.source"] == "s3://x"
    assert flat["mlvc.artifact.m.pt.role"] == "model"  # inferred from its module ids
    assert flat["mlvc.artifact.m.pt.modules.weight"].startswith("xxh128:")
    assert all(isinstance(v, (str, int, float, bool)) for v in flat.values())
    r = mlvc_cli(repo_dir, "manifest")
    assert r.code == 0 and "d\tdata" in r.out and "seed: 5" in r.out
    r = mlvc_cli(repo_dir, "manifest", "no-such-rev")
    assert r.code != 0 and "unknown revision" in r.err


def test_log_tensorboard_writes_event_files(repo_dir, tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from torch.utils.tensorboard import SummaryWriter

    commit_all(repo_dir, "init")
    Path("d").mkdir()
    Path("d/x").write_text("1")
    mlvc.add("d", role="data", seed=1)
    logdir = tmp_path / "tb"
    writer = SummaryWriter(str(logdir))
    flat = lineage.log_tensorboard(writer, metrics={"val_acc": 0.5})
    writer.close()
    assert flat["mlvc.artifact.d.seed"] == 1
    tags = set()
    for event_file in logdir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(event_file)).Load():
            tags.update(v.tag for v in event.summary.value)
    assert "mlvc/lineage/text_summary" in tags
    assert "_hparams_/session_start_info" in tags


def test_tracker_helpers_say_when_the_package_is_missing(repo_dir, monkeypatch):
    commit_all(repo_dir, "init")
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(mlvc.errors.MlvcError, match="wandb is not installed"):
        lineage.log_wandb()
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(mlvc.errors.MlvcError, match="mlflow is not installed"):
        lineage.log_mlflow()


def test_everything_but_torch_helpers_works_without_torch(repo_dir):
    commit_all(repo_dir, "init")
    Path("d").mkdir()
    Path("d/x").write_text("1")
    mlvc.add("d", role="data")
    script = blocking("torch") + (
        "import mlvc, mlvc.torch as mt, mlvc.lineage as l; "
        "assert l.current()['mlvc.artifact.d.role'] == 'data'; "
        "import mlvc.errors as e\n"
        "try:\n    mt.save({}, 'x.pt')\nexcept e.MlvcError as exc:\n    print('ERR', exc)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=repo_dir, env=cli_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "PyTorch is not installed" in out.stdout
    for args in (["--help"], ["manifest"], ["manifest", "HEAD", "--json"], ["add", "d"], ["show", "d"]):
        out = mlvc_cli(repo_dir, *args, without=("torch",))
        assert out.code == 0, (args, out.err)
        assert "manifest" in out.out or args != ["--help"]


def _load_reasons(path: str) -> list[str]:
    import warnings as w

    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        mt.load(path)
    return [str(c.message) for c in caught if issubclass(c.category, mt.ProvenanceWarning)]


def test_only_non_code_changes_since_the_save_give_no_different_code_warning(repo_dir):
    (repo_dir / "train.py").write_text("print('train')\n")
    (repo_dir / "exp.yaml").write_text("lr: 0.1\n")
    (repo_dir / "README.md").write_text("# demo\n")
    commit_all(repo_dir, "code")
    mt.save(nn.Linear(2, 2), "ckpt/m.pt")
    mlvc.add("ckpt")
    commit_all(repo_dir, "checkpoint pointer")
    # pointers, .mlvc/config, an experiment YAML, docs: committed after the save
    assert mlvc_cli(repo_dir, "remote", "add", "origin", str(repo_dir.parent / "remote"), "-q").code == 0
    (repo_dir / "exp.yaml").write_text("lr: 0.2\n")
    (repo_dir / "README.md").write_text("# demo, documented\n")
    (repo_dir / "d").mkdir()
    (repo_dir / "d" / "x.bin").write_bytes(b"x")
    mlvc.add("d")
    commit_all(repo_dir, "configs, docs, data")
    assert lineage.code_differs(repo_dir, git(repo_dir, "rev-parse", "HEAD~2").strip()) is False
    assert _load_reasons("ckpt/m.pt") == []
    # uncommitted edits of non-code files do not make the workspace "dirty code" either
    (repo_dir / "exp.yaml").write_text("lr: 0.3\n")
    assert lineage.git_state(repo_dir)["dirty"] is False
    assert _load_reasons("ckpt/m.pt") == []
    # a code change still warns
    (repo_dir / "train.py").write_text("print('train harder')\n")
    commit_all(repo_dir, "code change")
    (reason,) = _load_reasons("ckpt/m.pt")
    assert "with different code" in reason


def test_what_is_not_code_can_be_extended_in_the_config(repo_dir):
    (repo_dir / "settings.json").write_text("{}\n")
    commit_all(repo_dir, "json")
    sha = git(repo_dir, "rev-parse", "HEAD").strip()
    (repo_dir / "settings.json").write_text('{"a": 1}\n')
    commit_all(repo_dir, "json changed")
    assert lineage.code_differs(repo_dir, sha) is True  # JSON is code by default
    config = repo_dir / ".mlvc" / "config"
    config.write_text(config.read_text() + "lineage:\n  not_code: ['*.json']\n")
    assert lineage.code_differs(repo_dir, sha) is False
    assert lineage.is_code("src/model.py") and not lineage.is_code("configs/exp/a.yaml")
    assert not lineage.is_code("sub/data.mlvc") and not lineage.is_code(".mlvc/config")
