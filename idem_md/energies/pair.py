"""Pure-torch reference implementations of the pair energies (LJ-n, DW-n).

These are the reference paths: readable, float64-capable, with analytic forces
(one pass, no autograd). The fused kernels in :mod:`idem_md.energies.kernels`
must agree with them. :class:`PairPotential` is the engine-neutral description of
a pair energy that :meth:`Energy.openmm_pair_potential` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["PairPotential", "pair_displacements", "scatter_pair_gradient"]


@dataclass(frozen=True)
class PairPotential:
    """A sum over all unordered pairs ``i < j`` of one function of their squared distance.

    The description an :class:`~idem_md.energies.base.Energy` gives through
    :meth:`~idem_md.energies.base.Energy.openmm_pair_potential`, so that
    :func:`idem_md.bridges.openmm.energy_to_openmm_system` can build an OpenMM
    custom force for it without knowing the class.

    Parameters
    ----------
    expression : str
        OpenMM custom-force expression of ``r2``, the squared distance over the
        first ``spatial_dim`` axes (length_unit^2), giving the pair energy in the
        energy's unit; may use OpenMM's ``;``-separated intermediate definitions.
        Example: ``"k*(sqrt(r2) - r0)^2"``.
    parameters : dict of str to float
        Values of the global parameters the expression names (in the energy's
        units). Names must not collide with OpenMM's (``r``, ``x1`` ...).
    description : str
        Human-readable label, used as the OpenMM force name.

    Examples
    --------
    >>> PairPotential("k*(sqrt(r2) - r0)^2", {"k": 1.0, "r0": 1.5}).parameters["r0"]
    1.5
    """

    expression: str
    parameters: dict[str, float] = field(default_factory=dict)
    description: str = "pair potential"

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or "r2" not in self.expression:
            raise ValueError(f"expression must be a str in terms of r2 (squared pair distance), got {self.expression!r}")
        for key, value in self.parameters.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"parameters keys must be identifiers, got {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"parameters[{key!r}] must be a float, got {type(value).__name__}")


def pair_displacements(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Displacements over unordered pairs ``i < j``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, n, d)`` coordinates.

    Returns
    -------
    diff : torch.Tensor
        ``(B, P, d)`` with ``diff[:, p] = x[:, i_p] - x[:, j_p]``, ``P = n (n - 1) / 2``.
    i, j : torch.Tensor
        ``(P,)`` particle indices of each pair.
    """
    n = x.shape[1]
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    return x[:, i] - x[:, j], i, j


def scatter_pair_gradient(dE_dr2: torch.Tensor, diff: torch.Tensor, i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor:
    """Gradient with respect to positions of a sum of functions of squared pair distances.

    ``dE/dx_i = sum_j dE/dr2_ij * 2 (x_i - x_j)``.

    Parameters
    ----------
    dE_dr2 : torch.Tensor
        ``(B, P)`` derivative of the energy with respect to each squared distance.
    diff : torch.Tensor
        ``(B, P, d)`` from :func:`pair_displacements`.
    i, j : torch.Tensor
        ``(P,)`` pair indices.
    n : int
        Number of particles.

    Returns
    -------
    torch.Tensor
        ``(B, n, d)`` gradient.
    """
    g = 2.0 * dE_dr2.unsqueeze(-1) * diff  # (B, P, d): gradient on particle i
    grad = torch.zeros(diff.shape[0], n, diff.shape[2], dtype=diff.dtype, device=diff.device)
    grad.index_add_(1, i, g)
    grad.index_add_(1, j, -g)
    return grad
