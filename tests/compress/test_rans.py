"""Known answers for the vectorized rANS coder: entropy-rate code lengths and exact round trips."""

import numpy as np
import pytest

from pyrovi.compress import Message, WordStack, categorical, clean_words


def _quantized_pmf(pmf, precision):
    """Integer frequencies (every one >= 1) of a pmf, as `categorical` builds them."""
    codec = categorical(np.asarray(pmf)[None, :], precision)
    j = np.arange(len(pmf) + 1)
    c = np.array([codec.cumfreq(np.array([k]))[0] for k in j])
    return c[:-1], np.diff(c)


def test_iid_code_length_within_0p1_percent_of_entropy():
    rng = np.random.default_rng(1)
    pmf = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.03, 0.01])
    n, precision = 100_000, 16
    symbols = rng.choice(len(pmf), size=n, p=pmf)
    starts, freqs = _quantized_pmf(pmf, precision)
    msg = Message(1)
    for s in symbols:
        msg.push(starts[s : s + 1], freqs[s : s + 1], precision)
    code_bits = msg.payload_bits()  # everything needed to store the message
    ideal = -np.log2(pmf[symbols]).sum()  # information content of this sample
    entropy = n * -(pmf * np.log2(pmf)).sum()
    assert abs(code_bits / ideal - 1) < 1e-3
    assert abs(code_bits / entropy - 1) < 3e-3  # sampling noise of the sample's information
    # exact round trip, last in first out
    cum = np.concatenate([starts, [1 << precision]])

    def lookup(cf, part):
        s = np.searchsorted(cum, cf.astype(np.int64), side="right") - 1
        return s, starts[s], freqs[s]

    out = np.array([msg.pop(1, precision, lookup)[0] for _ in range(n)])[::-1]
    np.testing.assert_array_equal(out, symbols)
    assert msg.stack.size == 0 and msg.head[0] == 1 << 32


def test_vectorized_lanes_match_entropy():
    rng = np.random.default_rng(2)
    lanes, steps, precision = 64, 400, 20
    probs = rng.dirichlet(np.full(5, 0.5), size=lanes)
    codec = categorical(probs, precision)
    msg = Message(lanes)
    before = msg.content_bits()
    sent, ideal = [], 0.0
    for _ in range(steps):
        s = np.array([rng.choice(5, p=p) for p in probs])
        starts, freqs = codec.encode_ranges(s)
        ideal -= np.log2(freqs / 2**precision).sum()
        msg.push(starts, freqs, precision)
        sent.append(s)
    assert abs((msg.content_bits() - before) / ideal - 1) < 1e-3
    got = [msg.pop(lanes, precision, codec.lookup) for _ in range(steps)][::-1]
    np.testing.assert_array_equal(np.stack(got), np.stack(sent))


@pytest.mark.parametrize("precision", [4, 12, 24, 32])
def test_adversarial_pmfs_round_trip(precision):
    rng = np.random.default_rng(precision)
    k = 6
    pmfs = np.array(
        [
            [1.0, 0, 0, 0, 0, 0],  # one-hot
            [0, 0, 0, 0, 0, 1.0],  # one-hot at the end
            [1 - 5e-15, 1e-15, 1e-15, 1e-15, 1e-15, 1e-15],  # tiny probabilities
            [1e-300, 0.5, 1e-300, 0.5, 0, 0],
            np.full(k, 1 / k),
            rng.dirichlet(np.full(k, 0.05)),
        ]
    )
    codec = categorical(pmfs, precision)
    c_all = np.stack([codec.cumfreq(np.full(len(pmfs), j)) for j in range(k + 1)], axis=1)
    assert (np.diff(c_all, axis=1) >= 1).all() and (c_all[:, -1] == 1 << precision).all()
    msg = Message(len(pmfs), seed=3)
    # every symbol, including those of probability 0 and 1e-300, must survive
    sent = [rng.integers(0, k, len(pmfs)) for _ in range(200)]
    for s in sent:
        msg.push(*codec.encode_ranges(s), precision)
    got = [msg.pop(len(pmfs), precision, codec.lookup) for _ in sent][::-1]
    np.testing.assert_array_equal(np.stack(got), np.stack(sent))
    assert msg.stack.size == 0 and msg.stack.clean_drawn == 0


def test_pop_below_floor_draws_counted_clean_words_and_push_restores_them():
    msg = Message(3, seed=7, random_lanes=3)
    start_head = msg.head.copy()
    codec = categorical(np.tile([0.3, 0.7], (3, 1)), 16)
    decoded = [msg.pop(3, 16, codec.lookup) for _ in range(40)]
    assert msg.stack.clean_drawn > 0
    assert msg.clean_bits == 96 + 32 * msg.stack.clean_drawn
    for s in decoded[::-1]:
        msg.push(*codec.encode_ranges(s), 16)
    np.testing.assert_array_equal(msg.head, start_head)
    np.testing.assert_array_equal(msg.stack.words, clean_words(7, 0, msg.stack.clean_drawn)[::-1])


def test_clean_words_do_not_depend_on_chunking():
    whole = clean_words(5, 0, 3000)
    parts = np.concatenate(
        [clean_words(5, 0, 7), clean_words(5, 7, 1500), clean_words(5, 1507, 1493)]
    )
    np.testing.assert_array_equal(whole, parts)
    assert not np.array_equal(whole, clean_words(6, 0, 3000))


def test_word_stack_push_pop():
    stack = WordStack()
    stack.push(np.arange(5000, dtype=np.uint32))
    np.testing.assert_array_equal(stack.pop(3), [4997, 4998, 4999])
    assert stack.size == 4997 and stack.clean_drawn == 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="lanes"):
        Message(0)
    with pytest.raises(ValueError, match="random_lanes"):
        Message(2, random_lanes=3)
    msg = Message(2)
    with pytest.raises(ValueError, match="precision"):
        msg.push(np.zeros(2), np.ones(2), 33)
    with pytest.raises(ValueError, match="head"):
        Message.from_arrays(np.array([5], dtype=np.uint64), np.zeros(0))


def test_vectors_longer_than_the_lanes_are_chunked():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3), size=10)
    codec = categorical(probs, 12)
    msg = Message(4)
    sent = [rng.integers(0, 3, 10) for _ in range(50)]
    for s in sent:
        msg.push(*codec.encode_ranges(s), 12)
    got = [msg.pop(10, 12, codec.lookup) for _ in sent][::-1]
    np.testing.assert_array_equal(np.stack(got), np.stack(sent))
