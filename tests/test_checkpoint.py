"""Checkpoint layouts read without torch, checked against files torch itself wrote."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

from mlvc.checkpoint import (
    SAFETENSORS,
    TORCH_ZIP,
    CheckpointFormatError,
    CheckpointLayout,
    detect_format,
    group_by_module,
    module_digests,
    read_layout,
    relative_l2_change,
    storage_boundaries,
    tensor_bytes,
)
from mlvc.errors import UnsafeCheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3)
        self.lstm = nn.LSTM(input_size=5, hidden_size=6, num_layers=2)
        self.fc = nn.Linear(6, 2)
        self.norm = nn.BatchNorm1d(2)


def raw_bytes(tensor: torch.Tensor) -> bytes:
    """Row-major bytes of a tensor (tensor.numpy() needs numpy, which mlvc does not require)."""
    flat = tensor.detach().contiguous().reshape(-1).clone()
    return bytes(flat.view(torch.uint8).tolist())


def save(obj: Any, path: Path) -> Path:
    torch.save(obj, path)
    return path


def layout_of(path: Path) -> CheckpointLayout:
    with path.open("rb") as f:
        return read_layout(f)


def assert_bytes_match(path: Path, layout: CheckpointLayout, expected: dict[str, torch.Tensor]) -> None:
    data = path.read_bytes()
    with path.open("rb") as f:
        for info in layout.tensors:
            tensor = expected[info.name]
            assert info.dtype == str(tensor.dtype).removeprefix("torch.")
            assert info.shape == tuple(tensor.shape)
            assert tensor_bytes(f, info) == raw_bytes(tensor), info.name
            if info.contiguous:
                assert data[info.offset:info.offset + info.nbytes] == raw_bytes(tensor)


@pytest.fixture
def model() -> Net:
    torch.manual_seed(0)
    return Net()


# ------------------------------------------------------------------ torch zip


def test_state_dict_layout_matches_tensor_bytes(tmp_path: Path, model: Net) -> None:
    state = model.state_dict()
    path = save(state, tmp_path / "model.pt")
    layout = layout_of(path)
    assert layout.format == TORCH_ZIP
    assert [t.name for t in layout.tensors] == list(state)
    assert layout.extras == {}
    assert layout.byteorder == "little"
    assert_bytes_match(path, layout, dict(state))


def test_saved_through_buffer_and_parameters(tmp_path: Path, model: Net) -> None:
    buffer = io.BytesIO()
    torch.save({"weight": model.fc.weight, "bias": model.fc.bias}, buffer)  # Parameters, not tensors
    path = tmp_path / "params.bin"
    path.write_bytes(buffer.getvalue())
    layout = layout_of(path)
    assert_bytes_match(path, layout, {"weight": model.fc.weight, "bias": model.fc.bias})


def test_many_dtypes(tmp_path: Path) -> None:
    tensors = {
        "f16": torch.randn(3, 4).half(),
        "bf16": torch.randn(5).bfloat16(),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i64": torch.arange(7),
        "i8": torch.arange(-3, 3, dtype=torch.int8),
        "flags": torch.tensor([True, False, True]),
        "u16": torch.tensor([1, 2, 65535], dtype=torch.uint16),  # saved through _rebuild_tensor_v3
        "f8": torch.randn(6).to(torch.float8_e4m3fn),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
    }
    path = save(tensors, tmp_path / "dtypes.pt")
    layout = layout_of(path)
    assert {t.name for t in layout.tensors} == set(tensors)
    assert_bytes_match(path, layout, tensors)
    assert layout.tensor("empty").nbytes == 0
    assert layout.tensor("scalar").shape == ()


def test_nested_checkpoint_with_extras(tmp_path: Path, model: Net) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.fc(torch.randn(2, 6)).sum().backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "mlvc": {"run_id": "r-42", "commit": "abc123", "metrics": {"loss": 0.25}},
        "epoch": 3,
        "lr": 0.01,
        "tags": ["best", "ema"],
        "blob": b"\x00\xff",
        "shape": torch.Size([2, 3]),
        "dtype": torch.float16,
    }
    path = save(checkpoint, tmp_path / "ckpt.pt")
    layout = layout_of(path)

    names = [t.name for t in layout.tensors]
    assert "model.fc.weight" in names and "model.lstm.weight_hh_l1" in names
    assert "optimizer.state.10.exp_avg" in names  # fc.weight is parameter index 10
    assert layout.extras["mlvc"] == {"run_id": "r-42", "commit": "abc123", "metrics": {"loss": 0.25}}
    assert layout.extras["epoch"] == 3
    assert layout.extras["lr"] == 0.01
    assert layout.extras["tags"] == ["best", "ema"]
    assert layout.extras["blob"] == b"\x00\xff"
    assert layout.extras["shape"] == (2, 3)
    assert layout.extras["dtype"] == "torch.float16"
    groups = layout.extras["optimizer.param_groups"]
    assert groups[0]["lr"] == 0.01 and groups[0]["params"] == list(range(14))
    assert type(layout.extras["mlvc"]) is dict

    expected = {f"model.{k}": v for k, v in checkpoint["model"].items()}
    for index, state in checkpoint["optimizer"]["state"].items():
        expected.update({f"optimizer.state.{index}.{k}": v for k, v in state.items()})
    assert set(names) == set(expected)
    assert_bytes_match(path, layout, expected)


def test_shared_storage_views(tmp_path: Path) -> None:
    base = torch.arange(20, dtype=torch.float32)
    tensors = {"base": base, "tail": base[5:15], "grid_t": base.view(4, 5).t(), "every_other": base[::2]}
    path = save(tensors, tmp_path / "views.pt")
    layout = layout_of(path)
    assert len(layout.storages) == 1
    storage = layout.storages[0]
    assert storage.nbytes == 80
    assert layout.tensor("base").offset == storage.offset
    assert layout.tensor("tail").offset == storage.offset + 5 * 4
    assert layout.tensor("tail").nbytes == 40
    assert not layout.tensor("grid_t").contiguous
    assert layout.tensor("grid_t").stride == (1, 5)
    assert_bytes_match(path, layout, tensors)
    cuts = storage_boundaries(layout)
    assert cuts == sorted(set(cuts))
    assert {storage.offset, storage.offset + 20, storage.offset + 60, storage.offset + 80} <= set(cuts)


def test_storage_boundaries_cover_every_tensor(tmp_path: Path, model: Net) -> None:
    path = save(model.state_dict(), tmp_path / "m.pt")
    layout = layout_of(path)
    cuts = set(storage_boundaries(layout))
    for info in layout.tensors:
        assert info.offset in cuts and info.offset + info.nbytes in cuts
    assert max(cuts) <= path.stat().st_size


def test_reader_does_not_import_torch(tmp_path: Path, model: Net) -> None:
    path = save({"model": model.state_dict()}, tmp_path / "m.pt")
    code = (
        "import sys; from mlvc.checkpoint import read_layout, module_digests\n"
        f"f = open({str(path)!r}, 'rb'); module_digests(f, read_layout(f))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ------------------------------------------------------------------ safetensors


def write_safetensors_by_hand(path: Path, tensors: dict[str, tuple[str, list[int], bytes]],
                              metadata: dict[str, str]) -> None:
    header: dict[str, Any] = {"__metadata__": metadata}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


def test_safetensors_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "hand.safetensors"
    write_safetensors_by_hand(path, {
        "enc.w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
        "enc.b": ("I64", [1], struct.pack("<q", 7)),
    }, {"mlvc.run": "r-1"})
    layout = layout_of(path)
    assert layout.format == SAFETENSORS
    assert layout.extras == {"mlvc.run": "r-1"}
    w = layout.tensor("enc.w")
    assert (w.dtype, w.shape, w.nbytes) == ("float32", (2, 2), 16)
    with path.open("rb") as f:
        assert tensor_bytes(f, w) == struct.pack("<4f", 1, 2, 3, 4)
        assert tensor_bytes(f, layout.tensor("enc.b")) == struct.pack("<q", 7)


def test_safetensors_from_library(tmp_path: Path, model: Net) -> None:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["half"] = torch.randn(3).bfloat16()
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(state, str(path), metadata={"epoch": "4"})
    layout = layout_of(path)
    assert layout.format == SAFETENSORS
    assert layout.extras == {"epoch": "4"}
    assert_bytes_match(path, layout, state)
    assert storage_boundaries(layout)[0] == min(t.offset for t in layout.tensors)


def test_malformed_safetensors_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(CheckpointFormatError):
        layout_of(path)


# ------------------------------------------------------------------ safety


class ShellOut:
    """Unpickling this runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_in_zip_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"payload": ShellOut(marker)}, protocol=2))
        archive.writestr("archive/byteorder", "little")
    with pytest.raises(UnsafeCheckpointError, match="system"):
        layout_of(path)
    assert not marker.exists()


def test_malicious_object_saved_by_torch_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = save({"weight": torch.ones(3), "payload": ShellOut(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError):
        layout_of(path)
    assert not marker.exists()


@pytest.mark.parametrize("gadget", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR.",
    b"ctorch\nload\n(S'x'\ntR.",
])
def test_other_globals_are_refused(tmp_path: Path, gadget: bytes) -> None:
    path = tmp_path / "gadget.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", gadget)
    with pytest.raises(UnsafeCheckpointError):
        layout_of(path)


def test_compressed_storage_is_rejected(tmp_path: Path) -> None:
    original = save({"w": torch.ones(4)}, tmp_path / "w.pt")
    rezipped = tmp_path / "rezipped.pt"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(rezipped, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    with pytest.raises(CheckpointFormatError, match="compressed"):
        layout_of(rezipped)


# ------------------------------------------------------------------ detection


def test_detect_format(tmp_path: Path, model: Net) -> None:
    path = save(model.state_dict(), tmp_path / "weights.anything")
    assert detect_format(path.read_bytes()[:4096], "weights.anything") == TORCH_ZIP
    st_path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"a": torch.ones(2)}, str(st_path))
    assert detect_format(st_path.read_bytes()[:4096], "w") == SAFETENSORS
    assert detect_format(b"", "x.pt") is None
    assert detect_format(b"hello world, just text\n", "notes.txt") is None
    assert detect_format(b"\x00" * 64, "zeros.bin") is None


def test_non_checkpoint_files(tmp_path: Path) -> None:
    text = tmp_path / "readme.txt"
    text.write_text("not a checkpoint at all\n")
    assert detect_format(text.read_bytes(), text.name) is None
    with pytest.raises(CheckpointFormatError):
        layout_of(text)

    plain_zip = tmp_path / "archive.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("docs/readme.md", "hi")
    assert detect_format(plain_zip.read_bytes(), plain_zip.name) is None

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert detect_format(legacy.read_bytes()[:4096], legacy.name) is None


# ---------------------------------------------------------------- modules


def test_group_by_module() -> None:
    names = ["model.enc.l1.weight", "model.enc.l1.bias", "model.dec.weight", "model.temperature",
             "optimizer.state.0.exp_avg"]
    assert group_by_module(names) == {
        "enc": ["model.enc.l1.weight", "model.enc.l1.bias"],
        "dec": ["model.dec.weight"],
        "temperature": ["model.temperature"],
        "optimizer": ["optimizer.state.0.exp_avg"],
    }
    assert group_by_module(names, depth=2)["enc.l1"] == ["model.enc.l1.weight", "model.enc.l1.bias"]
    assert group_by_module(["state_dict.fc.weight", "fc.bias"]) == {"fc": ["state_dict.fc.weight", "fc.bias"]}


def test_module_digests_change_only_for_changed_module(tmp_path: Path, model: Net) -> None:
    before = save({"model": model.state_dict(), "epoch": 1}, tmp_path / "before.pt")
    with torch.no_grad():
        model.fc.weight[0, 0] += 1.0
    after = save({"model": model.state_dict(), "epoch": 2}, tmp_path / "after.pt")

    with before.open("rb") as f:
        old = module_digests(f, read_layout(f))
    with after.open("rb") as f:
        new = module_digests(f, read_layout(f))
    assert set(old) == {"conv", "lstm", "fc", "norm"}
    assert all(v.startswith("xxh128:") and len(v) == len("xxh128:") + 32 for v in old.values())
    assert {m for m in old if old[m] != new[m]} == {"fc"}

    # The same weights in safetensors hash the same: digests depend on content, not container.
    st_path = tmp_path / "after.safetensors"
    safetensors.torch.save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
                                str(st_path))
    with st_path.open("rb") as f:
        assert module_digests(f, read_layout(f)) == new


# ------------------------------------------------------------ weight change


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_relative_l2_change_matches_torch(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    a = torch.randn(1000).to(dtype)
    b = (a.double() + 0.01 * torch.randn(1000, dtype=torch.float64)).to(dtype)
    expected = ((b.double() - a.double()).norm() / a.double().norm()).item()
    got = relative_l2_change(raw_bytes(a), raw_bytes(b), str(dtype).removeprefix("torch."))
    assert math.isclose(got, expected, rel_tol=1e-9)


def test_relative_l2_change_edge_cases() -> None:
    zeros = struct.pack("<2f", 0, 0)
    ones = struct.pack("<2f", 3, 4)
    assert relative_l2_change(ones, ones, "float32") == 0.0
    assert relative_l2_change(ones, zeros, "float32") == 1.0
    assert relative_l2_change(zeros, zeros, "float32") == 0.0
    assert relative_l2_change(zeros, ones, "float32") == math.inf
    with pytest.raises(CheckpointFormatError):
        relative_l2_change(ones, ones[:4], "float32")
    with pytest.raises(CheckpointFormatError):
        relative_l2_change(ones, ones, "int64")
