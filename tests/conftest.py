"""Shared fixtures: every test is seeded, starts with an empty param store, and can run on CUDA."""

import pyro
import pytest
import torch


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        action="store",
        default="cpu",
        help="torch device for tests that take the `device` fixture (e.g. cuda)",
    )


@pytest.fixture(autouse=True)
def _seed_and_clear():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    torch.set_default_dtype(torch.float32)
    yield
    pyro.clear_param_store()
    torch.set_default_dtype(torch.float32)


@pytest.fixture
def device(request):
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"--device {name} requested but CUDA is not available")
    return torch.device(name)
