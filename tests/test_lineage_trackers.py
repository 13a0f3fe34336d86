"""The tracker helpers against the real packages: MLflow (local file store) and W&B (offline run files)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from helpers import commit
from torch import nn

import mlvc
import mlvc.torch as mt
from mlvc import lineage


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


@pytest.fixture
def trained(repo_dir: Path) -> dict:
    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "x.bin").write_bytes(b"\x01" * 100)
    data = mlvc.add("data", role="data", seed=7)
    model = Net()
    mt.save(model, "checkpoints/model.pt", params={"lr": 0.01, "layers": 2}, data=["data"])
    mlvc.add("checkpoints", role="model")
    sha = commit(repo_dir, "train")
    return {"sha": sha, "data_id": data.oid, "modules": mt.module_versions(model),
            "ckpt": "checkpoints/model.pt"}


def _expect_lineage(values: dict, t: dict) -> None:
    assert values["mlvc.commit"] == t["sha"]
    assert values["mlvc.artifact.data.id"] == t["data_id"]
    assert str(values["mlvc.artifact.data.seed"]) == "7"
    assert values["mlvc.checkpoint.data.data.id"] == t["data_id"]
    assert str(values["mlvc.checkpoint.params.lr"]) == "0.01"
    for module, mid in t["modules"].items():
        assert values[f"mlvc.checkpoint.modules.{module}"] == mid
        assert values[f"mlvc.artifact.checkpoints.modules.model.pt.{module}"] == mid


def test_log_mlflow_to_a_local_store_and_read_the_run_back(trained, tmp_path, monkeypatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no SQL store
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as run:
            logged = lineage.log_mlflow(checkpoint=trained["ckpt"])
        got = MlflowClient(tracking_uri=uri).get_run(run.info.run_id).data
    finally:
        mlflow.set_tracking_uri("")
    assert got.params == {k: str(v) for k, v in logged.items()}
    _expect_lineage(got.params, trained)
    assert got.tags["mlvc.commit"] == trained["sha"] and got.tags["mlvc.dirty"] == "False"


def _wandb_records(path: Path):
    """The records of an offline run file (W&B's leveldb-style log: 32 KiB blocks of framed records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if n == 0 and kind == 0:
            break
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def test_log_wandb_offline_and_read_the_run_files_back(trained, tmp_path, monkeypatch) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = wandb.init(project="mlvc-test", dir=str(tmp_path))
    try:
        logged = lineage.log_wandb(checkpoint=trained["ckpt"])
    finally:
        run.finish()
        wandb.teardown()  # stops the wandb-core service: its writer has flushed the run file
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    config: dict = {}
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        items = record.config.update if kind == "config" else record.run.config.update if kind == "run" else []
        for item in items:
            config[item.key] = json.loads(item.value_json)
    kinds = [r.WhichOneof("record_type") for r in _wandb_records(run_file)]
    assert {k: config.get(k) for k in logged} == logged, (kinds, sorted(config)[:5])
    _expect_lineage(config, trained)


def test_checkpoint_lineage_of_a_non_checkpoint_is_a_clear_error(repo_dir: Path) -> None:
    (repo_dir / "notes.txt").write_text("hi")
    with pytest.raises(mlvc.errors.MlvcError, match="not a torch.save or safetensors checkpoint"):
        lineage.checkpoint_lineage("notes.txt")
    with pytest.raises(mlvc.errors.MlvcError, match="no such checkpoint"):
        lineage.checkpoint_lineage("missing.pt")
