"""Standard errors of correlated time series by blocking (Flyvbjerg & Petersen 1989).

Consecutive samples of a Markov chain are correlated, so ``std/√n`` underestimates the standard
error of their mean. Averaging pairs of neighbours repeatedly (block lengths 1, 2, 4, …) makes the
blocks ever less correlated; the naive standard error of the block means rises and then levels
off at the true one. The block length used is the smallest ``B`` with
``B³ > 2 n (σ_B/σ_1)⁴`` (Lee, Needs et al. 2011, Phys. Rev. E 83, 066706), ``σ_B`` being the
naive standard error at block length ``B``: long enough that the blocks are nearly independent,
short enough that their number still pins down their variance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["BlockingResult", "blocking"]


@dataclass(repr=False)
class BlockingResult:
    """The mean of a series and its blocking standard error.

    Attributes:
        mean: Mean of the series.
        stderr: Standard error at the chosen block length.
        naive_stderr: ``std/√n``, as if the samples were independent.
        block_size: Chosen block length (a power of 2).
        num_blocks: Blocks at that length.
        converged: Whether some block length met the criterion (else the longest with at least
            ``min_blocks`` blocks is used and the error may still be underestimated).
        inefficiency: ``(stderr/naive_stderr)²``, about ``2τ_int`` in samples (1 for independent
            samples).
        levels: ``[(block_size, stderr), …]`` for every level.
    """

    mean: float
    stderr: float
    naive_stderr: float
    block_size: int
    num_blocks: int
    converged: bool
    inefficiency: float
    levels: list[tuple[int, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain ``dict`` (for JSON)."""
        return asdict(self)

    def __repr__(self) -> str:
        flag = "" if self.converged else ", not converged"
        return (
            f"BlockingResult(mean={self.mean:.6g}, stderr={self.stderr:.3g}, "
            f"block_size={self.block_size}, inefficiency={self.inefficiency:.3g}{flag})"
        )


def blocking(series: torch.Tensor, *, min_blocks: int = 16) -> BlockingResult:
    """Mean and autocorrelation-corrected standard error of a 1-D series.

    Args:
        series: Samples ``(n,)`` in time order (e.g. the walker-averaged local energy of every
            step), ``n >= 2``.
        min_blocks: The fewest blocks a level may have to be considered (≥ 2).

    Returns:
        A :class:`BlockingResult`. A constant series has standard error 0.

    Raises:
        ValueError: Not a 1-D series of at least 2 finite values, or a bad ``min_blocks``.
    """
    try:
        x = torch.as_tensor(series).detach().to(torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"series: expected a 1-D tensor of numbers, got {type(series).__name__}"
        ) from err
    if x.dim() != 1 or len(x) < 2:
        raise ValueError(f"series: expected a 1-D series of >= 2 values, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("series: contains NaN or infinite values")
    if isinstance(min_blocks, bool) or not isinstance(min_blocks, int) or min_blocks < 2:
        raise ValueError(f"min_blocks must be an integer >= 2, got {min_blocks!r}")
    n = len(x)
    mean = float(x.mean())
    levels: list[tuple[int, float]] = []
    size = 1
    while len(x) >= max(2, min_blocks if size > 1 else 2):
        levels.append((size, float(x.std()) / math.sqrt(len(x))))
        if len(x) < 2 * min_blocks:
            break
        m = len(x) // 2
        x = 0.5 * (x[: 2 * m : 2] + x[1 : 2 * m : 2])
        size *= 2
    naive = levels[0][1]
    chosen, converged = levels[-1], False
    for size, err in levels:
        ratio = 1.0 if naive == 0 else (err / naive) ** 4
        if size**3 > 2 * n * ratio:
            chosen, converged = (size, err), True
            break
    size, err = chosen
    return BlockingResult(
        mean=mean,
        stderr=err,
        naive_stderr=naive,
        block_size=size,
        num_blocks=n // size,
        converged=converged,
        inefficiency=1.0 if naive == 0 else (err / naive) ** 2,
        levels=levels,
    )
