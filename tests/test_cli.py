"""The shared command-line plumbing turns bad input into argparse errors."""

import argparse

import pytest

from pyrovi.cli import (
    add_data_arguments,
    add_training_arguments,
    add_vae_arguments,
    int_list,
    load_data_or_exit,
    positive_int,
    resolve_binarize,
    resolve_device,
)


def _parser():
    p = argparse.ArgumentParser()
    add_data_arguments(p)
    add_training_arguments(p, out="outputs/x", defaults={"epochs": 3})
    return p


def test_types():
    assert positive_int("4") == 4
    assert int_list("512, 256") == (512, 256)
    for bad in ("0", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
            positive_int(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers"):
        int_list("5,a")


def test_defaults_and_errors(capsys):
    p = _parser()
    args = p.parse_args([])
    assert args.epochs == 3 and args.out == "outputs/x" and args.dataset == "digits"
    assert resolve_device(p, args).type in ("cpu", "cuda")
    assert load_data_or_exit(p, p.parse_args(["--subset", "5"])).x_train.shape == (5, 64)
    with pytest.raises(SystemExit):
        load_data_or_exit(p, p.parse_args(["--dataset", "mnist"]))
    assert "--dataset mnist needs --data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        resolve_device(p, p.parse_args(["--resume"]))
    assert "--resume needs --checkpoint" in capsys.readouterr().err


def test_binarize_follows_the_likelihood_and_refuses_grey_bernoulli(capsys):
    p = argparse.ArgumentParser()
    add_vae_arguments(p)
    assert resolve_binarize(p, p.parse_args([])) == "dynamic"
    assert resolve_binarize(p, p.parse_args(["--likelihood", "gaussian"])) == "none"
    assert resolve_binarize(p, p.parse_args(["--binarize", "static"])) == "static"
    with pytest.raises(SystemExit):
        resolve_binarize(p, p.parse_args(["--binarize", "none"]))
    assert "--binarize none needs --likelihood gaussian" in capsys.readouterr().err


def test_device_auto_resolves_to_this_machine():
    p = _parser()
    args = p.parse_args([])
    assert args.device == "auto"
    assert resolve_device(p, args).type == args.device
