"""fit under faults: a NaN gradient behind a finite loss, a learning rate that diverges, parameters
that overflow, resuming from bad checkpoints, a kill during training and during a save, and
distributed processes that must stop together."""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.guides import AmortizedNormal
from pyrovi.infer import (
    CheckpointError,
    TrainingDivergedError,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from pyrovi.models import VAE

REPO = Path(__file__).resolve().parents[2]


class _NanGradient(torch.autograd.Function):
    """The identity, whose gradient is NaN: a finite loss with a NaN gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class Line(torch.nn.Module):
    """``y ~ N(w x + b, 1)``, fitted by maximum likelihood (no guide). At model call
    ``nan_at`` (call 1 is fit's checked first pass, call k + 1 the k-th step) the gradient of
    ``b`` is NaN while the loss stays finite; ``check_data`` call ``reject_at`` rejects the batch.
    With ``rank``, only that process of a distributed run misbehaves."""

    def __init__(self, nan_at=None, reject_at=None, rank=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(()))
        self.nan_at, self.reject_at, self.rank = nan_at, reject_at, rank
        self.calls = self.checks = 0
        self.seen = None

    def _mine(self) -> bool:
        return self.rank is None or torch.distributed.get_rank() == self.rank

    def forward(self, x, y):
        self.calls += 1
        b = self.b
        if self.calls == self.nan_at and self._mine():
            self.seen = (self.w.detach().clone(), self.b.detach().clone())
            b = _NanGradient.apply(b)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(self.w * x + b, 1.0), obs=y)

    def check_data(self, x, y):
        self.checks += 1
        if self.checks == self.reject_at and self._mine():
            raise ValueError("y is out of range (rejected by the test)")


def _line_data(n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g)
    return x, 2 * x + 1 + 0.1 * torch.randn(n, generator=g)


def _fit_line(model, **kwargs):
    options = dict(epochs=4, batch_size=8, lr=0.1, seed=0, progress=False)  # 3 steps per epoch
    return fit(model, None, _line_data(), **{**options, **kwargs})


# --------------------------------------------------------------------------- the step checks


@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_a_nan_gradient_with_a_finite_loss_stops_before_the_update(tmp_path, clip_norm):
    model = Line(nan_at=6)  # step 5: epoch 2, step 2
    ckpt = tmp_path / "c.pt"
    match = (
        r"the gradients of \['model.b'\] are NaN or infinite at epoch 2, step 2 \(the loss, "
        r"[0-9.e+-]+, is finite\): training stopped before the parameters were updated; last "
        r"good checkpoint: .*c\.pt \(epoch 1\)"
    )
    with pytest.raises(TrainingDivergedError, match=match):
        _fit_line(model, checkpoint=ckpt, clip_norm=clip_norm)
    w, b = model.seen  # the values the failing step started from
    assert torch.equal(model.w.detach(), w) and torch.equal(model.b.detach(), b)
    assert b.item() != 0.0  # (the earlier steps did train)
    for path in (ckpt, tmp_path / "c.best.pt"):
        state = load_checkpoint(path)
        assert state["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in state["params"].values())


def test_a_diverging_learning_rate_is_reported_and_the_check_can_be_turned_off():
    # Adam at lr 1e4 moves w and b by ~1e4 in the first step: the loss per datapoint goes from
    # ~3.4 nats to ~1e8, finite but absurd
    match = (
        r"training diverged at epoch 1, step 2: the loss per datapoint, [0-9.e+]+ nats, exceeds "
        r"divergence_ratio=1e\+06 times its magnitude at this call's first step \(3\.\d+\); "
        r"stopped before the parameters were updated\. Lower lr or set clip_norm; "
        r"divergence_ratio=None turns this check off"
    )
    with pytest.raises(TrainingDivergedError, match=match):
        _fit_line(Line(), lr=1e4)
    result = _fit_line(Line(), lr=1e4, divergence_ratio=None)
    elbo = result.history["train_elbo"]
    assert all(torch.isfinite(torch.tensor(elbo))) and max(elbo) < -1e6  # absurd, as claimed
    normal = _fit_line(Line(), lr=0.1)  # a sane run never comes near the bound
    assert normal.epochs == 4


class _Overflowing(torch.optim.SGD):
    """SGD that writes inf into the second parameter after step ``at`` (finite gradients)."""

    def __init__(self, params, at):
        super().__init__(params, lr=0.05)
        self.at, self.steps = at, 0

    def step(self, closure=None):
        super().step(closure)
        self.steps += 1
        if self.steps == self.at:
            with torch.no_grad():
                self.param_groups[0]["params"][1].fill_(float("inf"))


def test_parameters_that_overflow_are_never_saved(tmp_path):
    ckpt = tmp_path / "c.pt"
    match = (
        r"parameters or buffers \['model.b'\] are NaN or infinite after epoch 2 \(the losses and "
        r"gradients were finite\); nothing was saved; last good checkpoint: .*c\.pt \(epoch 1\)"
    )
    with pytest.raises(TrainingDivergedError, match=match):  # step 6 ends epoch 2
        _fit_line(Line(), optimizer=lambda p: _Overflowing(p, at=6), checkpoint=ckpt)
    for path in (ckpt, tmp_path / "c.best.pt"):
        state = load_checkpoint(path)
        assert state["epoch"] == 1
        assert all(torch.isfinite(v).all() for v in state["params"].values())


class _LineWithSpare(Line):
    """``Line`` with a parameter the loss does not use (its gradient stays None)."""

    def __init__(self):
        super().__init__()
        self.spare = torch.nn.Parameter(torch.zeros(()))


class _SpoilingSGD(torch.optim.SGD):
    """SGD that writes inf into ``spoil`` after step ``at``: nothing in the loss shows it."""

    def __init__(self, params, spoil, at):
        super().__init__(params, lr=0.05)
        self.spoil, self.at, self.steps = spoil, at, 0

    def step(self, closure=None):
        super().step(closure)
        self.steps += 1
        if self.steps == self.at:
            with torch.no_grad():
                self.spoil.fill_(float("inf"))


@pytest.mark.parametrize("at", [2, 4, 7, 12])  # epochs 1, 2, 3 and the last step of epoch 4
def test_a_spoilt_parameter_the_loss_never_sees_is_caught_before_fit_returns(at):
    """Epochs that keep nothing (not the best, no checkpoint) skip the parameter check; a
    non-finite parameter must still be reported by the next kept epoch or at the end."""
    model = _LineWithSpare()
    epoch = (at - 1) // 3 + 1
    match = r"parameters or buffers \['model.spare'\] are NaN or infinite after epoch (\d)"
    with pytest.raises(TrainingDivergedError, match=match) as info:
        _fit_line(model, optimizer=lambda p: _SpoilingSGD(p, model.spare, at))
    reported = int(re.search(match, str(info.value)).group(1))
    assert epoch <= reported <= 4


def test_no_file_is_named_good_before_this_call_wrote_one(tmp_path):
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"epoch": 7, "note": "an earlier run's"})
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written in this call$"):
        _fit_line(Line(nan_at=3), checkpoint=ckpt)  # epoch 1, step 2
    assert load_checkpoint(ckpt)["note"] == "an earlier run's"


def test_a_batch_that_fails_the_model_check_names_epoch_and_step():
    with pytest.raises(ValueError, match=r"data: the batch of epoch 2, step 1 after transform: y"):
        # check 1 is fit's check of all the data, then one per step: check 5 is step 4
        _fit_line(Line(reject_at=5), transform=lambda x: x)


# --------------------------------------------------------------------------- resuming


def _vae(hidden=8):
    torch.manual_seed(0)
    return VAE(16, 2, hidden_dims=(hidden,)), AmortizedNormal(16, 2, hidden_dims=(8,))


def _x():
    return (torch.rand(48, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def _resume(model, guide, ckpt, **kwargs):
    return fit(
        model, guide, _x(), epochs=3, batch_size=16, checkpoint=ckpt, resume=True, seed=1,
        progress=False, **kwargs,
    )  # fmt: skip


def _written(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(*_vae(), _x(), epochs=1, batch_size=16, checkpoint=ckpt, seed=1, progress=False)
    return ckpt


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda p: p.write_bytes(b""), r"c\.pt is empty \(0 bytes\)"),
        (lambda p: p.write_bytes(p.read_bytes()[:-300]), r"c\.pt \(\d+ bytes\) is truncated"),
        (lambda p: p.write_bytes(os.urandom(2000)), r"c\.pt \(2000 bytes\) is not a file written"),
        (lambda p: p.write_text("epoch 3\n"), r"c\.pt \(8 bytes\) is not a file written"),
        (lambda p: torch.save({"a": 1}, p), r"c\.pt is not a pyrovi checkpoint: .*\['a'\]"),
        (
            lambda p: save_checkpoint(p, {"epoch": 1}),
            r"c\.pt lacks the entries \['params', 'optimizer', 'torch_rng', 'shuffle_rng', "
            r"'history'\]",
        ),
    ],
    ids=["empty", "truncated", "random-bytes", "text", "foreign-dict", "missing-entries"],
)
def test_resuming_from_a_bad_file_is_a_checkpoint_error(tmp_path, corrupt, match):
    ckpt = _written(tmp_path)
    corrupt(ckpt)
    model, guide = _vae()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(CheckpointError, match=match):
        _resume(model, guide, ckpt)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # untouched


def test_resuming_another_model_names_the_parameters(tmp_path):
    ckpt = _written(tmp_path)
    model, guide = _vae(hidden=4)
    before = [p.detach().clone() for p in model.parameters()]
    match = (
        r"c\.pt was saved for other parameters \(other shapes: model\.decoder\.0\.weight "
        r"\(8, 2\) \(expected \(4, 2\)\), .*was it written for another model or guide\?"
    )
    with pytest.raises(CheckpointError, match=match):
        _resume(model, guide, ckpt)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    pyro.clear_param_store()
    with pytest.raises(CheckpointError, match=r"missing \['model\.w', 'model\.b'\]; not in this"):
        _fit_line(Line(), checkpoint=ckpt, resume=True)


def test_resuming_with_other_module_buffers_or_nan_parameters_is_refused(tmp_path):
    ckpt = _written(tmp_path)
    state = load_checkpoint(ckpt)
    del state["model_state"]["prior_loc"]
    save_checkpoint(ckpt, state)
    with pytest.raises(CheckpointError, match=r"the model's saved state dict does not match"):
        _resume(*_vae(), ckpt)
    state = load_checkpoint(_written(tmp_path))  # as an older pyrovi could have written it
    name = sorted(state["params"])[0]
    state["params"][name][0] = float("nan")
    save_checkpoint(ckpt, state)
    with pytest.raises(
        CheckpointError, match=rf"holds NaN or infinite values in parameters \[{name!r}"
    ):
        _resume(*_vae(), ckpt)


# --------------------------------------------------------------------------- killed processes

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    import torch
    from pyrovi.guides import AmortizedNormal
    from pyrovi.infer import fit
    from pyrovi.models import VAE

    mode, ckpt, out, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    x = (torch.rand(96, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    torch.manual_seed(0)
    model, guide = VAE(16, 2, hidden_dims=(8,)), AmortizedNormal(16, 2, hidden_dims=(8,))
    if mode == "kill-in-save":  # SIGKILL itself in the 3rd save, after writing, before renaming
        replace, count = os.replace, [0]

        def killing_replace(src, dst):
            count[0] += 1
            if count[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return replace(src, dst)

        os.replace = killing_replace
    delay = 0.02 if mode == "slow" else 0.0

    def slow(x):  # the same numbers in every mode; "slow" leaves time to be killed
        time.sleep(delay)
        return x

    fit(
        model, guide, x, epochs=epochs, batch_size=16, seed=3, progress=False, transform=slow,
        checkpoint=ckpt if ckpt != "-" else None, resume=mode == "resume",
    )
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"guide.{k}": v for k, v in guide.state_dict().items()})
    torch.save(state, out)
    """
)


def _start(tmp_path, mode, ckpt, out, epochs):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), mode, str(ckpt), str(out), str(epochs)]
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=120):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return proc.returncode


def _same(a_path, b_path):
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_sigkill_during_training_then_resume_equals_an_uninterrupted_run(tmp_path):
    epochs, ckpt = 6, tmp_path / "c.pt"
    straight = _start(tmp_path, "straight", "-", tmp_path / "straight.pt", epochs)
    victim = _start(tmp_path, "slow", ckpt, tmp_path / "never.pt", epochs)
    deadline = time.monotonic() + 60
    while not ckpt.exists():  # the first epoch is saved: kill it somewhere in the next ones
        assert victim.poll() is None and time.monotonic() < deadline, victim.stderr.read()
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    saved = load_checkpoint(ckpt)["epoch"]
    assert 1 <= saved < epochs
    _finish(_start(tmp_path, "resume", ckpt, tmp_path / "resumed.pt", epochs))
    _finish(straight)
    _same(tmp_path / "straight.pt", tmp_path / "resumed.pt")


def test_sigkill_during_a_save_keeps_the_last_checkpoint_then_resume_is_exact(tmp_path):
    epochs, ckpt = 4, tmp_path / "c.pt"
    straight = _start(tmp_path, "straight", "-", tmp_path / "straight.pt", epochs)
    victim = _start(tmp_path, "kill-in-save", ckpt, tmp_path / "never.pt", epochs)
    victim.wait(timeout=120)
    assert victim.returncode == -signal.SIGKILL
    stale = [p.name for p in tmp_path.glob(".c.pt.tmp-*")]
    assert stale == [f".c.pt.tmp-{victim.pid}"]  # written in full, never renamed
    epoch = load_checkpoint(ckpt)["epoch"]
    assert epoch in (1, 2)  # the 3rd save is epoch 2's file (or its best file)
    _finish(_start(tmp_path, "resume", ckpt, tmp_path / "resumed.pt", epochs))
    _finish(straight)
    _same(tmp_path / "straight.pt", tmp_path / "resumed.pt")
    assert not list(tmp_path.glob(".c.pt.tmp-*"))  # the next save removed it
    assert load_checkpoint(ckpt)["epoch"] == epochs


# --------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ["WORLD_SIZE"] = "2"
    torch.set_num_threads(1)
    lines = []
    try:
        torch.distributed.init_process_group(
            "gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30)
        )
        scenarios = {  # only rank 1 misbehaves; every step both ranks all-reduce
            "nan-gradient": dict(model=Line(nan_at=6, rank=1)),
            "rejected-batch": dict(model=Line(reject_at=5, rank=1), transform=lambda x: x),
        }
        for name, kwargs in scenarios.items():
            pyro.clear_param_store()
            model = kwargs.pop("model")
            try:
                _fit_line(model, distributed=True, **kwargs)
                lines.append(f"{name}\tfinished\t")
            except (TrainingDivergedError, ValueError) as err:
                lines.append(f"{name}\t{type(err).__name__}\t{err}")
    except Exception:  # noqa: BLE001 - reported to the test through the file
        lines.append(f"crash\t\t{traceback.format_exc()!r}")
    finally:
        Path(f"{out}.rank{rank}").write_text("\n".join(lines))
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_distributed_processes_stop_together_when_one_sees_a_bad_step(tmp_path):
    ctx = mp.get_context("spawn")
    port, out = _free_port(), str(tmp_path / "out")
    procs = [ctx.Process(target=_dist_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a process waited for the other"
    results = [
        dict(
            (line.split("\t")[0], line.split("\t")[1:])
            for line in Path(f"{out}.rank{r}").read_text().splitlines()
        )
        for r in range(2)
    ]
    for r in range(2):
        assert "crash" not in results[r], results[r]["crash"]
        kind, message = results[r]["nan-gradient"]  # decided on the reduced gradients
        assert kind == "TrainingDivergedError", message
        assert "the gradients of ['model.b'] are NaN or infinite at epoch 2, step 2" in message
    kind, message = results[1]["rejected-batch"]  # rank 1 names its batch
    assert kind == "ValueError"
    assert message.startswith("data: the batch of epoch 2, step 1 after transform: y is out")
    kind, message = results[0]["rejected-batch"]  # rank 0 saw the NaN it reported
    assert kind == "TrainingDivergedError"
    assert "loss is nan at epoch 2, step 1 (or another process's batch failed" in message
