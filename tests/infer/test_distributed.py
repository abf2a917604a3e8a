"""fit(distributed=True): two gloo processes equal one process; a dead rank raises on the others."""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import socket
import traceback
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributed as torch_dist
from pyro.nn import PyroModule, PyroParam

from pyrovi.infer import fit, load_checkpoint
from pyrovi.infer.distributed import DistributedContext, DistributedError, shard_bounds

N, D = 40, 3


class Regression(PyroModule):
    """y ~ N(net(x) + x·w, 0.5) with a global latent w (point-mass guide below) and a net."""

    def __init__(self, die_at: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(D, 1)
        self.calls, self.die_at = 0, die_at

    def forward(self, x, y):
        self.calls += 1
        if self.die_at is not None and self.calls == self.die_at:
            os._exit(3)  # a crash without cleanup
        w = pyro.sample("w", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            loc = self.net(x).squeeze(-1) + x @ w
            pyro.sample("y", dist.Normal(loc, 0.5), obs=y)


class PointMass(PyroModule):
    def __init__(self) -> None:
        super().__init__()
        self.w_loc = PyroParam(torch.full((D,), 0.1))

    def forward(self, x, y):
        pyro.sample("w", dist.Delta(self.w_loc).to_event(1))


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(
        N, generator=g, dtype=torch.float64
    )
    return x, y


def _train(distributed: bool, die_at: int | None = None, checkpoint: str | None = None):
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    torch.manual_seed(0)
    model, guide = Regression(die_at), PointMass()
    result = fit(
        model,
        guide,
        _data(),
        epochs=3,
        batch_size=15,  # 3 global batches per epoch, the last one smaller (10)
        lr=0.05,
        seed=0,
        progress=False,
        distributed=distributed,
        checkpoint=checkpoint,
    )
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    params["w"] = guide.w_loc.detach().clone()
    return params, result


def _worker(rank: int, world: int, port: int, out: str, die_at: int | None, ckpt: str | None):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    try:
        torch_dist.init_process_group(
            "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30)
        )
        params, result = _train(True, die_at if rank == 1 else None, ckpt)
        if rank == 0:
            torch.save({"params": params, "history": result.history}, out)
    except DistributedError as err:
        Path(f"{out}.rank{rank}.error").write_text(str(err))
    except Exception:  # noqa: BLE001 - reported to the test through a file
        Path(f"{out}.rank{rank}.crash").write_text(traceback.format_exc())
    finally:
        if torch_dist.is_initialized():
            try:
                torch_dist.destroy_process_group()
            except Exception:  # noqa: BLE001
                pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(world: int, out: Path, die_at: int | None = None, ckpt: Path | None = None):
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(
            target=_worker, args=(r, world, port, str(out), die_at, str(ckpt) if ckpt else None)
        )
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("a worker process hung")
    return [p.exitcode for p in procs]


def test_shard_bounds_cover_the_batch_in_order():
    parts = [shard_bounds(10, 25, r, 4) for r in range(4)]
    assert parts[0][0] == 10 and parts[-1][1] == 25
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1
    assert shard_bounds(0, 1, 0, 2) == (0, 0)  # an empty shard


def test_two_gloo_processes_equal_one_process(tmp_path):
    single, single_result = _train(False)
    out = tmp_path / "dist.pt"
    codes = _run(2, out)
    crashes = list(tmp_path.glob("*.crash")) + list(tmp_path.glob("*.error"))
    assert not crashes, crashes[0].read_text()
    assert codes == [0, 0]
    got = torch.load(out, weights_only=True)
    for k, v in single.items():
        assert torch.allclose(got["params"][k], v, atol=1e-6, rtol=0), k
    assert got["history"]["train_elbo"] == pytest.approx(
        single_result.history["train_elbo"], rel=1e-9
    )


def test_a_dead_rank_raises_on_the_others_and_the_checkpoint_stays_loadable(tmp_path):
    out, ckpt = tmp_path / "dist.pt", tmp_path / "run.pt"
    # rank 1 dies in the second epoch (3 steps per epoch; call 1 is fit's validated first pass)
    codes = _run(2, out, die_at=6, ckpt=ckpt)
    assert codes[1] == 3
    error = tmp_path / "dist.pt.rank0.error"
    assert error.is_file(), [p.name for p in tmp_path.iterdir()]
    assert "rank 0/2" in error.read_text() and "another process probably died" in error.read_text()
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1


def test_distributed_without_a_process_group_is_a_clear_error(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="launch with `torchrun"):
        _train(True)


def test_context_weights_gradients_by_shard_size():
    ctx = DistributedContext(rank=0, world=1)
    assert ctx.is_main


def _npe_train(distributed: bool, theta, y):
    from pyrovi.infer import NPE
    from pyrovi.models import GaussianLinear

    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    npe = NPE(
        GaussianLinear(dim=2), params=["theta"], observed="y", num_layers=1, hidden_features=8
    )
    npe.train(
        theta=theta,
        y=y,
        batch_size=50,
        max_epochs=3,
        patience=5,
        progress=False,
        seed=0,
        distributed=distributed,
    )
    return {k: v.detach().clone() for k, v in npe.net.state_dict().items()}


def _npe_data():
    g = torch.Generator().manual_seed(3)
    theta = 0.3 * torch.randn(200, 2, generator=g)
    return theta, theta + 0.3 * torch.randn(200, 2, generator=g)


def _npe_worker(rank: int, world: int, port: int, out: str, simulate: bool = False):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    try:
        torch_dist.init_process_group("gloo", rank=rank, world_size=world)
        if simulate:  # each process simulates its share; all train on the gathered set
            from pyrovi.infer import NPE
            from pyrovi.models import GaussianLinear

            npe = NPE(GaussianLinear(dim=2), params=["theta"], observed="y", num_layers=1)
            res = npe.train(101, max_epochs=1, progress=False, seed=0, distributed=True)
            state = {k: v.detach().clone() for k, v in npe.net.state_dict().items()}
            torch.save({"n": res.num_simulations, "state": state}, f"{out}.rank{rank}")
        else:
            state = _npe_train(True, *_npe_data())
            if rank == 0:
                torch.save(state, out)
    except Exception:  # noqa: BLE001 - reported to the test through a file
        Path(f"{out}.rank{rank}.crash").write_text(traceback.format_exc())
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def test_npe_training_on_two_processes_equals_one(tmp_path):
    single = _npe_train(False, *_npe_data())
    out = tmp_path / "npe.pt"
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_npe_worker, args=(r, 2, port, str(out))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    crashes = list(tmp_path.glob("*.crash"))
    assert not crashes, crashes[0].read_text()
    got = torch.load(out, weights_only=True)
    for k, v in single.items():
        assert torch.allclose(got[k], v, atol=1e-4, rtol=1e-4), k


def test_npe_simulations_are_sharded_and_gathered(tmp_path):
    out = tmp_path / "npe.pt"
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_npe_worker, args=(r, 2, port, str(out), True)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    crashes = list(tmp_path.glob("*.crash"))
    assert not crashes, crashes[0].read_text()
    a, b = (torch.load(f"{out}.rank{r}", weights_only=True) for r in range(2))
    assert a["n"] == b["n"] == 101  # 51 + 50 simulations gathered on every process
    for k, v in a["state"].items():
        assert torch.equal(v, b["state"][k]), k  # the same flow on every process
