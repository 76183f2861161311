"""The one atomic writer: a failing write leaves the old file as it was and no temporary file."""

import json
import os
import pickle

import pytest
import torch

from imgwang.core import atomic


def test_writes_text_json_bytes_and_torch_files(tmp_path):
    assert atomic.write_text(tmp_path / "a" / "t.txt", "héllo").read_text() == "héllo"  # folder created
    assert json.loads(atomic.write_json(tmp_path / "j.json", {"x": [1, 2]}, indent=1).read_text()) == {"x": [1, 2]}
    assert atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    path = atomic.torch_save({"v": torch.ones(2)}, tmp_path / "ckpt.pt")
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(2))
    assert not list(tmp_path.rglob("*.tmp"))


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = atomic.torch_save({"v": torch.ones(2)}, tmp_path / "ckpt.pt")
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        atomic.torch_save({"v": lambda: 0}, path)  # a lambda cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ckpt.pt"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    path = atomic.write_text(tmp_path / "run.json", "old")

    def half_then_fail(f):
        f.write(b"half a fi")
        raise error("killed")

    with pytest.raises(error):
        atomic.write_with(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["run.json"]


def test_a_named_temporary_file_is_removed_on_failure_too(tmp_path):
    temp = tmp_path / "key.123.u8.tmp"
    with pytest.raises(RuntimeError), atomic.replacing(tmp_path / "key.u8", temp=temp) as tmp:
        assert tmp == temp
        tmp.write_bytes(b"rows")
        raise RuntimeError("decoding failed")
    assert os.listdir(tmp_path) == []
