"""Bad arguments of the data loaders and synthetic data (issue 17): named in the message."""

import pytest
import torch

from pyrovi.data import (
    U1,
    U2,
    U3,
    U4,
    binarize,
    binarize_data,
    eight_gaussians,
    eight_gaussians_log_prob,
    load_dataset,
    rings,
    rings_log_prob,
    two_moons,
    two_moons_log_prob,
    wall,
)

NAN = float("nan")


@pytest.mark.parametrize("sampler", [two_moons, rings, eight_gaussians])
def test_toy_samplers_name_bad_arguments(sampler):
    gen = torch.Generator().manual_seed(0)
    for n in (2.5, 0, -1, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            sampler(n, gen)
    with pytest.raises(TypeError, match="generator must be a torch.Generator, got str"):
        sampler(10, "x")
    assert sampler(3, gen).shape == (3, 2)


def test_toy_noise_and_log_densities():
    gen = torch.Generator().manual_seed(0)
    for sampler in (two_moons, rings):
        for noise in (-0.1, NAN, float("inf")):
            with pytest.raises(ValueError, match="noise must be a non-negative number"):
                sampler(10, gen, noise=noise)
    for log_prob in (two_moons_log_prob, rings_log_prob, eight_gaussians_log_prob):
        with pytest.raises(ValueError, match=r"x must be points of shape \(n, 2\), got \(5, 3\)"):
            log_prob(torch.zeros(5, 3))
    for m in (0, 2.5):
        with pytest.raises(ValueError, match="m must be a positive integer"):
            two_moons_log_prob(torch.zeros(5, 2), m=m)


@pytest.mark.parametrize("energy", [U1, U2, U3, U4, wall])
def test_energies_need_points_in_the_plane(energy):
    for shape in ((5, 3), (5, 1)):
        with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
            energy(torch.zeros(shape))
    assert energy(torch.zeros(4, 2)).shape == (4,)


def test_binarize_and_load_arguments():
    with pytest.raises(ValueError, match="threshold must be a finite number, got nan"):
        binarize(torch.rand(3, 4), method="threshold", threshold=NAN)
    with pytest.raises(TypeError, match="data must be an ImageData"):
        binarize_data(torch.rand(3, 4))
    with pytest.raises(ValueError, match="subset must be a positive integer, got 2.5"):
        load_dataset("digits", subset=2.5)
    data = load_dataset("digits", subset=5)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got 2.5"):
        binarize_data(data, seed=2.5)
