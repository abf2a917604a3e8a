"""Validation data with its own transform (``val_transform=``), and data off the support of an
observed site: a ``ValueError`` naming ``data`` or ``val_data``, the site and the support, with a
way out, even where the distribution does not validate its arguments (pyrovi's Bernoulli)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyrovi.data import DynamicBinarization, binarize
from pyrovi.guides import AmortizedNormal
from pyrovi.infer import fit
from pyrovi.models import VAE


def _vae():
    torch.manual_seed(0)
    return VAE(16, 2, hidden_dims=(8,)), AmortizedNormal(16, 2, hidden_dims=(8,))


def _grey(n=64, seed=0):
    return torch.rand(n, 16, generator=torch.Generator().manual_seed(seed))


def _binary(n=64, seed=0):
    # not the stream of _grey's generator (the same uniforms would binarize every pixel to 0)
    return binarize(_grey(n, seed), generator=torch.Generator().manual_seed(1000 + seed))


def _threshold(x: torch.Tensor) -> torch.Tensor:
    return binarize(x, method="threshold")


def _fit(x, **kwargs):
    model, guide = _vae()
    options = {"epochs": 1, "batch_size": 16, "seed": 0, "progress": False, **kwargs}
    return fit(model, guide, x, **options)


# --------------------------------------------------------------------------- off the support

_BERNOULLI = r"site 'x' has values outside the support of its Bernoulli distribution, \{0, 1\}"


def test_grey_validation_data_under_a_bernoulli_likelihood_is_refused_before_training():
    with pytest.raises(ValueError, match=rf"^val_data, first batch: {_BERNOULLI}, e\.g\. 0\.") as e:
        _fit(_binary(), val_data=_grey(32, seed=1))
    assert "val_data=pyrovi.data.binarize(x, generator=torch.Generator().manual_seed(0))" in str(
        e.value
    )
    assert "val_transform=" in str(e.value)


def test_grey_training_data_under_a_bernoulli_likelihood_is_refused():
    with pytest.raises(ValueError, match=rf"^data, first batch: {_BERNOULLI}") as e:
        _fit(_grey())
    assert "transform=pyrovi.data.DynamicBinarization()" in str(e.value)


def test_a_transform_that_leaves_the_support_is_named():
    with pytest.raises(ValueError, match=rf"^data, first batch after transform: {_BERNOULLI}"):
        _fit(_binary(), transform=lambda x: 0.5 * x)


def test_binary_data_and_binarized_validation_data_train():
    result = _fit(_grey(), transform=DynamicBinarization(), val_data=_binary(32, seed=1))
    assert len(result.history["val_elbo"]) == 1


def test_a_later_validation_batch_off_the_support_is_refused_at_the_validation():
    val = torch.cat([_binary(16, seed=1), _grey(16, seed=2)])  # the first batch is binary
    with pytest.raises(
        ValueError, match=rf"^val_data, batch 2 in the validation after epoch 1: {_BERNOULLI}"
    ):
        _fit(_binary(), val_data=val)


def test_validation_data_from_a_dataloader_is_checked_too():
    loader = DataLoader(TensorDataset(_grey(32, seed=1)), batch_size=16)
    with pytest.raises(ValueError, match=rf"^val_data, first batch: {_BERNOULLI}"):
        _fit(_binary(), val_data=loader)


def _counts_model(y):
    rate = pyro.param("rate", torch.tensor(2.0), constraint=dist.constraints.positive)
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Poisson(rate, validate_args=False), obs=y)


def test_another_support_gets_a_generic_way_out():
    y = torch.tensor([1.0, 2.5, 0.0, 3.0])
    with pytest.raises(
        ValueError,
        match=r"^data, first batch: site 'y' has values outside the support of its Poisson "
        r"distribution, IntegerGreaterThan\(lower_bound=0\), e\.g\. 2\.5\. .*map the data onto "
        r"the support \(e\.g\. with transform=\)",
    ):
        fit(_counts_model, None, y, epochs=1, progress=False)
    result = fit(_counts_model, None, y.round(), epochs=1, progress=False)
    assert result.epochs == 1


def _masked_model(x, mask):
    logits = pyro.param("logits", torch.zeros(x.shape[-1]))
    with pyro.plate("data", x.shape[0]):
        likelihood = dist.Bernoulli(logits=logits, validate_args=False).mask(mask).to_event(1)
        pyro.sample("x", likelihood, obs=x)


def _masked_model_poutine(x, mask):
    logits = pyro.param("logits", torch.zeros(x.shape[-1]))
    with pyro.plate("data", x.shape[0]), pyro.poutine.mask(mask=mask[:, 0]):
        pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)


@pytest.mark.parametrize("model", [_masked_model, _masked_model_poutine])
def test_masked_out_values_are_not_checked(model):
    x = _binary(8)
    mask = torch.ones(8, 16, dtype=torch.bool)
    x[2:4] = 0.5  # padding, off the support, masked out
    mask[2:4] = False
    assert fit(model, None, (x, mask), epochs=1, progress=False).epochs == 1
    mask[3] = True  # one padded row left unmasked
    with pytest.raises(ValueError, match=r"^data, first batch: site 'x' has values outside"):
        fit(model, None, (x, mask), epochs=1, progress=False)


# --------------------------------------------------------------------------- val_transform


def test_val_transform_scores_the_transformed_validation_data():
    grey_val = _grey(40, seed=1)  # 40 rows in batches of 16: three validation batches
    a = _fit(_grey(), transform=DynamicBinarization(), val_data=grey_val, val_transform=_threshold)
    b = _fit(_grey(), transform=DynamicBinarization(), val_data=_threshold(grey_val))
    assert a.history["val_elbo"] == b.history["val_elbo"]
    assert a.history["train_elbo"] == b.history["train_elbo"]


class _Counting:
    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return _threshold(x)


def test_val_transform_is_applied_to_validation_batches_only_and_every_epoch():
    counting = _Counting()
    result = _fit(_binary(), epochs=2, val_data=_grey(40, seed=1), val_transform=counting)
    # the first validation batch before training, then all 40 rows after each of two epochs
    assert counting.rows == 16 + 2 * 40
    assert len(result.history["val_elbo"]) == 2


def test_validation_data_needing_its_transform_is_checked_after_it():
    scaled = 255 * _grey(32, seed=1)  # pixel values 0-255: off [0, 1] until transformed
    result = _fit(_binary(), val_data=scaled, val_transform=lambda x: _threshold(x / 255))
    assert len(result.history["val_elbo"]) == 1
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] for a Bernoulli likelihood"):
        _fit(_binary(), val_data=scaled)
    with pytest.raises(
        ValueError,
        match=r"^val_data, first batch after val_transform: x must lie in \[0, 1\] for a Bernoulli",
    ):
        _fit(_binary(), val_data=scaled, val_transform=lambda x: x / 100)
    with pytest.raises(
        ValueError, match=rf"^val_data, first batch after val_transform: {_BERNOULLI}"
    ):
        _fit(_binary(), val_data=scaled, val_transform=lambda x: x / 255)


def test_a_failing_val_transform_is_named():
    with pytest.raises(
        ValueError,
        match=r"^val_data, first batch: val_transform failed: DynamicBinarization: `x` must "
        r"have values in \[0, 1\]",
    ):
        _fit(_binary(), val_data=2 * _grey(32), val_transform=DynamicBinarization())


def test_val_transform_needs_validation_data():
    with pytest.raises(
        ValueError, match=r"^val_transform is applied to the batches of val_data, but val_data"
    ):
        _fit(_binary(), val_transform=_threshold)


def test_a_random_val_transform_does_not_change_the_training_before_the_first_validation():
    # the check of the first validation batch restores the random state it used
    a = _fit(_grey(), transform=DynamicBinarization(), val_data=_binary(32, seed=1))
    b = _fit(
        _grey(),
        transform=DynamicBinarization(),
        val_data=_grey(32, seed=1),
        val_transform=DynamicBinarization(),
    )
    assert a.history["train_elbo"] == b.history["train_elbo"]
