"""Corrupt streams: every corruption of a valid stream either raises a clear error or decodes to
exactly the original data, fast; counts are checked against the stream's size before anything is
allocated; version-1 streams (no checksum) still decode."""

import copy
import struct
import time
import zlib

import numpy as np
import pytest
import torch

from pyrovi import VAE, AmortizedNormal
from pyrovi.compress import (
    BitsBackCoder,
    CorruptStreamError,
    WordStack,
    decode,
    encode,
    stream_info,
)
from pyrovi.compress.rans import StackExhaustedError
from pyrovi.compress.stream import HEADER_BYTES, max_records, pad_words

_FIELDS = struct.Struct("<4sBBBBBIQIIIQQIQ")  # the 61 bytes shared by versions 1 and 2
_FIELD_AT = {"num_data": (13, "<Q"), "lanes": (29, "<I"), "clean_words": (41, "<Q")}
_FIELD_AT["stack_words"] = (53, "<Q")
TIME_LIMIT_S = 1.0


def _pair(x_dim=20, z_dim=3):
    torch.manual_seed(0)
    model = VAE(x_dim, z_dim, hidden_dims=(16,))
    guide = AmortizedNormal(x_dim, z_dim, hidden_dims=(16,))
    return model, guide


@pytest.fixture(scope="module")
def setup():
    model, guide = _pair()
    x = (torch.rand(40, 20, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    return model, guide, x, encode(model, guide, x, lanes=4)


def _reseal(blob: bytes) -> bytes:
    """Recompute a version-2 stream's checksum, as someone altering it on purpose would."""
    crc = zlib.crc32(blob[HEADER_BYTES:], zlib.crc32(blob[: _FIELDS.size]))
    return blob[: _FIELDS.size] + struct.pack("<I", crc) + blob[HEADER_BYTES:]


def _encode_v1(model, guide, x, lanes):
    """A version-1 stream (as pyrovi wrote before the checksum): unscrambled latents, 61-byte
    header, no padding."""
    coder = BitsBackCoder(model, guide, lanes=lanes)
    coder.buckets.to_prior_symbols = lambda index: np.asarray(index, dtype=np.int64)
    symbols = coder._to_symbols(x)
    msg, _ = coder._chain(symbols, lanes)
    words = msg.stack.words
    header = _FIELDS.pack(
        b"PVBB", 1, 0, 12, 24, 24, 2, len(symbols), 20, 3, lanes, 0, msg.stack.clean_drawn,
        zlib.crc32(symbols.astype("<u4").tobytes()), words.size,
    )  # fmt: skip
    return header + msg.head.astype("<u8").tobytes() + words.astype("<u4").tobytes()


def _with(blob: bytes, field: str, value: int, reseal: bool = True) -> bytes:
    """``blob`` with one header field set to ``value`` (checksum recomputed if ``reseal``)."""
    out = bytearray(blob)
    offset, fmt = _FIELD_AT[field]
    struct.pack_into(fmt, out, offset, value)
    return _reseal(bytes(out)) if reseal else bytes(out)


def _corruptions(blob: bytes, rng: np.random.Generator, count: int) -> list[tuple[str, bytes]]:
    """``count`` seeded corruptions of ``blob``, cycling through the kinds."""
    n, header = len(blob), (HEADER_BYTES if blob[4] == 2 else _FIELDS.size)

    def flip_bit(b):
        out = bytearray(b)
        out[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        return bytes(out)

    def flip_header_byte(b):
        out = bytearray(b)
        out[rng.integers(4, header)] ^= int(rng.integers(1, 256))
        return bytes(out)

    kinds = {
        "bit flip": lambda: flip_bit(blob),
        "header byte flip": lambda: flip_header_byte(blob),
        "truncation": lambda: blob[: rng.integers(0, n)],
        "appended garbage": lambda: blob + rng.bytes(int(rng.integers(1, 64))),
        "zero length": lambda: b"",
        "random bytes": lambda: rng.bytes(int(rng.integers(1, 2 * n))),
        "random bytes, valid magic": lambda: blob[:5] + rng.bytes(int(rng.integers(0, 2 * n))),
        "resealed bit flip": lambda: _reseal(flip_bit(blob)),
        "resealed header byte flip": lambda: _reseal(flip_header_byte(blob)),
        "resealed payload swap": lambda: _reseal(
            blob[:header] + rng.permutation(np.frombuffer(blob[header:], np.uint8)).tobytes()
        ),
    }
    if blob[4] == 1:  # no checksum to recompute
        kinds = {k: v for k, v in kinds.items() if not k.startswith("resealed")}
    names = list(kinds)
    return [(names[i % len(names)], kinds[names[i % len(names)]]()) for i in range(count)]


def _outcome(model, guide, x, bad: bytes) -> tuple[str, float]:
    """``("exact" | "error: <type>", seconds)``; anything else fails the test."""
    t0 = time.perf_counter()
    try:
        y = decode(model, guide, bad)
    except ValueError as err:  # CorruptStreamError is one
        seconds = time.perf_counter() - t0
        assert str(err).startswith("blob: "), f"unclear message: {err}"
        return f"error: {type(err).__name__}", seconds
    seconds = time.perf_counter() - t0
    assert torch.equal(y, x), "decoded to other data without an error"
    return "exact", seconds


def _fuzz(setup, count, seed, version=2):
    model, guide, x, blob = setup
    if version == 1:
        blob = _encode_v1(model, guide, x, lanes=4)
        assert torch.equal(decode(model, guide, blob), x)
    rng = np.random.default_rng(seed)
    tally, worst = {}, 0.0
    for kind, bad in _corruptions(blob, rng, count):
        if bad == blob:
            continue
        outcome, seconds = _outcome(model, guide, x, bad)
        assert seconds < TIME_LIMIT_S, f"{kind}: {seconds:.2f} s"
        tally[(kind, outcome)] = tally.get((kind, outcome), 0) + 1
        worst = max(worst, seconds)
    return tally, worst


@pytest.mark.parametrize("version", [2, 1])
def test_fuzz_every_corruption_fails_fast_or_decodes_exactly(setup, version):
    tally, _ = _fuzz(setup, 200, seed=version, version=version)
    assert sum(tally.values()) >= 190
    # unaltered checksums catch everything: a version-2 stream never reaches the decoder
    for (kind, outcome), _ in tally.items():
        if version == 2 and not kind.startswith("resealed"):
            assert outcome == "error: CorruptStreamError", (kind, outcome)


@pytest.mark.slow
@pytest.mark.parametrize("version", [2, 1])
def test_fuzz_many(setup, version):
    tally, worst = _fuzz(setup, 3000, seed=10 + version, version=version)
    assert sum(tally.values()) >= 2900 and worst < TIME_LIMIT_S


def test_flipped_record_count_fails_fast(setup):
    """The issue's case: one flipped byte in the record count (it hung and allocated ~100 GB)."""
    model, guide, x, blob = setup
    offset = _FIELD_AT["num_data"][0]
    for stream in (blob, _encode_v1(model, guide, x, lanes=4)):
        for byte in range(8):
            bad = bytearray(stream)
            bad[offset + byte] ^= 0x01
            # high bytes: far more records than the bytes can hold, refused before decoding;
            # low bytes: the checksum (version 2) or the decoding itself (version 1) finds it
            match = "records cannot fit in" if byte >= 2 else None
            t0 = time.perf_counter()
            with pytest.raises(CorruptStreamError, match=match):
                decode(model, guide, bytes(bad))
            assert time.perf_counter() - t0 < (0.1 if byte >= 2 else TIME_LIMIT_S)


def test_counts_are_bounded_by_the_size(setup):
    model, guide, x, blob = setup
    size = len(blob)
    most = max_records(size)
    assert most == 8 * (size - HEADER_BYTES)
    with pytest.raises(CorruptStreamError, match=f"num_data={most + 1} records cannot fit"):
        stream_info(_with(blob, "num_data", most + 1))
    with pytest.raises(CorruptStreamError, match="clean_words=121 exceeds num_data x z_dim"):
        stream_info(_with(blob, "clean_words", 40 * 3 + 1))
    with pytest.raises(CorruptStreamError, match="lanes=21 is outside"):
        stream_info(_with(blob, "lanes", 21))
    with pytest.raises(CorruptStreamError, match="truncated, extended or corrupt"):
        stream_info(_with(blob, "stack_words", 2**64 - 1))
    with pytest.raises(CorruptStreamError, match="checksum mismatch"):
        stream_info(_with(blob, "num_data", 39, reseal=False))


def test_record_count_within_the_bound_stops_when_the_words_run_out(setup):
    """A (resealed) count far above the true one but within the bound: decoding stops at the
    first datapoint that needs more words than the stream holds."""
    model, guide, x, blob = setup
    bad = _with(blob, "num_data", max_records(len(blob)))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"ran out of words while decoding datapoint \d+"):
        decode(model, guide, bad)
    assert time.perf_counter() - t0 < TIME_LIMIT_S


def test_stack_without_floor_refuses_to_underflow():
    stack = WordStack(words=np.arange(3, dtype=np.uint32), clean_floor=False)
    with pytest.raises(StackExhaustedError, match="popping 4 words from a stack of 3"):
        stack.pop(4)
    np.testing.assert_array_equal(stack.pop(3), [0, 1, 2])


def test_padding_keeps_one_bit_per_record():
    assert pad_words(10, 100) == 0 and pad_words(800, 100) == 0
    assert pad_words(801, 100) == 1 and pad_words(833, 100) == 2
    # a chain that costs next to nothing: constant data, a decoder sure of it, posterior = prior
    torch.manual_seed(0)
    model = VAE(4, 1, decoder=torch.nn.Linear(1, 4))
    guide = AmortizedNormal(4, 1, hidden_dims=())
    s = torch.tensor(1.0 - guide.min_scale)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.fill_(-40.0)
        guide.head.weight.zero_()
        guide.head.bias.copy_(torch.stack([torch.tensor(0.0), s + torch.log(-torch.expm1(-s))]))
    x = torch.zeros(600, 4)
    blob, stats = encode(model, guide, x, return_stats=True)
    assert stats.code_lengths.sum() < 5  # bits, for 600 datapoints
    info = stream_info(blob)
    assert info["pad_words"] > 0 and info["num_data"] <= max_records(len(blob))
    assert torch.equal(decode(model, guide, blob), x)


def test_version_1_streams_still_decode(setup):
    model, guide, x, blob = setup
    v1 = _encode_v1(model, guide, x, lanes=4)
    assert stream_info(v1)["version"] == 1 and stream_info(blob)["version"] == 2
    assert torch.equal(decode(model, guide, v1), x)
    bad = bytearray(v1)
    bad[-3] ^= 0x40  # no checksum: the decoding itself finds it
    with pytest.raises(CorruptStreamError, match="version 1, without checksum"):
        decode(model, guide, bytes(bad))


def test_newer_version_and_foreign_bytes_are_refused(setup):
    model, guide, x, blob = setup
    with pytest.raises(CorruptStreamError, match=r"version 3; this pyrovi reads versions \[1, 2\]"):
        decode(model, guide, blob[:4] + b"\x03" + blob[5:])
    with pytest.raises(CorruptStreamError, match=r"empty \(0 bytes\)"):
        decode(model, guide, b"")
    with pytest.raises(CorruptStreamError, match="bad magic"):
        decode(model, guide, b"PK\x03\x04 a zip file")
    with pytest.raises(CorruptStreamError, match="shorter than the 65-byte header"):
        decode(model, guide, blob[:64])
    with pytest.raises(TypeError, match="blob must be bytes"):
        decode(model, guide, "PVBB")
    with pytest.raises(CorruptStreamError, match="head 0 is 5, below 2\\*\\*32"):
        decode(model, guide, _reseal(blob[:HEADER_BYTES] + struct.pack("<Q", 5) + blob[73:]))


def test_checksum_distinguishes_a_wrong_model_from_corruption(setup):
    model, guide, x, blob = setup
    other_guide = copy.deepcopy(guide)
    with torch.no_grad():
        other_guide.head.bias.add_(0.3)
    with pytest.raises(ValueError, match="checksum is intact, so the model and guide differ"):
        decode(model, other_guide, blob)
