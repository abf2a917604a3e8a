"""Bits-back coding with a trained VAE: lossless compression at the model's negative ELBO.

For each datapoint ``x`` in turn the encoder

1. *decodes* a latent bucket ``z ~ Q(z | x)`` from the message (taking bits back),
2. *encodes* ``x`` with ``P(x | z)``,
3. *encodes* ``z`` with the prior ``P(z)`` (``latent_bits`` bits per coordinate).

The net cost is ``-log2 P(x | z) - log2 P(z) + log2 Q(z | x)`` bits, whose mean over ``z`` is
the negative ELBO of the discretized model (Townsend et al., 2019, BB-ANS). The decoder runs the
steps backwards and in reverse order (the rANS message is a stack). The first datapoint has no
bits to give back yet: the clean bits it uses are counted separately
(:attr:`CompressionStats.clean_bits`).

Networks run on CPU in float64 copies of the model's decoder and the guide, one datapoint at a
time and on one torch thread on both sides, so that encoder and decoder compute bit-identical
frequencies (same machine and library versions assumed; a mismatch is detected by the decoder's
integrity check, never silently).
"""

from __future__ import annotations

import contextlib
import copy
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pyrovi.compress.buckets import LatentBuckets
from pyrovi.compress.codecs import QuantizedCDF
from pyrovi.compress.pixels import (
    BernoulliPixels,
    DiscretizedGaussianPixels,
    PixelLikelihood,
)
from pyrovi.compress.rans import Message, clean_words

__all__ = ["BitsBackCoder", "CompressionStats", "encode", "decode", "stream_info"]

_MAGIC = b"PVBB"
_VERSION = 1
_KINDS = ("bernoulli", "gaussian", "categorical")
# magic, version, kind, latent_bits, posterior_precision, likelihood_precision, levels, n, x_dim,
# z_dim, lanes, seed, clean words drawn, crc32 of the symbols, stack words
_HEADER = struct.Struct("<4sBBBBBIQIIIQQIQ")


@dataclass
class CompressionStats:
    """What one :meth:`BitsBackCoder.encode` measured (bits, seconds).

    Attributes:
        num_data: Datapoints N.
        x_dim: Pixels per datapoint D.
        total_bits: Size of the compressed bytes × 8 (header, heads and stack words).
        header_bits: Bits of the fixed-size header.
        clean_bits: Clean (random) bits the chain needs at its start: the 32 random low bits of
            every initial head plus the stack words drawn from below the floor while decoding the
            first latents. A sender could fill them with any other data (the decoder gives them
            back exactly); here they are a seeded pseudo-random stream.
        net_bits: ``total_bits - header_bits - clean_bits``: the cost of the data alone once the
            chain is started (it still includes the flush of the 64-bit heads).
        code_lengths: ``(N,)`` bits each datapoint added to the message's information content
            (``sum log2(head) + 32 × stack words``), less the clean bits drawn while coding it:
            its bits-back code length.
        encode_seconds: Wall time of the encoding.
    """

    num_data: int
    x_dim: int
    total_bits: int
    header_bits: int
    clean_bits: int
    net_bits: int
    code_lengths: np.ndarray = field(repr=False)
    encode_seconds: float = 0.0

    @property
    def bits_per_dim(self) -> float:
        """Total bits per pixel (everything in the output)."""
        return self.total_bits / (self.num_data * self.x_dim)

    @property
    def net_bits_per_dim(self) -> float:
        """Net bits per pixel (without header and clean bits)."""
        return self.net_bits / (self.num_data * self.x_dim)

    @property
    def chain_bits_per_dim(self) -> float:
        """Mean bits-back code length per pixel (sum of :attr:`code_lengths`)."""
        return float(self.code_lengths.sum()) / (self.num_data * self.x_dim)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-datapoint arrays)."""
        return {
            "num_data": self.num_data,
            "x_dim": self.x_dim,
            "total_bits": self.total_bits,
            "header_bits": self.header_bits,
            "clean_bits": self.clean_bits,
            "net_bits": self.net_bits,
            "bits_per_dim": self.bits_per_dim,
            "net_bits_per_dim": self.net_bits_per_dim,
            "chain_bits_per_dim": self.chain_bits_per_dim,
            "encode_seconds": self.encode_seconds,
        }


def _positive_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread (restored afterwards): a reduction split over threads
    could round differently, and the decoder must reproduce the encoder's floats exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _float64_copy(module: nn.Module) -> nn.Module:
    out = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)
    return out.eval()


class BitsBackCoder:
    """Lossless compressor from a trained model/guide pair (bits-back ANS).

    Args:
        model: A VAE-like model with a standard normal prior at ``"z"``: attributes ``z_dim``,
            ``x_dim``, ``decoder`` (module ``(batch, z_dim) -> (batch, out)``) and, unless
            ``likelihood`` is given, ``likelihood`` (``"bernoulli"`` or ``"gaussian"``, as in
            :class:`pyrovi.models.VAE`) with ``obs_scale`` for the Gaussian.
        guide: Amortized diagonal-Gaussian guide with ``encode(x) -> (loc, scale)``, each
            ``(batch, z_dim)``, e.g. :class:`pyrovi.guides.AmortizedNormal`.
        latent_bits: Each latent coordinate is discretized into ``2**latent_bits`` buckets of
            equal prior mass (costing ``latent_bits`` bits under the prior).
        posterior_precision: Bits of the frequency tables of ``Q(z | x)`` (> ``latent_bits``).
        likelihood_precision: Bits of the frequency tables of ``P(x | z)``.
        likelihood: A :class:`~pyrovi.compress.pixels.PixelLikelihood` overriding the model's
            (needed for categorical pixels).
        levels: Grey levels of the Gaussian likelihood (discretized to ``levels`` values).
        lanes: Number of rANS heads (symbols coded per vectorized step), at most
            ``max(x_dim, z_dim)``; default ``min(max(x_dim, z_dim), 128)``. Longer vectors are
            coded in chunks of ``lanes``. Each head costs about 48 bits of fixed overhead (32
            clean bits to start it, about 16 to flush it), so small data sets want few lanes;
            speed wants many (on 784 binary pixels, 112 lanes ran within ~10% of 784).
        seed: Seed of the clean bits that start the chain.
    """

    def __init__(
        self,
        model: nn.Module,
        guide: nn.Module,
        *,
        latent_bits: int = 12,
        posterior_precision: int = 24,
        likelihood_precision: int = 24,
        likelihood: PixelLikelihood | None = None,
        levels: int = 256,
        lanes: int | None = None,
        seed: int = 0,
    ) -> None:
        for attr in ("z_dim", "x_dim", "decoder"):
            if not hasattr(model, attr):
                raise TypeError(f"model must have a '{attr}' attribute (like pyrovi.models.VAE)")
        if not callable(getattr(guide, "encode", None)):
            raise TypeError("guide must have an encode(x) -> (loc, scale) method")
        self.latent_bits = _positive_int("latent_bits", latent_bits, 1, 20)
        self.posterior_precision = _positive_int("posterior_precision", posterior_precision, 2, 32)
        if posterior_precision <= latent_bits:
            raise ValueError(
                f"posterior_precision ({posterior_precision}) must exceed latent_bits "
                f"({latent_bits})"
            )
        self.likelihood_precision = _positive_int(
            "likelihood_precision", likelihood_precision, 2, 32
        )
        self.seed = _positive_int("seed", seed, 0, 2**63 - 1)
        self.z_dim, self.x_dim = int(model.z_dim), int(model.x_dim)
        for name in ("prior_loc", "prior_scale"):
            value = getattr(model, name, None)
            target = 0.0 if name == "prior_loc" else 1.0
            if isinstance(value, torch.Tensor) and not bool((value == target).all()):
                raise ValueError(f"model.{name}: bits-back coding needs the prior N(0, I)")
        if likelihood is None:
            kind = getattr(model, "likelihood", None)
            if kind == "bernoulli":
                likelihood = BernoulliPixels()
            elif kind == "gaussian":
                scale = model.obs_scale.detach().to("cpu", torch.float64).numpy()
                likelihood = DiscretizedGaussianPixels(scale, levels)
            else:
                raise ValueError(
                    f"model.likelihood must be 'bernoulli' or 'gaussian', got {kind!r}; "
                    "pass likelihood=CategoricalPixels(...) or another PixelLikelihood"
                )
        if not isinstance(likelihood, PixelLikelihood):
            raise TypeError(
                f"likelihood must be a PixelLikelihood, got {type(likelihood).__name__}"
            )
        if 1 << self.likelihood_precision < 2 * likelihood.num_symbols:
            raise ValueError(
                f"likelihood_precision={likelihood_precision} is too small for "
                f"{likelihood.num_symbols} symbols per pixel"
            )
        self.pixels = likelihood
        self.buckets = LatentBuckets(self.latent_bits)
        self._decoder = _float64_copy(model.decoder)
        self._guide = _float64_copy(guide)
        most = max(self.x_dim, self.z_dim)
        self.lanes = min(most, 128) if lanes is None else _positive_int("lanes", lanes, 1, most)
        self.last_stats: CompressionStats | None = None

    # ------------------------------------------------------------------ networks (float64, CPU)

    def _posterior(self, symbols: np.ndarray) -> QuantizedCDF:
        x = torch.from_numpy(self.pixels.from_symbols(symbols)).reshape(1, -1)
        with torch.no_grad():
            loc, scale = self._guide.encode(x)
        loc = loc.reshape(-1).numpy().astype(np.float64)
        scale = scale.reshape(-1).numpy().astype(np.float64)
        if loc.shape != (self.z_dim,) or scale.shape != (self.z_dim,):
            raise ValueError(
                f"guide.encode must return loc and scale of shape (1, {self.z_dim}), got "
                f"{tuple(loc.shape)} and {tuple(scale.shape)}"
            )
        return self.buckets.posterior(loc, scale, self.posterior_precision)

    def _likelihood(self, index: np.ndarray) -> QuantizedCDF:
        z = torch.from_numpy(self.buckets.values(index)).reshape(1, -1)
        with torch.no_grad():
            out = self._decoder(z).reshape(-1).numpy()
        expected = self.pixels.output_size(self.x_dim)
        if out.shape != (expected,):
            raise ValueError(
                f"model.decoder must return {expected} outputs per datapoint for a "
                f"{self.pixels.kind} likelihood, got {out.shape[0]}"
            )
        return self.pixels.codec(out, self.likelihood_precision)

    # ------------------------------------------------------------------ chain

    def _to_symbols(self, data: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
        if isinstance(data, torch.Tensor):
            array = data.detach().to("cpu", torch.float64).numpy()
        else:
            array = np.asarray(data, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self.x_dim or array.shape[0] < 1:
            raise ValueError(
                f"data must have shape (N, {self.x_dim}) with N >= 1, got {tuple(array.shape)}"
            )
        return self.pixels.to_symbols(array)

    def encode(self, data: torch.Tensor | np.ndarray) -> bytes:
        """Compress ``data`` ``(N, x_dim)`` (values on the likelihood's grid) to bytes.

        Statistics of the run are left in :attr:`last_stats`.
        """
        symbols = self._to_symbols(data)
        t0 = time.perf_counter()
        z_dim, x_dim = self.z_dim, self.x_dim
        msg = Message(self.lanes, self.seed, random_lanes=self.lanes)
        ones = np.ones(z_dim, dtype=np.int64)
        lengths = np.empty(symbols.shape[0])
        with _one_thread():
            for i, s in enumerate(symbols):
                before = msg.content_bits() - msg.clean_bits
                index = msg.pop(z_dim, self.posterior_precision, self._posterior(s).lookup)
                starts, freqs = self._likelihood(index).encode_ranges(s)
                msg.push(starts, freqs, self.likelihood_precision)
                msg.push(index, ones, self.latent_bits)
                lengths[i] = msg.content_bits() - msg.clean_bits - before
        crc = zlib.crc32(symbols.astype("<u4").tobytes())
        words = msg.stack.words
        header = _HEADER.pack(
            _MAGIC,
            _VERSION,
            _KINDS.index(self.pixels.kind) if self.pixels.kind in _KINDS else 255,
            self.latent_bits,
            self.posterior_precision,
            self.likelihood_precision,
            self.pixels.num_symbols,
            symbols.shape[0],
            x_dim,
            z_dim,
            self.lanes,
            self.seed,
            msg.stack.clean_drawn,
            crc,
            words.size,
        )
        out = header + msg.head.astype("<u8").tobytes() + words.astype("<u4").tobytes()
        total, clean = 8 * len(out), msg.clean_bits
        self.last_stats = CompressionStats(
            num_data=symbols.shape[0],
            x_dim=x_dim,
            total_bits=total,
            header_bits=8 * _HEADER.size,
            clean_bits=clean,
            net_bits=total - 8 * _HEADER.size - clean,
            code_lengths=lengths,
            encode_seconds=time.perf_counter() - t0,
        )
        return out

    def _read_header(self, blob: bytes) -> tuple:
        stream_info(blob)  # checks type and magic
        fields = _HEADER.unpack_from(bytes(blob))
        (_, version, kind, lbits, qprec, xprec, levels, n, x_dim, z_dim, lanes, seed) = fields[:12]
        if version != _VERSION:
            raise ValueError(f"data: stream version {version}, this decoder reads {_VERSION}")
        expected = {
            "x_dim": (x_dim, self.x_dim),
            "z_dim": (z_dim, self.z_dim),
            "latent_bits": (lbits, self.latent_bits),
            "posterior_precision": (qprec, self.posterior_precision),
            "likelihood_precision": (xprec, self.likelihood_precision),
            "levels": (levels, self.pixels.num_symbols),
            "seed": (seed, self.seed),
            "lanes": (lanes, self.lanes),
        }
        for name, (stream, mine) in expected.items():
            if stream != mine:
                raise ValueError(
                    f"data: the stream was encoded with {name}={stream}, this coder has {mine} "
                    "(decode with the same model, guide and settings)"
                )
        name = _KINDS[kind] if kind < len(_KINDS) else "custom"
        if name != "custom" and name != self.pixels.kind:
            raise ValueError(
                f"data: the stream holds a {name} likelihood, this coder has {self.pixels.kind}"
            )
        return fields

    def decode(self, blob: bytes) -> np.ndarray:
        """Decompress bytes from :meth:`encode` to the integer symbols ``(N, x_dim)`` (int64).

        Raises:
            ValueError: If the stream does not match this coder or fails its integrity checks
                (e.g. a different model, or networks that are not reproducible bit for bit).
        """
        fields = self._read_header(blob)
        n, lanes, clean_drawn, crc, num_words = (
            fields[7],
            fields[10],
            fields[12],
            fields[13],
            fields[14],
        )
        offset = _HEADER.size
        expected_len = offset + 8 * lanes + 4 * num_words
        if len(blob) != expected_len:
            raise ValueError(
                f"data: truncated or corrupt stream ({len(blob)} bytes, expected {expected_len})"
            )
        head = np.frombuffer(blob, "<u8", lanes, offset).astype(np.uint64)
        words = np.frombuffer(blob, "<u4", num_words, offset + 8 * lanes).astype(np.uint32)
        msg = Message.from_arrays(head, words, self.seed)
        z_dim = self.z_dim
        out = np.empty((n, self.x_dim), dtype=np.int64)

        def uniform(cf: np.ndarray, part: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            cf = cf.astype(np.int64)
            return cf, cf, np.ones_like(cf)

        with _one_thread():
            for i in range(n - 1, -1, -1):
                index = msg.pop(z_dim, self.latent_bits, uniform)
                s = msg.pop(self.x_dim, self.likelihood_precision, self._likelihood(index).lookup)
                starts, freqs = self._posterior(s).encode_ranges(index)
                msg.push(starts, freqs, self.posterior_precision)
                out[i] = s
        self._check_end(msg, clean_drawn, crc, out)
        return out

    def _check_end(self, msg: Message, clean_drawn: int, crc: int, symbols: np.ndarray) -> None:
        start = Message(self.lanes, self.seed, random_lanes=self.lanes)
        rest = msg.stack.words
        clean = clean_words(self.seed, 0, clean_drawn)[::-1]
        ok = (
            msg.stack.clean_drawn == 0
            and np.array_equal(msg.head, start.head)
            and np.array_equal(rest, clean)
            and zlib.crc32(symbols.astype("<u4").tobytes()) == crc
        )
        if not ok:
            raise ValueError(
                "data: decoding failed its integrity check (the stream is corrupt, or the model "
                "and guide differ from the encoder's or are not reproducible bit for bit)"
            )

    def decode_values(self, blob: bytes) -> np.ndarray:
        """Like :meth:`decode` but returns data values in [0, 1] (float64, ``(N, x_dim)``)."""
        return self.pixels.from_symbols(self.decode(blob))


def encode(
    model: nn.Module,
    guide: nn.Module,
    data: torch.Tensor | np.ndarray,
    *,
    return_stats: bool = False,
    **options: Any,
) -> bytes | tuple[bytes, CompressionStats]:
    """Compress ``data`` ``(N, x_dim)`` losslessly with bits-back coding.

    Args:
        model: Trained VAE-like model (see :class:`BitsBackCoder`).
        guide: Its amortized Gaussian guide.
        data: Binary images for a Bernoulli likelihood, values on the ``levels`` grid for a
            Gaussian or categorical one.
        return_stats: Also return the :class:`CompressionStats`.
        **options: Keyword arguments of :class:`BitsBackCoder` (``latent_bits``, ``seed``, ...).

    Returns:
        The compressed bytes (and the statistics when ``return_stats``).
    """
    coder = BitsBackCoder(model, guide, **options)
    blob = coder.encode(data)
    return (blob, coder.last_stats) if return_stats else blob


def stream_info(blob: bytes) -> dict[str, Any]:
    """The settings stored in the header of a stream from :func:`encode`.

    Returns:
        ``likelihood``, ``num_data``, ``x_dim``, ``z_dim``, ``latent_bits``,
        ``posterior_precision``, ``likelihood_precision``, ``levels``, ``lanes``, ``seed``,
        ``clean_words``, ``stack_words``.

    Raises:
        ValueError: If ``blob`` is not such a stream.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < _HEADER.size or blob[:4] != _MAGIC:
        raise ValueError("data: not a pyrovi bits-back stream (bad magic)")
    f = _HEADER.unpack_from(blob)
    return {
        "version": f[1],
        "likelihood": _KINDS[f[2]] if f[2] < len(_KINDS) else "custom",
        "latent_bits": f[3],
        "posterior_precision": f[4],
        "likelihood_precision": f[5],
        "levels": f[6],
        "num_data": f[7],
        "x_dim": f[8],
        "z_dim": f[9],
        "lanes": f[10],
        "seed": f[11],
        "clean_words": f[12],
        "stack_words": f[14],
    }


_STORED_OPTIONS = (
    "latent_bits",
    "posterior_precision",
    "likelihood_precision",
    "lanes",
    "seed",
)


def decode(model: nn.Module, guide: nn.Module, blob: bytes, **options: Any) -> torch.Tensor:
    """Decompress bytes from :func:`encode` with the same model and guide.

    The coder settings stored in the stream (``latent_bits``, precisions, ``lanes``, ``seed``)
    are used unless given in ``options``; a ``likelihood`` other than the model's (e.g.
    :class:`~pyrovi.compress.pixels.CategoricalPixels`) must be passed again.

    Returns:
        Tensor ``(N, x_dim)`` of data values in [0, 1], default dtype, on the model's device.
    """
    info = stream_info(blob)
    settings = {k: info[k] for k in _STORED_OPTIONS}
    if info["likelihood"] == "gaussian":
        settings["levels"] = info["levels"]
    coder = BitsBackCoder(model, guide, **{**settings, **options})
    values = coder.decode_values(blob)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.as_tensor(values, dtype=torch.get_default_dtype(), device=device)
