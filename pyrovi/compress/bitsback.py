"""Bits-back coding with a trained VAE: lossless compression at the model's negative ELBO.

For each datapoint ``x`` in turn the encoder

1. *decodes* a latent bucket ``z ~ Q(z | x)`` from the message (taking bits back),
2. *encodes* ``x`` with ``P(x | z)``,
3. *encodes* ``z`` with the prior ``P(z)`` (``latent_bits`` bits per coordinate; the bucket
   indices scrambled by a fixed bijection, see :mod:`~pyrovi.compress.buckets`).

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
import math
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pyrovi._checks import check_bool
from pyrovi._progress import progress_bar
from pyrovi.compress.buckets import LatentBuckets
from pyrovi.compress.codecs import QuantizedCDF
from pyrovi.compress.errors import CorruptStreamError
from pyrovi.compress.inputs import (
    as_array,
    check_pair,
    model_likelihood,
    positive_int,
    shape_hint,
)
from pyrovi.compress.pixels import PixelLikelihood
from pyrovi.compress.rans import Message, StackExhaustedError, clean_words
from pyrovi.compress.stream import (
    HEADER_BYTES,
    StreamHeader,
    pack_stream,
    parse_stream,
    stream_info,
)

__all__ = [
    "BitsBackCoder",
    "CompressionStats",
    "encode",
    "decode",
    "stream_info",
    "default_lanes",
    "LANE_COST_BITS",
    "LANE_SHARE",
    "MAX_DEFAULT_LANES",
]

LANE_COST_BITS = 64
"""Fixed cost of one rANS lane assumed when choosing the default number (bits): its 64-bit head
is stored whole, and half of it on average carries no data (32 clean bits at the start, the
unused top of the head at the end)."""
LANE_SHARE = 0.005
"""The default number of lanes keeps their fixed cost within this share of the data's estimated
code length."""
MAX_DEFAULT_LANES = 128
"""Most lanes chosen by default (more buys little speed)."""
_ESTIMATE_RECORDS = 256  # records the code length is estimated on (evenly spaced)


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
        lanes: rANS lanes the stream was coded with.
    """

    num_data: int
    x_dim: int
    total_bits: int
    header_bits: int
    clean_bits: int
    net_bits: int
    code_lengths: np.ndarray = field(repr=False)
    encode_seconds: float = 0.0
    lanes: int = 0

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
            "lanes": self.lanes,
            "total_bits": self.total_bits,
            "header_bits": self.header_bits,
            "clean_bits": self.clean_bits,
            "net_bits": self.net_bits,
            "bits_per_dim": self.bits_per_dim,
            "net_bits_per_dim": self.net_bits_per_dim,
            "chain_bits_per_dim": self.chain_bits_per_dim,
            "encode_seconds": self.encode_seconds,
        }


def default_lanes(estimated_bits: float, x_dim: int, z_dim: int) -> int:
    """The default number of rANS lanes for data of ``estimated_bits`` bits.

    Each lane costs about :data:`LANE_COST_BITS` bits whatever the data size, so small data sets
    get few lanes (one for a few thousand bits) and large ones many (faster): the largest number
    whose fixed cost is at most :data:`LANE_SHARE` of ``estimated_bits``, between 1 and
    ``min(max(x_dim, z_dim), MAX_DEFAULT_LANES)``.
    """
    most = min(max(x_dim, z_dim), MAX_DEFAULT_LANES)
    share = LANE_SHARE * max(0.0, float(estimated_bits)) / LANE_COST_BITS
    return int(min(most, max(1, math.floor(share))))


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
        guide: Amortized diagonal-Gaussian guide (a module) with ``encode(x) -> (loc, scale)``,
            each ``(batch, z_dim)``, e.g. :class:`pyrovi.guides.AmortizedNormal`.
        latent_bits: Each latent coordinate is discretized into ``2**latent_bits`` buckets of
            equal prior mass (costing ``latent_bits`` bits under the prior).
        posterior_precision: Bits of the frequency tables of ``Q(z | x)`` (> ``latent_bits``).
        likelihood_precision: Bits of the frequency tables of ``P(x | z)``.
        likelihood: A :class:`~pyrovi.compress.pixels.PixelLikelihood` overriding the model's
            (needed for categorical pixels).
        levels: Grey levels of the Gaussian likelihood (discretized to ``levels`` values).
        lanes: Number of rANS heads (symbols coded per vectorized step), at most
            ``max(x_dim, z_dim)``. Each head costs about :data:`LANE_COST_BITS` bits of fixed
            overhead, so small data sets want few lanes; speed wants many. Default (None): chosen
            per call of :meth:`encode` from the data's code length estimated by the model
            (:func:`default_lanes`), and read from the stream by :meth:`decode`.
        seed: Seed of the clean bits that start the chain.

    Attributes:
        lanes: The lanes of the last stream encoded or decoded (the number given, if one was;
            None before the first call when automatic).
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
        self.x_dim, self.z_dim = check_pair(model, guide)
        self.latent_bits = positive_int("latent_bits", latent_bits, 1, 20)
        self.posterior_precision = positive_int("posterior_precision", posterior_precision, 2, 32)
        if posterior_precision <= latent_bits:
            raise ValueError(
                f"posterior_precision ({posterior_precision}) must exceed latent_bits "
                f"({latent_bits})"
            )
        self.likelihood_precision = positive_int(
            "likelihood_precision", likelihood_precision, 2, 32
        )
        self.seed = positive_int("seed", seed, 0, 2**63 - 1)
        for name in ("prior_loc", "prior_scale"):
            value = getattr(model, name, None)
            target = 0.0 if name == "prior_loc" else 1.0
            if isinstance(value, torch.Tensor) and not bool((value == target).all()):
                raise ValueError(f"model.{name}: bits-back coding needs the prior N(0, I)")
        if likelihood is None:
            likelihood = model_likelihood(model, levels)
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
        self._lanes = None if lanes is None else positive_int("lanes", lanes, 1, most)
        self.lanes = self._lanes
        self.last_stats: CompressionStats | None = None

    # ------------------------------------------------------------------ networks (float64, CPU)

    def _encode_latents(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``(loc, scale)``, float64 ``(batch, z_dim)``, checked."""
        with torch.no_grad():
            result = self._guide.encode(x)
        if not (isinstance(result, tuple | list) and len(result) == 2):
            raise TypeError(
                f"guide.encode must return a pair (loc, scale), got {type(result).__name__}"
            )
        loc, scale = (torch.as_tensor(t).to(torch.float64).numpy() for t in result)
        shape = (x.shape[0], self.z_dim)
        if loc.size != math.prod(shape) or scale.size != math.prod(shape):
            raise ValueError(
                f"guide.encode must return loc and scale of shape {shape}, got "
                f"{tuple(loc.shape)} and {tuple(scale.shape)}"
            )
        loc, scale = loc.reshape(shape), scale.reshape(shape)
        if not (np.isfinite(loc).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(
                "guide.encode returned a non-finite loc or a scale that is not positive and "
                "finite (a diverged guide?)"
            )
        return loc, scale

    def _decode_latents(self, z: np.ndarray) -> np.ndarray:
        """Decoder outputs, float64 ``(batch, out)``, checked."""
        with torch.no_grad():
            out = self._decoder(torch.from_numpy(np.ascontiguousarray(z)))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"model.decoder must return a tensor, got {type(out).__name__}")
        out = out.reshape(z.shape[0], -1).numpy()
        expected = self.pixels.output_size(self.x_dim)
        if out.shape[1] != expected:
            raise ValueError(
                f"model.decoder must return {expected} outputs per datapoint for a "
                f"{self.pixels.kind} likelihood, got {out.shape[1]}"
            )
        if not np.isfinite(out).all():
            raise ValueError("model.decoder returned NaN or infinite outputs (a diverged model?)")
        return out

    def _posterior(self, symbols: np.ndarray) -> QuantizedCDF:
        x = torch.from_numpy(self.pixels.from_symbols(symbols)).reshape(1, -1)
        loc, scale = self._encode_latents(x)
        return self.buckets.posterior(loc[0], scale[0], self.posterior_precision)

    def _likelihood(self, index: np.ndarray) -> QuantizedCDF:
        out = self._decode_latents(self.buckets.values(index).reshape(1, -1))
        return self.pixels.codec(out[0], self.likelihood_precision)

    def estimate_bits(self, data: torch.Tensor | np.ndarray) -> float:
        """The model's estimate of the code length of ``data`` ``(N, x_dim)`` (bits).

        On at most 256 evenly spaced datapoints: the Gaussian KL of the posterior from the prior
        plus ``-log2 P(x | z)`` at the posterior mean (with the coder's frequency tables), scaled
        to ``N``. One batched pass; the posterior mean is the most favourable latent, so the
        estimate tends to fall below the chain's code length (measured: 8% below on the 8x8
        digits, 4% below on 1,000 Fashion-MNIST images, 0.2% above on all 10,000), which is
        close enough for :func:`default_lanes`.
        """
        return self._estimate_bits(self._to_symbols(data))

    def _estimate_bits(self, symbols: np.ndarray) -> float:
        n = symbols.shape[0]
        rows = np.unique(np.linspace(0, n - 1, min(n, _ESTIMATE_RECORDS)).round().astype(int))
        sample = symbols[rows]
        x = torch.from_numpy(self.pixels.from_symbols(sample))
        loc, scale = self._encode_latents(x)
        kl_nats = 0.5 * float((loc**2 + scale**2 - 1.0 - 2.0 * np.log(scale)).sum())
        out = self._decode_latents(loc)
        p = self.likelihood_precision
        recon = 0.0
        for o, s in zip(out, sample):
            _, freqs = self.pixels.codec(o, p).encode_ranges(s)
            recon += float((p - np.log2(freqs)).sum())
        return (kl_nats / math.log(2) + recon) * n / rows.size

    # ------------------------------------------------------------------ chain

    def _to_symbols(self, data: Any) -> np.ndarray:
        array = as_array(data, self.x_dim)
        if array.ndim != 2 or array.shape[1] != self.x_dim or array.shape[0] < 1:
            raise ValueError(
                f"data must have shape (N, {self.x_dim}) with N >= 1, got {tuple(array.shape)}"
                + shape_hint(array.shape, self.x_dim)
            )
        return self.pixels.to_symbols(array)

    def _chain(
        self, symbols: np.ndarray, lanes: int, progress: bool = False
    ) -> tuple[Message, np.ndarray]:
        """Encode every datapoint in turn: the message and each datapoint's code length."""
        msg = Message(lanes, self.seed, random_lanes=lanes)
        ones = np.ones(self.z_dim, dtype=np.int64)
        lengths = np.empty(symbols.shape[0])
        with progress_bar(len(symbols), desc="encode", progress=progress, unit="datapoint") as bar:
            for i, s in enumerate(symbols):
                before = msg.content_bits() - msg.clean_bits
                index = msg.pop(self.z_dim, self.posterior_precision, self._posterior(s).lookup)
                starts, freqs = self._likelihood(index).encode_ranges(s)
                msg.push(starts, freqs, self.likelihood_precision)
                msg.push(self.buckets.to_prior_symbols(index), ones, self.latent_bits)
                lengths[i] = msg.content_bits() - msg.clean_bits - before
                bar.update(1)
        return msg, lengths

    def _header(self, symbols: np.ndarray, msg: Message) -> StreamHeader:
        return StreamHeader(
            version=0,  # set by pack_stream
            likelihood=self.pixels.kind,
            latent_bits=self.latent_bits,
            posterior_precision=self.posterior_precision,
            likelihood_precision=self.likelihood_precision,
            levels=self.pixels.num_symbols,
            num_data=symbols.shape[0],
            x_dim=self.x_dim,
            z_dim=self.z_dim,
            lanes=msg.lanes,
            seed=self.seed,
            clean_words=msg.stack.clean_drawn,
            symbols_crc=_symbols_crc(symbols),
            stack_words=0,  # set by pack_stream
        )

    def encode(self, data: torch.Tensor | np.ndarray, *, progress: bool = True) -> bytes:
        """Compress ``data`` ``(N, x_dim)`` (values on the likelihood's grid) to bytes.

        Statistics of the run are left in :attr:`last_stats`.

        Args:
            data: ``(N, x_dim)`` datapoints.
            progress: Show a tqdm bar over the datapoints (only when stderr is a terminal).

        Raises:
            TypeError: If ``data`` is not numeric (strings, objects, complex numbers).
            ValueError: If its shape is not ``(N, x_dim)`` with ``N >= 1``, or it holds values
                off the likelihood's grid (NaN, non-binary pixels for a Bernoulli model, ...), or
                the networks return malformed or non-finite outputs.
        """
        check_bool("progress", progress)
        symbols = self._to_symbols(data)
        t0 = time.perf_counter()
        with _one_thread():
            lanes = self._lanes
            if lanes is None:
                lanes = default_lanes(self._estimate_bits(symbols), self.x_dim, self.z_dim)
            msg, lengths = self._chain(symbols, lanes, progress)
        out = pack_stream(self._header(symbols, msg), msg.head, msg.stack.words)
        self.lanes = lanes
        total, clean = 8 * len(out), msg.clean_bits
        header_bits = 8 * HEADER_BYTES
        self.last_stats = CompressionStats(
            num_data=symbols.shape[0],
            x_dim=self.x_dim,
            total_bits=total,
            header_bits=header_bits,
            clean_bits=clean,
            net_bits=total - header_bits - clean,
            code_lengths=lengths,
            encode_seconds=time.perf_counter() - t0,
            lanes=lanes,
        )
        return out

    def _check_settings(self, h: StreamHeader) -> None:
        if h.likelihood != "custom" and h.likelihood != self.pixels.kind:
            raise ValueError(
                f"blob: the stream holds a {h.likelihood} likelihood, this coder has "
                f"{self.pixels.kind}"
            )
        expected = {
            "x_dim": self.x_dim,
            "z_dim": self.z_dim,
            "latent_bits": self.latent_bits,
            "posterior_precision": self.posterior_precision,
            "likelihood_precision": self.likelihood_precision,
            "levels": self.pixels.num_symbols,
            "seed": self.seed,
            "lanes": h.lanes if self._lanes is None else self._lanes,
        }
        for name, mine in expected.items():
            stream = getattr(h, name)
            if stream != mine:
                raise ValueError(
                    f"blob: the stream was encoded with {name}={stream}, this coder has {mine} "
                    "(decode with the same model, guide and settings)"
                )

    def decode(self, blob: bytes, *, progress: bool = True) -> np.ndarray:
        """Decompress bytes from :meth:`encode` to the integer symbols ``(N, x_dim)`` (int64).

        The stream is checked before anything is allocated (:func:`parse_stream`); decoding then
        stops as soon as the message runs out of words, and memory grows only with the
        datapoints actually decoded.

        Args:
            blob: The stream.
            progress: Show a tqdm bar over the datapoints (only when stderr is a terminal).

        Raises:
            TypeError: If ``blob`` is not bytes-like.
            CorruptStreamError: (a ``ValueError``) If the stream is malformed, truncated or
                extended, fails its checksum, or (version 1, no checksum) fails to decode.
            ValueError: If the stream does not match this coder, or a checksummed stream fails
                the integrity checks of its decoding (a different model, or networks that are not
                reproducible bit for bit).
        """
        check_bool("progress", progress)
        stream = parse_stream(blob)
        h = stream.header
        self._check_settings(h)
        msg = Message.from_arrays(stream.head, stream.words, self.seed, clean_floor=False)
        rows = []
        bar = progress_bar(h.num_data, desc="decode", progress=progress, unit="datapoint")
        with _one_thread(), bar:
            for i in range(h.num_data - 1, -1, -1):
                try:
                    rows.append(self._decode_one(msg, scrambled=h.version >= 2))
                except StackExhaustedError:
                    raise _integrity_error(
                        h,
                        f"the stream ran out of words while decoding datapoint {i} (of "
                        f"{h.num_data}, last first)",
                    ) from None
                bar.update(1)
        symbols = np.stack(rows[::-1])
        self._check_end(msg, h, symbols)
        self.lanes = h.lanes
        return symbols

    def _decode_one(self, msg: Message, scrambled: bool) -> np.ndarray:
        """Undo the encoding of one datapoint: its symbols ``(x_dim,)``. Version-1 streams
        coded the bucket indices unscrambled."""
        index = msg.pop(self.z_dim, self.latent_bits, _uniform_lookup)
        if scrambled:
            index = self.buckets.from_prior_symbols(index)
        s = msg.pop(self.x_dim, self.likelihood_precision, self._likelihood(index).lookup)
        starts, freqs = self._posterior(s).encode_ranges(index)
        msg.push(starts, freqs, self.posterior_precision)
        return s

    def _check_end(self, msg: Message, h: StreamHeader, symbols: np.ndarray) -> None:
        """The decoded chain must end where the encoder's started, on the same symbols."""
        if msg.stack.size != h.clean_words:
            what = f"{msg.stack.size} words are left, not the {h.clean_words} clean words"
        elif not np.array_equal(msg.head, Message(h.lanes, h.seed, random_lanes=h.lanes).head):
            what = "the final heads differ from the chain's start"
        elif not np.array_equal(msg.stack.words, clean_words(h.seed, 0, h.clean_words)[::-1]):
            what = "the words left differ from the clean words the chain started on"
        elif _symbols_crc(symbols) != h.symbols_crc:
            what = "the CRC32 of the decoded symbols differs from the one stored"
        else:
            return
        raise _integrity_error(h, what)

    def decode_values(self, blob: bytes, *, progress: bool = True) -> np.ndarray:
        """Like :meth:`decode` but returns data values in [0, 1] (float64, ``(N, x_dim)``)."""
        return self.pixels.from_symbols(self.decode(blob, progress=progress))


def _symbols_crc(symbols: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<u4").tobytes())


def _uniform_lookup(cf: np.ndarray, part: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cf = cf.astype(np.int64)
    return cf, cf, np.ones_like(cf)


def _integrity_error(h: StreamHeader, what: str) -> ValueError:
    """The error for a decoding that fails: a corrupt stream unless its checksum vouches for
    its bytes (version 2), then a model that is not the encoder's."""
    if h.version >= 2:
        return ValueError(
            f"blob: decoding failed its integrity check: {what}. The stream's checksum is "
            "intact, so the model and guide differ from the encoder's (or are not reproducible "
            "bit for bit), or the stream was altered and its checksum recomputed"
        )
    return CorruptStreamError(
        f"blob: decoding failed its integrity check: {what}. The stream (version 1, without "
        "checksum) is corrupt, or the model and guide differ from the encoder's (or are not "
        "reproducible bit for bit)"
    )


def encode(
    model: nn.Module,
    guide: nn.Module,
    data: torch.Tensor | np.ndarray,
    *,
    return_stats: bool = False,
    progress: bool = True,
    **options: Any,
) -> bytes | tuple[bytes, CompressionStats]:
    """Compress ``data`` ``(N, x_dim)`` losslessly with bits-back coding.

    Args:
        model: Trained VAE-like model (see :class:`BitsBackCoder`).
        guide: Its amortized Gaussian guide.
        data: Binary images for a Bernoulli likelihood, values on the ``levels`` grid for a
            Gaussian or categorical one.
        return_stats: Also return the :class:`CompressionStats`.
        progress: Show a tqdm bar over the datapoints (only when stderr is a terminal).
        **options: Keyword arguments of :class:`BitsBackCoder` (``latent_bits``, ``seed``, ...).

    Returns:
        The compressed bytes (and the statistics when ``return_stats``).
    """
    coder = BitsBackCoder(model, guide, **options)
    blob = coder.encode(data, progress=progress)
    return (blob, coder.last_stats) if return_stats else blob


_STORED_OPTIONS = (
    "latent_bits",
    "posterior_precision",
    "likelihood_precision",
    "lanes",
    "seed",
)


def decode(
    model: nn.Module, guide: nn.Module, blob: bytes, *, progress: bool = True, **options: Any
) -> torch.Tensor:
    """Decompress bytes from :func:`encode` with the same model and guide.

    The coder settings stored in the stream (``latent_bits``, precisions, ``lanes``, ``seed``)
    are used unless given in ``options``; a ``likelihood`` other than the model's (e.g.
    :class:`~pyrovi.compress.pixels.CategoricalPixels`) must be passed again.

    Args:
        model: The trained VAE-like model the stream was encoded with.
        guide: Its guide.
        blob: The stream from :func:`encode`.
        progress: Show a tqdm bar over the datapoints (only when stderr is a terminal).
        **options: Keyword arguments of :class:`BitsBackCoder` overriding the stored settings.

    Returns:
        Tensor ``(N, x_dim)`` of data values in [0, 1], default dtype, on the model's device.

    Raises:
        TypeError: If ``blob`` is not bytes-like, or model and guide are not a VAE-like pair.
        CorruptStreamError: (a ``ValueError``) If the stream is corrupt (see
            :meth:`BitsBackCoder.decode`); nothing is decoded.
        ValueError: If it was encoded with another model, guide or settings.
    """
    info = stream_info(blob)
    for name, mine in zip(("x_dim", "z_dim"), check_pair(model, guide)):
        if info[name] != mine:
            raise ValueError(
                f"blob: the stream was encoded with {name}={info[name]}, the model has {mine} "
                "(decode with the same model and guide)"
            )
    settings = {k: info[k] for k in _STORED_OPTIONS}
    if info["likelihood"] == "gaussian":
        settings["levels"] = info["levels"]
    coder = BitsBackCoder(model, guide, **{**settings, **options})
    values = coder.decode_values(blob, progress=progress)
    param = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    device = param.device if param is not None else torch.device("cpu")
    return torch.as_tensor(values, dtype=torch.get_default_dtype(), device=device)
