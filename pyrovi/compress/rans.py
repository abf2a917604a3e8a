"""A vectorized range asymmetric numeral system (rANS) coder with exact integer arithmetic.

The message is a *vector of heads* (one 64-bit rANS state per lane, numpy ``uint64``) on top of a
shared *stack* of 32-bit words. Every head stays in ``[2**32, 2**64)``; encoding a symbol with
frequency ``f`` out of ``2**precision`` first moves the low 32 bits of an overfull head onto the
stack, decoding moves 32 bits back when a head falls below ``2**32``. Because the state is a
stack, symbols come out in the reverse order they went in (last in, first out), which is what
bits-back chaining needs.

The stack has a *clean floor*: popping more words than were pushed draws fresh pseudo-random
words from a seeded stream (the "initial bits" of bits-back coding) and counts them, so the
overhead of starting a chain is measured, not guessed. A decoder turns the floor off
(``clean_floor=False``): decoding a valid message never pops below its bottom, so a pop that
would is a corrupt (or wrongly decoded) message and raises :class:`StackExhaustedError` at once.

Lanes are independent, so a vector of ``n`` symbols (one per lane, each with its own
distribution) costs a handful of numpy operations, as in BB-ANS (Townsend et al., 2019); longer
vectors are coded ``lanes`` symbols at a time. Each lane costs up to 64 bits when the message is
stored, so few lanes suit small data and many lanes suit speed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pyrovi.compress.errors import CorruptStreamError

__all__ = ["Message", "WordStack", "StackExhaustedError", "clean_words", "MAX_PRECISION"]

MAX_PRECISION = 32
"""Largest supported ``precision`` (bits of the frequency tables)."""

_LOW = np.uint64(1 << 32)  # lower bound of a head
_MASK32 = np.uint64(0xFFFFFFFF)
_WORD_SHIFT = np.uint64(32)
_BLOCK = 1024  # clean words are generated in blocks of this size


class StackExhaustedError(CorruptStreamError):
    """A pop needed more words than a stack without clean floor holds."""


def clean_words(seed: int, start: int, count: int) -> np.ndarray:
    """Words ``start, ..., start + count - 1`` of the seeded stream of clean (random) words.

    The stream is a deterministic function of ``seed`` and the word index, whatever the chunking.

    Returns:
        ``uint32`` array of shape ``(count,)``.
    """
    if count <= 0:
        return np.zeros(0, dtype=np.uint32)
    first, last = start // _BLOCK, (start + count - 1) // _BLOCK
    blocks = [
        np.random.default_rng([int(seed), 1, b]).integers(0, 1 << 32, _BLOCK, dtype=np.uint32)
        for b in range(first, last + 1)
    ]
    stream = np.concatenate(blocks)
    offset = start - first * _BLOCK
    return stream[offset : offset + count]


class WordStack:
    """Growable stack of ``uint32`` words with a clean floor.

    Args:
        seed: Seed of the clean-word stream drawn from when popping below the floor.
        words: Initial contents, bottom first.
        clean_floor: Draw clean words when popping more than the stack holds; if False, such a
            pop raises :class:`StackExhaustedError` (and leaves the stack as it was).
    """

    def __init__(
        self, seed: int = 0, words: np.ndarray | None = None, *, clean_floor: bool = True
    ) -> None:
        init = np.zeros(0, np.uint32) if words is None else np.asarray(words, dtype=np.uint32)
        self._buf = np.empty(max(1024, 2 * init.size), dtype=np.uint32)
        self._buf[: init.size] = init
        self.size = int(init.size)
        self.seed = int(seed)
        self.clean_floor = bool(clean_floor)
        self.clean_drawn = 0  # words drawn from below the floor

    def push(self, words: np.ndarray) -> None:
        """Push ``words`` (``uint32``, bottom first) on top of the stack."""
        n = words.size
        if self.size + n > self._buf.size:
            grown = np.empty(max(2 * self._buf.size, self.size + n), dtype=np.uint32)
            grown[: self.size] = self._buf[: self.size]
            self._buf = grown
        self._buf[self.size : self.size + n] = words
        self.size += n

    def pop(self, n: int) -> np.ndarray:
        """Remove and return the top ``n`` words (bottom first), drawing clean words if short."""
        if n <= self.size:
            self.size -= n
            return self._buf[self.size : self.size + n].copy()
        deficit = n - self.size
        if not self.clean_floor:
            raise StackExhaustedError(
                f"popping {n} words from a stack of {self.size}: the message is exhausted"
            )
        # Below the floor lie clean words r_0, r_1, ... (r_0 on top): the block, bottom first,
        # is r_{D+deficit-1}, ..., r_D followed by what the stack still holds.
        fresh = clean_words(self.seed, self.clean_drawn, deficit)[::-1]
        self.clean_drawn += deficit
        out = np.concatenate([fresh, self._buf[: self.size]])
        self.size = 0
        return out

    @property
    def words(self) -> np.ndarray:
        """A copy of the contents, bottom first (``uint32``, shape ``(size,)``)."""
        return self._buf[: self.size].copy()


def _check_precision(precision: int) -> np.uint64:
    if isinstance(precision, bool) or not isinstance(precision, int | np.integer):
        raise TypeError(f"precision must be an integer, got {type(precision).__name__}")
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be in [1, {MAX_PRECISION}], got {precision}")
    return np.uint64(precision)


class Message:
    """An rANS message: ``lanes`` heads in ``[2**32, 2**64)`` over a shared :class:`WordStack`.

    Args:
        lanes: Number of heads (symbols coded in parallel).
        seed: Seed of the clean-word stream (see :class:`WordStack`).
        random_lanes: The first ``random_lanes`` heads start at ``2**32 + r`` with ``r`` a clean
            32-bit word (needed where the chain *decodes* before it has encoded anything); the
            others start at exactly ``2**32``. Their random bits count as clean bits.
    """

    def __init__(self, lanes: int, seed: int = 0, random_lanes: int = 0) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
        if not 0 <= random_lanes <= lanes:
            raise ValueError(f"random_lanes must be in [0, lanes={lanes}], got {random_lanes}")
        self.stack = WordStack(seed)
        self.head = np.full(lanes, _LOW, dtype=np.uint64)
        if random_lanes:
            init = np.random.default_rng([int(seed), 2]).integers(
                0, 1 << 32, random_lanes, dtype=np.uint32
            )
            self.head[:random_lanes] |= init.astype(np.uint64)
        self.initial_random_bits = 32 * int(random_lanes)

    @classmethod
    def from_arrays(
        cls, head: np.ndarray, words: np.ndarray, seed: int = 0, *, clean_floor: bool = True
    ) -> Message:
        """Rebuild a message from its heads (``uint64``) and stack words (``uint32``).

        Args:
            head: The heads, each ``>= 2**32``.
            words: The stack, bottom first.
            seed: Seed of the clean-word stream.
            clean_floor: See :class:`WordStack`; a decoder passes False to fail as soon as the
                message runs out.
        """
        head = np.asarray(head, dtype=np.uint64)
        if head.ndim != 1 or head.size == 0:
            raise ValueError(f"head must be a non-empty 1-d array, got shape {head.shape}")
        if bool((head < _LOW).any()):
            raise ValueError("head: every head must be >= 2**32 (corrupt message?)")
        msg = cls(int(head.size), seed)
        msg.head = head.copy()
        msg.stack = WordStack(seed, words, clean_floor=clean_floor)
        return msg

    @property
    def lanes(self) -> int:
        """Number of heads."""
        return int(self.head.size)

    @property
    def clean_bits(self) -> int:
        """Clean bits used so far: random bits of the initial heads plus words drawn from the
        floor of the stack (32 bits each)."""
        return self.initial_random_bits + 32 * self.stack.clean_drawn

    def content_bits(self) -> float:
        """Information held by the message: ``sum(log2(head)) + 32 * stack words`` (bits).

        Encoding a symbol of probability ``P`` raises it by ``-log2 P`` up to rANS' rounding;
        decoding lowers it by the same amount.
        """
        return float(np.log2(self.head.astype(np.float64)).sum()) + 32.0 * self.stack.size

    def payload_bits(self) -> int:
        """Bits needed to store the message: 64 per head plus 32 per stack word."""
        return 64 * self.lanes + 32 * self.stack.size

    def _chunks(self, n: int) -> list[slice]:
        """Consecutive slices of at most ``lanes`` symbols covering ``0 .. n-1``."""
        return [slice(k, min(n, k + self.lanes)) for k in range(0, n, self.lanes)]

    def push(self, starts: np.ndarray, freqs: np.ndarray, precision: int) -> None:
        """Encode a vector of ``n`` symbols, ``lanes`` at a time (symbol ``k`` in lane
        ``k % lanes``; chunks in order).

        Args:
            starts: ``(n,)`` integer cumulative frequency of each symbol (its CDF below it).
            freqs: ``(n,)`` integer frequency of each symbol, ``>= 1``, with
                ``starts + freqs <= 2**precision``.
            precision: Bits of the frequency tables; the symbol's probability is
                ``freqs / 2**precision``.
        """
        p = _check_precision(precision)
        starts = np.asarray(starts, dtype=np.uint64).reshape(-1)
        freqs = np.asarray(freqs, dtype=np.uint64).reshape(-1)
        if starts.shape != freqs.shape:
            raise ValueError(f"starts {starts.shape} and freqs {freqs.shape} must match")
        shift = np.uint64(64) - p
        for chunk in self._chunks(freqs.size):
            f = freqs[chunk]
            lanes = slice(0, f.size)
            x = self.head[lanes]
            over = x >= (f << shift)
            if over.any():
                self.stack.push((x[over] & _MASK32).astype(np.uint32))
                x[over] >>= _WORD_SHIFT
            self.head[lanes] = ((x // f) << p) + (x % f) + starts[chunk]

    def pop(
        self,
        n: int,
        precision: int,
        lookup: Callable[[np.ndarray, slice], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> np.ndarray:
        """Decode a vector of ``n`` symbols: the inverse of :meth:`push` (chunks in reverse).

        Args:
            n: Number of symbols.
            precision: Bits of the frequency tables.
            lookup: ``lookup(cf, part)`` maps the cumulative-frequency slots ``cf`` (``uint64``)
                of the symbols ``part`` (a slice of ``0 .. n-1``) to ``(symbols, starts,
                freqs)``: the symbols whose ranges ``[start, start + freq)`` contain ``cf``.

        Returns:
            The decoded symbols, ``(n,)``.
        """
        p = _check_precision(precision)
        mask = (np.uint64(1) << p) - np.uint64(1)
        parts = []
        for chunk in reversed(self._chunks(int(n))):
            lanes = slice(0, chunk.stop - chunk.start)
            cf = self.head[lanes] & mask
            symbols, starts, freqs = lookup(cf, chunk)
            starts = np.asarray(starts, dtype=np.uint64)
            freqs = np.asarray(freqs, dtype=np.uint64)
            x = freqs * (self.head[lanes] >> p) + cf - starts
            under = x < _LOW
            if under.any():
                words = self.stack.pop(int(under.sum())).astype(np.uint64)
                x[under] = (x[under] << _WORD_SHIFT) | words
            self.head[lanes] = x
            parts.append(np.asarray(symbols))
        return np.concatenate(parts[::-1]) if parts else np.zeros(0, dtype=np.int64)
