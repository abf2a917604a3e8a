"""Trial wave functions ``log ψ_θ(x)`` and the gradient-field drift ``v = ∇ log ψ_θ``.

For ``H = −½∇² + V`` the optimal drift of :class:`~pyrovi.models.GroundState` is ``∇ log φ₀``, a
gradient field. :class:`GradientDrift` makes the learned drift one by construction: a network
gives the scalar ``log ψ_θ`` and autograd its gradient. Then ``ψ_θ`` is a wave function in its own
right, and its local energy ``E_L = V − ½(∇² log ψ + |∇ log ψ|²)`` gives estimators free of the
Euler–Maruyama time-step bias (:func:`~pyrovi.models.variational_energy`,
:func:`~pyrovi.models.projected_energy`).

:class:`NeuralLogPsi` is the ansatz for identical particles (states ``(..., N·dim)``):

``log ψ = Σ_{i,A} −Z_A r_iA + Σ_{i<j} a r_ij/(1 + b r_ij) − ½ω Σ_i |r_i|² + c·Σ_i f_i
+ ρ(Σ_i φ(f_i) + Σ_{i<j} χ(g_ij))``

* the electron–nucleus factor ``e^{−Z r}`` and the electron–electron Padé–Jastrow factor (``a = ½``
  for the antiparallel spins of a singlet, ``b > 0`` trained) fix Kato's cusp conditions exactly:
  their Laplacians ``−2Z/r`` and ``+2a·2/r`` cancel the Coulomb singularities of ``V``;
* everything else is smooth at the coincidence points: the network sees only
  ``s(r) = r²/(1 + r)`` of the electron–nucleus and electron–electron distances (Coulomb systems;
  ``s'(0) = 0``, so it cannot change the cusps and the local energy stays finite) or the squared
  distances ``|r_i|²`` and ``|r_i − r_j|²`` (trapped particles), so ``ψ`` has the rotational
  symmetry of the nuclei (spherical for an atom or a trap, axial for a diatomic molecule; the
  exchange of two equal nuclei is not imposed);
* ``φ(f) = tanh(A f + a)`` and ``χ(g) = tanh(B g + b')`` are summed over particles and pairs
  (permutation symmetric: the bosonic / singlet ground state), and ``ρ`` is a tanh network with
  ``depth`` hidden layers; ``ρ``'s output layer and ``c`` start at zero, so the initial ``ψ`` is
  the analytic factor alone.

:meth:`NeuralLogPsi.local_terms` computes ``log ψ``, ``∇ log ψ`` and ``∇² log ψ`` in one forward
pass of second-order jets (:mod:`pyrovi.nn.jets`); :func:`log_psi_terms` falls back to autograd
for any other callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from pyrovi._checks import check_finite, check_positive, check_tensor
from pyrovi._validation import positive_int as _positive
from pyrovi.nn.jets import Jet, jet_linear, jet_tanh

if TYPE_CHECKING:  # pyrovi.models imports pyrovi.nn: no runtime import back
    from pyrovi.models.hamiltonians import Hamiltonian

__all__ = ["NeuralLogPsi", "GradientDrift", "log_psi_for", "log_psi_terms"]

LogPsiFn = Callable[[torch.Tensor], torch.Tensor]


def _distance(a: torch.Tensor) -> torch.Tensor:
    return (a * a).sum(-1).clamp_min(torch.finfo(a.dtype).tiny).sqrt()


def _checked(value: object, x: torch.Tensor) -> torch.Tensor:
    """``value`` if it is one ``log ψ`` per state of ``x`` ``(..., d)``, else a ValueError."""
    if not isinstance(value, torch.Tensor) or value.shape != x.shape[:-1]:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"log_psi must map states {tuple(x.shape)} to one value each, "
            f"{tuple(x.shape[:-1])}, got {got}"
        )
    return value


def log_psi_terms(
    log_psi: LogPsiFn, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``log ψ(x)``, ``∇ log ψ(x)`` and ``∇² log ψ(x)`` of states ``x`` ``(..., d)``.

    Uses ``log_psi.local_terms`` when it has one (:class:`NeuralLogPsi`: forward jets), otherwise
    autograd: one backward pass for the gradient and ``d`` more for the Laplacian. The results
    carry no graph to ``x`` (they do to the parameters of a :class:`NeuralLogPsi` when gradients
    are enabled).

    Args:
        log_psi: ``log ψ``: ``(..., d) -> (...)``, or a :class:`GradientDrift` (its ``log_psi``).
        x: States ``(..., d)``.

    Returns:
        ``(log ψ (...), gradient (..., d), Laplacian (...))``.
    """
    log_psi = getattr(log_psi, "log_psi", log_psi)
    if not callable(log_psi):
        raise TypeError(
            f"log_psi must be a callable log ψ(x): (..., d) -> (...), got {type(log_psi).__name__}"
        )
    terms = getattr(log_psi, "local_terms", None)
    if terms is not None:
        return terms(x.detach())
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = _checked(log_psi(x), x)
        grad = None
        if value.requires_grad:
            (grad,) = torch.autograd.grad(value.sum(), x, create_graph=True, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad  # log ψ constant in x
        lap = torch.zeros_like(value)
        if grad.requires_grad:  # else log ψ is linear in x: no second derivative
            for k in range(x.shape[-1]):
                (second,) = torch.autograd.grad(
                    grad[..., k].sum(), x, retain_graph=True, allow_unused=True
                )
                if second is not None:
                    lap = lap + second[..., k]
    return value.detach(), grad.detach(), lap.detach()


class NeuralLogPsi(nn.Module):
    """``log ψ_θ`` of N identical particles with exact cusps (see the module docstring).

    Args:
        num_particles: N.
        dim: Spatial dimension of one particle (3 for atoms).
        nuclei: Fixed Coulomb centres ``(M, dim)`` (bohr), or None.
        charges: Their charges ``(M,)``.
        electron_cusp: ``a`` of the pair Padé factor ``a r/(1 + b r)`` (½ for antiparallel-spin
            electrons), or None for no pair factor (non-Coulomb interactions).
        trap: ``ω`` of a harmonic factor ``e^{−ω|r|²/2}`` per particle, or None.
        width: Width of the networks ``φ``, ``χ`` and ``ρ``.
        depth: Hidden layers of ``ρ`` (≥ 0).
    """

    def __init__(
        self,
        num_particles: int,
        dim: int,
        *,
        nuclei: torch.Tensor | None = None,
        charges: torch.Tensor | None = None,
        electron_cusp: float | None = None,
        trap: float | None = None,
        width: int = 32,
        depth: int = 1,
    ) -> None:
        super().__init__()
        self.num_particles = _positive("num_particles", num_particles)
        self.dim = _positive("dim", dim)
        width = _positive("width", width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
        dtype = torch.get_default_dtype()
        if (nuclei is None) != (charges is None):
            raise ValueError(
                "nuclei and charges go together: give both (M, dim) positions and (M,) charges, "
                f"or neither; got charges={'None' if charges is None else 'a value'} and "
                f"nuclei={'None' if nuclei is None else 'a value'}"
            )
        if nuclei is None:
            nuclei, charges = torch.zeros(0, dim), torch.zeros(0)
        nuclei, charges = torch.as_tensor(nuclei), torch.as_tensor(charges)
        if nuclei.dim() != 2 or nuclei.shape[-1] != dim or charges.shape != nuclei.shape[:1]:
            raise ValueError(
                f"nuclei must be (M, {dim}) and charges (M,), got {tuple(nuclei.shape)} and "
                f"{tuple(charges.shape)}"
            )
        check_tensor("nuclei", nuclei.double(), finite=True)
        check_tensor("charges", charges.double(), finite=True)
        self.register_buffer("nuclei", nuclei.to(dtype).clone())
        self.register_buffer("charges", charges.to(dtype).clone())
        self.coulomb = len(nuclei) > 0
        self.electron_cusp = check_finite("electron_cusp", electron_cusp, allow_none=True)
        self.trap = check_positive("trap", trap, allow_none=True)
        # b = softplus(raw) starts at 1
        self.pade_raw = nn.Parameter(torch.tensor(0.5413248546129181))
        one_body = len(nuclei) if self.coulomb else 1
        self.one_body = nn.Linear(one_body, 1, bias=False)
        nn.init.zeros_(self.one_body.weight)
        self.phi = nn.Linear(one_body, width)
        self.chi = nn.Linear(1, width)
        self.rho = nn.ModuleList(
            [nn.Linear(width, width) for _ in range(depth)] + [nn.Linear(width, 1)]
        )
        nn.init.zeros_(self.rho[-1].weight)
        nn.init.zeros_(self.rho[-1].bias)
        n = self.num_particles
        pairs = torch.triu_indices(n, n, 1)
        sign = torch.zeros(pairs.shape[1], n)
        sign[torch.arange(pairs.shape[1]), pairs[0]] = 1.0
        sign[torch.arange(pairs.shape[1]), pairs[1]] = -1.0
        self.register_buffer("pairs", pairs, persistent=False)
        self.register_buffer("pair_sign", sign.to(dtype), persistent=False)

    @property
    def state_dim(self) -> int:
        """``N·dim``."""
        return self.num_particles * self.dim

    @property
    def pade_b(self) -> torch.Tensor:
        """``b`` of the electron–electron Padé factor."""
        return nn.functional.softplus(self.pade_raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``log ψ(x)``: states ``(..., N·dim)`` -> ``(...)``."""
        return self._evaluate(x, derivatives=False)[0]

    def local_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log ψ (...), ∇ log ψ (..., N·dim), ∇² log ψ (...))`` in one pass of forward jets."""
        return self._evaluate(x, derivatives=True)

    # ------------------------------------------------------------------ pieces
    def _smooth(self, r: torch.Tensor, diff: torch.Tensor, derivatives: bool) -> Jet:
        """Jet of one feature per distance, with gradients with respect to ``diff``.

        Coulomb: ``s(r) = r²/(1 + r)``; otherwise ``r²``. ``r``: ``(...)``, ``diff``: ``(..., D)``;
        returns value ``(..., 1)``, jac ``(D, ..., 1)``, lap ``(..., 1)``.
        """
        d = self.dim
        if self.coulomb:
            value = r * r / (1 + r)
            if not derivatives:
                return Jet(value[..., None])
            slope = (2 + r) / (1 + r) ** 2  # s'(r)/r
            lap = 2 / (1 + r) ** 3 + (d - 1) * slope
            jac = (slope[..., None] * diff).movedim(-1, 0)[..., None]
            return Jet(value[..., None], jac, lap[..., None])
        value = (diff * diff).sum(-1)
        if not derivatives:
            return Jet(value[..., None])
        lap = torch.full_like(value, 2.0 * d)
        return Jet(value[..., None], (2 * diff).movedim(-1, 0)[..., None], lap[..., None])

    def _evaluate(
        self, x: torch.Tensor, derivatives: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        n, d = self.num_particles, self.dim
        if x.shape[-1] != n * d:
            raise ValueError(f"x: expected states (..., {n * d}), got {tuple(x.shape)}")
        r = x.reshape(*x.shape[:-1], n, d)
        batch = x.shape[:-1]
        value = x.new_zeros(batch)
        grad = x.new_zeros(*batch, n, d) if derivatives else None
        lap = x.new_zeros(batch) if derivatives else None

        # one-body: cusp factor and smooth features f_i, jets local to particle i
        if self.coulomb:
            nuclei = self.nuclei.to(x.dtype)
            charges = self.charges.to(x.dtype)
            diff = r[..., :, None, :] - nuclei  # (..., N, M, D)
            dist = _distance(diff)  # (..., N, M)
            value = value - (charges * dist).sum((-1, -2))
            if derivatives:
                grad = grad - (charges[:, None] * diff / dist[..., None]).sum(-2)
                lap = lap - ((d - 1) * charges / dist).sum((-1, -2))
            jets = self._smooth(dist, diff, derivatives)  # value (..., N, M, 1)
            one = Jet(
                jets.value[..., 0],
                None if jets.jac is None else jets.jac[..., 0],
                None if jets.lap is None else jets.lap[..., 0],
            )  # value (..., N, M), jac (D, ..., N, M), lap (..., N, M)
        else:
            one = self._smooth(_distance(r), r, derivatives)  # value (..., N, 1)
        if self.trap is not None:
            value = value - 0.5 * self.trap * (r * r).sum((-1, -2))
            if derivatives:
                grad = grad - self.trap * r
                lap = lap - self.trap * n * d

        # pair: Padé cusp factor and smooth feature g_ij, jets with respect to r_i − r_j
        pair = None
        sign = self.pair_sign.to(x.dtype)
        if n > 1:
            i, j = self.pairs
            delta = r[..., i, :] - r[..., j, :]  # (..., P, D)
            rij = _distance(delta)
            if self.electron_cusp is not None:
                a, b = self.electron_cusp, self.pade_b.to(x.dtype)
                value = value + (a * rij / (1 + b * rij)).sum(-1)
                if derivatives:
                    up = a / (1 + b * rij) ** 2
                    upp = -2 * a * b / (1 + b * rij) ** 3
                    g = (up / rij)[..., None] * delta  # (..., P, D)
                    grad = grad + torch.einsum("...pd,pn->...nd", g, sign)
                    lap = lap + (2 * (upp + (d - 1) * up / rij)).sum(-1)
            pair = self._smooth(rij, delta, derivatives)

        # the linear one-body term c·Σ_i f_i
        lin = jet_linear(one, self.one_body)  # value (..., N, 1)
        value = value + lin.value.sum((-1, -2))
        if derivatives:
            grad = grad + lin.jac[..., 0].movedim(0, -1)
            lap = lap + lin.lap.sum((-1, -2))

        # ρ(Σ_i φ(f_i) + Σ_{i<j} χ(g_ij)) on jets over the whole state (N·D directions)
        h1 = jet_tanh(jet_linear(one, self.phi))  # value (..., N, W), jac (D, ..., N, W)
        h = Jet(h1.value.sum(-2))
        if derivatives:
            h = Jet(h.value, h1.jac.movedim(-2, 0).flatten(0, 1), h1.lap.sum(-2))
        if pair is not None:
            h2 = jet_tanh(jet_linear(pair, self.chi))  # value (..., P, W), jac (D, ..., P, W)
            if derivatives:
                jac = torch.einsum("d...pw,pn->nd...w", h2.jac, sign).flatten(0, 1)
                h = h + Jet(h2.value.sum(-2), jac, 2 * h2.lap.sum(-2))
            else:
                h = h + Jet(h2.value.sum(-2))
        out = jet_linear(h, self.rho[0])
        for layer in self.rho[1:]:
            out = jet_linear(jet_tanh(out), layer)
        value = value + out.value[..., 0]
        if not derivatives:
            return value, None, None
        grad = grad.flatten(-2) + out.jac[..., 0].movedim(0, -1)
        return value, grad, lap + out.lap[..., 0]


class GradientDrift(nn.Module):
    """The drift ``v(t, x) = ∇ log ψ_θ(x)`` (autograd), a gradient field by construction.

    Call signature as every drift of :class:`~pyrovi.models.GroundState`: ``(t, x) -> (..., d)``
    (``t`` ignored). When gradients are enabled (training) the drift keeps its graph, so the
    loss reaches ``θ`` through it (double backward); under ``torch.no_grad()`` it returns a
    plain tensor. :class:`~pyrovi.models.GroundState` uses ``log_psi`` itself for the boundary
    term ``log ψ(r_T) − log ψ(r₀)`` (exact, no line integral).

    Args:
        log_psi: ``log ψ_θ``: an ``nn.Module`` mapping ``(..., d) -> (...)`` (e.g.
            :class:`NeuralLogPsi`).
    """

    def __init__(self, log_psi: nn.Module) -> None:
        super().__init__()
        if not isinstance(log_psi, nn.Module):
            raise TypeError(
                f"log_psi must be an nn.Module mapping states (..., d) to (...), got "
                f"{type(log_psi).__name__}"
            )
        self.log_psi = log_psi

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            value = _checked(self.log_psi(x), x)
            if not value.requires_grad:  # log ψ constant in x
                return torch.zeros_like(x)
            (grad,) = torch.autograd.grad(
                value.sum(), x, create_graph=create and value.requires_grad, allow_unused=True
            )
        return torch.zeros_like(x) if grad is None else grad


def log_psi_for(hamiltonian: Hamiltonian, width: int = 32, depth: int = 1) -> NeuralLogPsi:
    """A :class:`NeuralLogPsi` for ``hamiltonian``.

    Coulomb systems (one or two electrons) get the electron–nucleus cusp factors of its nuclei
    and, for two electrons, the pair factor with ``a = ½`` (spin singlet); other systems a
    harmonic factor with the trap frequency (``params["omega"]``, default 1).

    Raises:
        ValueError: A Coulomb system of more than two electrons (its ground state is not
            exchange symmetric).

    Args:
        hamiltonian: The system.
        width: Network width.
        depth: Hidden layers of ``ρ``.
    """
    if hamiltonian.interaction == "coulomb":
        if hamiltonian.num_particles > 2:
            raise ValueError(
                f"log_psi_for: {hamiltonian.num_particles} electrons; NeuralLogPsi is symmetric "
                "under exchange, the ground state only up to two electrons (a spin singlet). "
                "More electrons need an antisymmetric (fixed-node) ansatz, not provided here"
            )
        return NeuralLogPsi(
            hamiltonian.num_particles,
            hamiltonian.dim,
            nuclei=hamiltonian.nuclei,
            charges=hamiltonian.charges,
            electron_cusp=0.5 if hamiltonian.num_particles > 1 else None,
            width=width,
            depth=depth,
        )
    return NeuralLogPsi(
        hamiltonian.num_particles,
        hamiltonian.dim,
        trap=float(hamiltonian.params.get("omega", 1.0)),
        width=width,
        depth=depth,
    )
