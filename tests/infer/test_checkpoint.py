"""save_checkpoint / load_checkpoint: atomic writes, temporary files of killed saves, and one
clear error (CheckpointError, naming the file) for every file that is not a usable checkpoint."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from pyrovi.infer import CheckpointError, load_checkpoint, save_checkpoint
from pyrovi.infer.checkpoint import remove_stale_temporaries


def _state():
    return {"epoch": 3, "params": {"w": torch.arange(4.0)}, "history": {"train_elbo": [1.0]}}


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_round_trip_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "c.pt", _state())
    state = load_checkpoint(path, required=("epoch", "params"))
    assert state["epoch"] == 3 and torch.equal(state["params"]["w"], torch.arange(4.0))
    assert torch.load(path, weights_only=True)["pyrovi_checkpoint_version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary file left


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


def _valid_bytes(tmp_path) -> bytes:
    return save_checkpoint(tmp_path / "valid.pt", _state()).read_bytes()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d, ok: _write(d / "c.pt", b""), r"c\.pt is empty \(0 bytes\)"),
        (
            lambda d, ok: _write(d / "c.pt", ok[: len(ok) // 2]),
            r"c\.pt \(\d+ bytes\) is truncated or corrupt",
        ),
        (
            lambda d, ok: _write(d / "c.pt", ok[:100]),
            r"c\.pt \(100 bytes\) is truncated or corrupt",
        ),
        (
            lambda d, ok: _write(d / "c.pt", b"epoch,loss\n1,2.5\n"),
            r"c\.pt \(\d+ bytes\) is not a file written by torch.save \(it starts with b'epo",
        ),
        (
            lambda d, ok: _write(d / "c.pt", os.urandom(4096)),
            r"c\.pt \(4096 bytes\) is not a file written by torch.save",
        ),
        (
            lambda d, ok: _write(d / "c.pt", pickle.dumps({"a": 1})),
            r"c\.pt \(\d+ bytes\) is not a file written by torch.save",
        ),
    ],
    ids=["empty", "truncated-half", "truncated-100-bytes", "text", "random-bytes", "plain-pickle"],
)
def test_unreadable_files_raise_checkpoint_error_naming_the_file(tmp_path, make, match):
    torch.manual_seed(0)
    path = make(tmp_path, _valid_bytes(tmp_path))
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_foreign_torch_files_are_not_pyrovi_checkpoints(tmp_path):
    torch.save({"a": 1}, tmp_path / "dict.pt")
    with pytest.raises(
        CheckpointError, match=r"dict\.pt is not a pyrovi checkpoint: it holds a dict "
    ):
        load_checkpoint(tmp_path / "dict.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(
        CheckpointError, match=r"tensor\.pt is not a pyrovi checkpoint: it holds a Tensor"
    ):
        load_checkpoint(tmp_path / "tensor.pt")
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # a pickled module
    with pytest.raises(
        CheckpointError, match=r"module\.pt is not a pyrovi checkpoint: .*weights_only"
    ):
        load_checkpoint(tmp_path / "module.pt")


def test_a_newer_format_and_missing_entries_are_named(tmp_path):
    torch.save({"pyrovi_checkpoint_version": 99}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match=r"new\.pt has format version 99; .* up to 1"):
        load_checkpoint(tmp_path / "new.pt")
    path = save_checkpoint(tmp_path / "npe.pt", {"config": {}, "state": {}})
    with pytest.raises(
        CheckpointError, match=r"npe\.pt lacks the entries \['params', 'optimizer'\]"
    ):
        load_checkpoint(path, required=("config", "params", "optimizer"))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_a_failing_save_removes_its_temporary_file_and_keeps_the_old_checkpoint(
    tmp_path, monkeypatch
):
    path = save_checkpoint(tmp_path / "c.pt", _state())
    real_save = torch.save

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"epoch": 4})
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert load_checkpoint(path)["epoch"] == 3


def test_temporary_files_of_dead_processes_are_removed_by_the_next_save(tmp_path):
    dead = tmp_path / f".c.pt.tmp-{_dead_pid()}"
    dead.write_bytes(b"PK\x03\x04 half a checkpoint")
    alive = tmp_path / f".c.pt.tmp-{os.getppid()}"  # a running process: maybe still writing
    alive.write_bytes(b"PK")
    other = tmp_path / f".d.pt.tmp-{_dead_pid()}"  # another checkpoint's: not ours to judge
    other.write_bytes(b"PK")
    save_checkpoint(tmp_path / "c.pt", _state())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.pt", alive.name, other.name])
    assert remove_stale_temporaries(tmp_path / "d.pt") == [other]
