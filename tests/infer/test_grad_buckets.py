"""GradientBuckets: bucket layout, order learning, sends during backward, weighted averages.

The collectives are replaced by fakes standing for one peer process whose gradients are zero and
whose shard holds ``PEER`` datapoints, so the averaged gradient is ``size / (size + PEER)`` times
this process's gradient. (Two real gloo processes are in ``test_distributed.py``.)
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as torch_dist

from pyrovi.infer.grad_buckets import GradientBuckets

PEER = 3


class _Done:
    def wait(self):
        return True


@pytest.fixture
def log(monkeypatch):
    events: list[tuple] = []

    def all_reduce(t, async_op=False):
        events.append(("send" if async_op else "reduce", t.numel()))
        if t.dtype == torch.float64 and t.numel() == 2 and not async_op:  # [loss*size, size]
            t[1] += PEER
        elif not async_op:  # the one-buffer path: gradients, then loss * size and size
            t[-1] += PEER
        return _Done() if async_op else None

    def broadcast(t, src):
        events.append(("broadcast", t.numel()))

    monkeypatch.setattr(torch_dist, "all_reduce", all_reduce)
    monkeypatch.setattr(torch_dist, "broadcast", broadcast)
    return events


def _fail(what, err):
    return RuntimeError(what)


def _chain(device):
    """x -> l1 -> l2 -> l3 -> loss; backward produces l3's gradient first."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 2, bias=False).double().to(device) for _ in range(3)]
    params = [layer.weight for layer in layers]  # 4 float64 = 32 bytes each

    def loss(x):
        h = x
        for layer in layers:
            h = torch.tanh(layer(h))
        return (h**2).sum()

    return params, loss


def _learn_order(buckets, loss, x, size):
    """The first overlapped step: it only records the order in which gradients arrive."""
    buckets.zero()
    buckets.begin(size, overlap=True)
    loss(x).backward()
    buckets.reduce(1.0, size)


def _expected_grads(params, loss, x):
    for p in params:
        p.grad = None
    loss(x).backward()
    grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return grads


def test_buckets_start_during_backward_in_the_learned_order(log, device):
    params, loss = _chain(device)
    x = torch.randn(5, 2, dtype=torch.float64, device=device)
    expected = _expected_grads(params, loss, x)
    buckets = GradientBuckets(params, world=2, fail=_fail, first_bucket_bytes=32, bucket_bytes=32)
    for i, p in enumerate(params):  # runs after the bucket hook of the same parameter
        p.register_post_accumulate_grad_hook(lambda _, i=i: log.append(("grad", i)))
    size = 5
    for step in range(3):
        log.clear()
        buckets.zero()
        buckets.begin(size, overlap=True)
        loss(x).backward()
        value = buckets.reduce(2.0, size)
        assert value == pytest.approx(2.0 * size / (size + PEER))
        for p, g in zip(params, expected):
            assert torch.allclose(p.grad, g * size / (size + PEER), atol=1e-14)
        if step == 0:  # learns the order: one reduce of everything, then rank 0's order
            assert log == [("grad", 2), ("grad", 1), ("grad", 0), ("reduce", 14), ("broadcast", 3)]
            assert buckets.order == [2, 1, 0] and len(buckets.ranges) == 3
        else:  # each bucket is sent as soon as its gradient is there, before the next layer's
            assert log == [
                ("send", 4),
                ("grad", 2),
                ("send", 4),
                ("grad", 1),
                ("send", 4),
                ("grad", 0),
                ("reduce", 2),
            ]
    buckets.close()
    log.clear()
    loss(x).backward()  # the bucket hooks are gone after close: nothing is sent
    assert log == [("grad", 2), ("grad", 1), ("grad", 0)]


def test_a_bucket_waits_for_the_buckets_before_it(log):
    params, loss = _chain("cpu")
    x = torch.randn(5, 2, dtype=torch.float64)
    buckets = GradientBuckets(params, world=2, fail=_fail, first_bucket_bytes=32, bucket_bytes=64)
    _learn_order(buckets, loss, x, 4)
    assert [len(range(*r)) for r in buckets.ranges] == [4, 8]  # l3 | l2 + l1
    buckets._make_buckets([0, 1, 2])  # as if rank 0 had seen l1's gradient first
    assert [len(range(*r)) for r in buckets.ranges] == [4, 8]  # l1 | l2 + l3
    for i, p in enumerate(params):
        p.register_post_accumulate_grad_hook(lambda _, i=i: log.append(("grad", i)))
    log.clear()
    buckets.zero()
    buckets.begin(4, overlap=True)
    loss(x).backward()
    # bucket 1 (l2 + l3) is complete first but waits for bucket 0 (l1): the order is kept
    assert log == [("grad", 2), ("grad", 1), ("send", 4), ("send", 8), ("grad", 0)]
    buckets.reduce(1.0, 4)


def test_unused_parameters_and_empty_shards(log):
    params, loss = _chain("cpu")
    unused = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    x = torch.randn(5, 2, dtype=torch.float64)
    buckets = GradientBuckets([*params, unused], world=2, fail=_fail, first_bucket_bytes=32)
    for _ in range(2):
        buckets.zero()
        buckets.begin(5, overlap=True)
        loss(x).backward()
        buckets.reduce(1.0, 5)
        assert torch.equal(unused.grad, torch.zeros(3, dtype=torch.float64))
    buckets.zero()
    buckets.begin(0, overlap=True)  # an empty shard: no backward at all
    assert buckets.reduce(0.0, 0) == 0.0
    assert all(float(p.grad.abs().sum()) == 0.0 for p in [*params, unused])


def test_two_backward_passes_in_an_overlapped_step_raise(log):
    params, loss = _chain("cpu")
    x = torch.randn(5, 2, dtype=torch.float64)
    buckets = GradientBuckets(params, world=2, fail=_fail, first_bucket_bytes=32, bucket_bytes=32)
    _learn_order(buckets, loss, x, 5)
    buckets.zero()
    buckets.begin(5, overlap=True)
    loss(x).backward()
    loss(x).backward()
    with pytest.raises(RuntimeError, match="more than one backward pass"):
        buckets.reduce(1.0, 5)
    # without overlap two backward passes are fine: their sum is reduced
    buckets.zero()
    buckets.begin(5, overlap=False)
    loss(x).backward()
    loss(x).backward()
    buckets.reduce(1.0, 5)


def test_size_must_match_the_step(log):
    params, loss = _chain("cpu")
    buckets = GradientBuckets(params, world=2, fail=_fail)
    _learn_order(buckets, loss, torch.randn(5, 2, dtype=torch.float64), 5)
    buckets.begin(5, overlap=True)
    with pytest.raises(ValueError, match="size 4 differs from the 5"):
        buckets.reduce(1.0, 4)


def test_collective_failures_are_reported_through_fail(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection closed by peer")

    monkeypatch.setattr(torch_dist, "all_reduce", broken)
    params, loss = _chain("cpu")
    buckets = GradientBuckets(params, world=2, fail=lambda what, err: ValueError(f"{what}: {err}"))
    loss(torch.randn(5, 2, dtype=torch.float64)).backward()
    with pytest.raises(ValueError, match="the gradient all-reduce: connection closed"):
        buckets.reduce(1.0, 5)


def test_sparse_gradients_are_taken_in_densely(log):
    emb = torch.nn.Embedding(6, 2, sparse=True).double()
    buckets = GradientBuckets([emb.weight], world=2, fail=_fail, first_bucket_bytes=8)
    idx = torch.tensor([1, 4, 4])
    for step in range(3):
        buckets.zero()
        buckets.begin(2, overlap=True)
        emb(idx).sum().backward()
        buckets.reduce(1.0, 2)
        expected = torch.zeros(6, 2, dtype=torch.float64)
        expected[1], expected[4] = 1.0, 2.0
        assert not emb.weight.grad.is_sparse
        assert torch.allclose(emb.weight.grad, expected * 2 / (2 + PEER)), step
