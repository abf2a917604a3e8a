"""The byte layout of a bits-back stream, and the checks that bound the work of decoding it.

Version 2 (written by this pyrovi; all integers little-endian)::

    offset  bytes  field
         0      4  magic b"PVBB"
         4      1  version (2)
         5      1  likelihood (0 bernoulli, 1 gaussian, 2 categorical, 255 custom)
         6      1  latent_bits
         7      1  posterior_precision
         8      1  likelihood_precision
         9      4  levels (symbols per pixel)
        13      8  num_data N (records)
        21      4  x_dim D (symbols per record)
        25      4  z_dim
        29      4  lanes L (rANS heads)
        33      8  seed of the clean words
        41      8  clean words C drawn while encoding
        49      4  CRC32 of the N x D symbols (uint32 each)
        53      8  stack words W
        61      4  CRC32 of bytes 0-60 and of the payload (version 2 only)
        65         payload: L heads (uint64), W stack words (uint32), P zero pad words (uint32)

Version 1 is the same without the stream checksum (a 61-byte header) and without padding; it is
still decoded.

Every count is bounded by the stream's size ``S`` before anything is allocated:

- ``S = header + 8 L + 4 W + 4 P`` exactly (so ``L`` and ``W`` are fixed by ``S``);
- ``N <= 8 (S - header)``: *at least one bit per record*. Bits-back coding has no such floor by
  itself (with bits back a record can cost nothing, or less than nothing), so the encoder adds
  ``P = max(0, ceil((N - 8 (8 L + 4 W)) / 32))`` zero words when the chain came out shorter;
  real data never needs them (a binarized 8x8 digit costs ~33 bits);
- ``C <= N z_dim`` (a record's posterior draws at most one word per latent coordinate);
- ``1 <= L <= max(D, z_dim)``, and every head is at least ``2**32``.

The stream checksum then catches any corruption of a version-2 stream before decoding starts.
While decoding, the stack of words must never run dry (a valid stream never pops below its
bottom); :class:`~pyrovi.compress.rans.WordStack` with ``clean_floor=False`` fails at once when
it would.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pyrovi.compress.errors import CorruptStreamError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_BYTES",
    "KINDS",
    "StreamHeader",
    "Stream",
    "pack_stream",
    "parse_stream",
    "pad_words",
    "max_records",
    "stream_info",
]

MAGIC = b"PVBB"
VERSION = 2
"""Format version written by :func:`pack_stream`; :func:`parse_stream` reads 1 and 2."""
KINDS = ("bernoulli", "gaussian", "categorical")
_CUSTOM = 255
_FIELDS = struct.Struct("<4sBBBBBIQIIIQQIQ")  # the 61 bytes shared by versions 1 and 2
_CHECKSUM = struct.Struct("<I")
_HEADER_SIZE = {1: _FIELDS.size, 2: _FIELDS.size + _CHECKSUM.size}
HEADER_BYTES = _HEADER_SIZE[VERSION]
"""Size of the header :func:`pack_stream` writes (bytes)."""
_HEAD_LOW = 1 << 32


@dataclass(frozen=True)
class StreamHeader:
    """The fields of a stream's header (see the module docstring)."""

    version: int
    likelihood: str
    latent_bits: int
    posterior_precision: int
    likelihood_precision: int
    levels: int
    num_data: int
    x_dim: int
    z_dim: int
    lanes: int
    seed: int
    clean_words: int
    symbols_crc: int
    stack_words: int

    @property
    def header_bytes(self) -> int:
        """Size of the header of this version (bytes)."""
        return _HEADER_SIZE[self.version]

    @property
    def pad_words(self) -> int:
        """Zero words after the stack words (see :func:`pad_words`; none in version 1)."""
        if self.version == 1:
            return 0
        return pad_words(self.num_data, 8 * self.lanes + 4 * self.stack_words)

    @property
    def stream_bytes(self) -> int:
        """Size of the whole stream this header describes (bytes)."""
        return self.header_bytes + 8 * self.lanes + 4 * (self.stack_words + self.pad_words)


@dataclass(frozen=True)
class Stream:
    """A checked stream: its header, heads (``uint64``) and stack words (``uint32``)."""

    header: StreamHeader
    head: np.ndarray
    words: np.ndarray


def pad_words(num_data: int, payload_bytes: int) -> int:
    """Zero words a version-2 stream appends so that its payload holds at least one bit per
    record: ``max(0, ceil((num_data - 8 payload_bytes) / 32))``."""
    return max(0, -(-(num_data - 8 * payload_bytes) // 32))


def max_records(stream_bytes: int, version: int = VERSION) -> int:
    """Most records a stream of ``stream_bytes`` bytes can hold: 8 per byte after the header."""
    return max(0, 8 * (stream_bytes - _HEADER_SIZE[version]))


def _kind_code(likelihood: str) -> int:
    return KINDS.index(likelihood) if likelihood in KINDS else _CUSTOM


def pack_stream(header: StreamHeader, head: np.ndarray, words: np.ndarray) -> bytes:
    """The bytes of a version-2 stream: header with checksum, heads, stack words and padding.

    ``header.version`` and ``header.stack_words`` are overridden by ``VERSION`` and
    ``words.size``.
    """
    values = {f.name: getattr(header, f.name) for f in fields(StreamHeader)}
    values.update(version=VERSION, stack_words=int(words.size))
    h = StreamHeader(**values)
    fixed = _FIELDS.pack(
        MAGIC,
        VERSION,
        _kind_code(h.likelihood),
        h.latent_bits,
        h.posterior_precision,
        h.likelihood_precision,
        h.levels,
        h.num_data,
        h.x_dim,
        h.z_dim,
        h.lanes,
        h.seed,
        h.clean_words,
        h.symbols_crc,
        h.stack_words,
    )
    payload = b"".join(
        [
            np.asarray(head, dtype="<u8").tobytes(),
            np.asarray(words, dtype="<u4").tobytes(),
            bytes(4 * h.pad_words),
        ]
    )
    checksum = zlib.crc32(payload, zlib.crc32(fixed))
    return fixed + _CHECKSUM.pack(checksum) + payload


def _as_bytes(blob: Any) -> bytes:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(
            f"blob must be bytes (a stream from pyrovi.compress.encode), got {type(blob).__name__}"
        )
    return bytes(blob)


def _corrupt(message: str) -> CorruptStreamError:
    return CorruptStreamError(f"blob: corrupt bits-back stream: {message}")


def _read_header(blob: bytes) -> StreamHeader:
    """Magic, version and the raw fields (no consistency checks yet)."""
    if not blob:
        raise CorruptStreamError("blob: empty (0 bytes), not a pyrovi bits-back stream")
    if blob[:4] != MAGIC[: len(blob)]:
        raise CorruptStreamError(
            f"blob: not a pyrovi bits-back stream (bad magic: it starts with {blob[:4]!r}, not "
            f"{MAGIC!r})"
        )
    if len(blob) < 5:
        raise _corrupt(f"truncated: {len(blob)} bytes, shorter than the header")
    version = blob[4]
    if version not in _HEADER_SIZE:
        raise CorruptStreamError(
            f"blob: stream format version {version}; this pyrovi reads versions "
            f"{sorted(_HEADER_SIZE)} (written by a newer pyrovi, or corrupt)"
        )
    size = _HEADER_SIZE[version]
    if len(blob) < size:
        raise _corrupt(f"truncated: {len(blob)} bytes, shorter than the {size}-byte header")
    f = _FIELDS.unpack_from(blob)
    if f[2] != _CUSTOM and f[2] >= len(KINDS):
        raise _corrupt(f"likelihood code {f[2]} is none of 0, 1, 2 and 255")
    kind = KINDS[f[2]] if f[2] < len(KINDS) else "custom"
    return StreamHeader(version, kind, *f[3:])


def _check_ranges(h: StreamHeader) -> None:
    """Each field within the range the encoder can write."""
    limits = {
        "latent_bits": (h.latent_bits, 1, 20),
        "posterior_precision": (h.posterior_precision, h.latent_bits + 1, 32),
        "likelihood_precision": (h.likelihood_precision, 2, 32),
        "levels": (h.levels, 2, 2 if h.likelihood == "bernoulli" else 65536),
        "x_dim": (h.x_dim, 1, 2**32 - 1),
        "z_dim": (h.z_dim, 1, 2**32 - 1),
        "lanes": (h.lanes, 1, max(h.x_dim, h.z_dim)),
        "seed": (h.seed, 0, 2**63 - 1),
        "num_data": (h.num_data, 1, 2**64 - 1),
    }
    for name, (value, low, high) in limits.items():
        if not low <= value <= high:
            raise _corrupt(f"{name}={value} is outside [{low}, {high}]")
    if 1 << h.likelihood_precision < 2 * h.levels:
        raise _corrupt(
            f"likelihood_precision={h.likelihood_precision} is too small for levels={h.levels}"
        )


def _check_counts(h: StreamHeader, size: int) -> None:
    """Counts consistent with the stream's ``size`` (bytes), before anything is allocated."""
    most = max_records(size, h.version)
    if h.num_data > most:
        raise _corrupt(
            f"num_data={h.num_data} records cannot fit in {size} bytes (at most {most}: the "
            "format stores at least one bit per record); the record count is corrupt"
        )
    if h.clean_words > h.num_data * h.z_dim:
        raise _corrupt(
            f"clean_words={h.clean_words} exceeds num_data x z_dim = {h.num_data * h.z_dim} "
            "(a record draws at most one clean word per latent coordinate)"
        )
    if size != h.stream_bytes:
        raise _corrupt(
            f"{size} bytes, but its header describes {h.stream_bytes} ({h.header_bytes}-byte "
            f"header, lanes={h.lanes} heads x 8, stack_words={h.stack_words} x 4, "
            f"{h.pad_words} pad words x 4): truncated, extended or corrupt"
        )


def _check_checksum(blob: bytes) -> None:
    stored = _CHECKSUM.unpack_from(blob, _FIELDS.size)[0]
    view = memoryview(blob)
    actual = zlib.crc32(view[_HEADER_SIZE[2] :], zlib.crc32(view[: _FIELDS.size]))
    if actual != stored:
        raise _corrupt(
            f"checksum mismatch (CRC32 of the stream is {actual:#010x}, its header says "
            f"{stored:#010x}): some bytes changed"
        )


def parse_stream(blob: bytes | bytearray | memoryview) -> Stream:
    """Check a stream from :func:`pack_stream` (or a version-1 stream) and split it.

    Checks, in order: magic and version; the range of every field; the counts against the
    stream's size (module docstring); the checksum (version 2); zero padding; heads
    ``>= 2**32``. The work is a few integer comparisons and one CRC32 pass: nothing is
    allocated before the counts are known to fit in the bytes present.

    Raises:
        TypeError: If ``blob`` is not bytes-like.
        CorruptStreamError: If any check fails; the message names the inconsistent field.
    """
    blob = _as_bytes(blob)
    h = _read_header(blob)
    _check_ranges(h)
    _check_counts(h, len(blob))
    if h.version >= 2:
        _check_checksum(blob)
    offset = h.header_bytes
    head = np.frombuffer(blob, "<u8", h.lanes, offset).astype(np.uint64)
    offset += 8 * h.lanes
    words = np.frombuffer(blob, "<u4", h.stack_words, offset).astype(np.uint32)
    if any(blob[offset + 4 * h.stack_words :]):
        raise _corrupt("the pad words after the stack are not zero")
    low = np.flatnonzero(head < _HEAD_LOW)
    if low.size:
        raise _corrupt(f"head {low[0]} is {head[low[0]]}, below 2**32 (no rANS state is)")
    return Stream(h, head, words)


def stream_info(blob: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The settings stored in a stream from :func:`pyrovi.compress.encode`, once checked.

    Returns:
        ``version``, ``likelihood``, ``latent_bits``, ``posterior_precision``,
        ``likelihood_precision``, ``levels``, ``num_data``, ``x_dim``, ``z_dim``, ``lanes``,
        ``seed``, ``clean_words``, ``stack_words``, ``pad_words``, ``header_bytes``.

    Raises:
        TypeError: If ``blob`` is not bytes-like.
        CorruptStreamError: (a ``ValueError``) If it is not a well-formed stream
            (:func:`parse_stream`).
    """
    h = parse_stream(blob).header
    info = {f.name: getattr(h, f.name) for f in fields(StreamHeader) if f.name != "symbols_crc"}
    info.update(pad_words=h.pad_words, header_bytes=h.header_bytes)
    return info
