"""default_adam: torch's fused Adam where available, the same updates as the per-tensor Adam."""

from __future__ import annotations

import pytest
import torch

from pyrovi.infer import default_adam


def _train(make_opt, device):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64, device=device))
    b = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64, device=device))
    x = torch.randn(20, 5, dtype=torch.float64, device=device)
    opt = make_opt([w, b])
    for _ in range(25):
        opt.zero_grad()
        ((x @ w + b - 1.0) ** 2).mean().backward()
        opt.step()
    return opt, torch.cat([w.detach().reshape(-1), b.detach()])


def test_default_adam_matches_torch_adam(device):
    opt, fast = _train(lambda p: default_adam(p, 0.05), device)
    _, ref = _train(lambda p: torch.optim.Adam(p, lr=0.05), device)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 0.05
    assert torch.allclose(fast, ref, rtol=1e-12, atol=1e-12)
    assert not torch.equal(fast, _train(lambda p: torch.optim.SGD(p, lr=0.05), device)[1])


def test_default_adam_is_fused_on_cpu_with_a_recent_torch():
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 4):
        pytest.skip(f"torch {torch.__version__} has no fused CPU Adam")
    opt = default_adam([torch.nn.Parameter(torch.zeros(3))], 1e-3)
    assert opt.defaults["fused"] is True


def test_default_adam_falls_back_for_parameters_on_several_devices():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, device="meta"))]
    opt = default_adam(params, 1e-3)
    assert not opt.defaults["fused"]
