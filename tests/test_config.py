"""`.mlvc/config`: settings validated once, when loaded, with their defaults in one place (`Settings`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import mlvc_cli, one_error

from mlvc.chunking import ChunkerParams
from mlvc.config import Config, Settings
from mlvc.errors import EXIT_ERROR, ConfigError


def load(tmp_path: Path, text: str) -> Config:
    (tmp_path / "config").write_text(text)
    return Config(tmp_path / "config", tmp_path / "config.local")


def test_an_empty_config_has_every_default(tmp_path):
    s = load(tmp_path, "").settings
    assert s == Settings() and s.chunker == ChunkerParams() and s.pack_size == 32 * 1024 * 1024
    assert s.remote_pack_size == 64 * 1024 * 1024 and s.fsync is True and s.compression_level == 3


def test_sizes_take_binary_units_and_config_local_wins(tmp_path):
    (tmp_path / "config.local").write_text("core: {remote_pack_size: 256KiB}\n")
    s = load(tmp_path, "core:\n  pack_size: 8 MiB\n  remote_pack_size: 1048576\n").settings
    assert (s.pack_size, s.remote_pack_size) == (8 * 1024 * 1024, 256 * 1024)


@pytest.mark.parametrize("text, key", [
    ("core: {pack_size: abc}", "core.pack_size"),
    ("core: {pack_size: -5}", "core.pack_size"),
    ("core: {remote_pack_size: 1.5 GiB}", "core.remote_pack_size"),
    ("core: {fsync: 'false'}", "core.fsync"),  # a string: bool('false') was True
    ("core: {compression_level: high}", "core.compression_level"),
    ("gc: {grace_seconds: soon}", "gc.grace_seconds"),
    ("cache: {dir: 5}", "cache.dir"),
    ("gc: 3", "'gc' must be a mapping"),
])
def test_an_unusable_value_is_a_config_error_naming_its_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(tmp_path, text + "\n")


def test_a_string_pack_size_is_a_one_line_config_error_not_an_internal_error(repo_dir):
    (repo_dir / ".mlvc" / "config").write_text("core:\n  compression_level: 3\n  pack_size: lots\nremotes: {}\n")
    (repo_dir / "data.bin").write_bytes(b"x" * 1000)
    res = mlvc_cli(repo_dir, "add", "data.bin")
    assert res.code == EXIT_ERROR
    assert "core.pack_size must be a size in bytes" in one_error(res.err) and "'lots'" in res.err
