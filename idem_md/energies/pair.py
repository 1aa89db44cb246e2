"""Pure-torch reference implementations of the pair energies (LJ-n, DW-n).

These are the reference paths: readable, float64-capable, with analytic forces
(one pass, no autograd). The fused kernels in :mod:`idem_md.energies.kernels`
must agree with them.
"""

from __future__ import annotations

import torch

__all__ = ["pair_displacements", "scatter_pair_gradient"]


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
