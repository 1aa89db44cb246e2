"""CNF internals of :mod:`idem_md.dem.density`: vector fields and the augmented ODE ``(v, div v)``.

The dynamics are what torchdiffeq integrates; :class:`_DifferentiableStage` makes a solve
differentiable once with respect to the state (for ``grad log q``) without keeping every stage's
double-backward graph alive.
"""

from __future__ import annotations

import torch

from ..nn.embeddings import SinusoidalTimeEmbedding
from .sde import remove_mean

__all__ = ["MLPField", "Dynamics", "field_and_divergence"]


class MLPField(torch.nn.Module):
    """Residual MLP ``v(z, t)`` on flattened coordinates with smooth time features and, optionally,
    Fourier features ``sin(2^k z), cos(2^k z)`` of every coordinate (``k < fourier_features``)."""

    def __init__(self, n_particles: int, spatial_dim: int, hidden_dim: int, n_layers: int, fourier_features: int):
        super().__init__()
        dim = n_particles * spatial_dim
        self.time_embedding = SinusoidalTimeEmbedding(16, scale=10.0, max_period=100.0)
        self.register_buffer("freqs", 2.0 ** torch.arange(fourier_features, dtype=torch.float32), persistent=False)
        self.inp = torch.nn.Linear(dim * (1 + 2 * fourier_features) + 16, hidden_dim)
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(hidden_dim, hidden_dim) for _ in range(n_layers - 1))
        self.out = torch.nn.Linear(hidden_dim, dim)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        u = z.flatten(1)  # (B, D)
        arg = (u[:, :, None] * self.freqs.to(u)).flatten(1)  # (B, D * F)
        feats = torch.cat([u, torch.sin(arg), torch.cos(arg), self.time_embedding(t)], dim=-1)  # (B, D (1 + 2F) + 16)
        h = torch.nn.functional.silu(self.inp(feats))  # (B, H)
        for layer in self.hidden:
            h = h + torch.nn.functional.silu(layer(h))  # (B, H)
        return self.out(h).view_as(z)


def field_and_divergence(field, mean_free: bool, probes, z: torch.Tensor, t: torch.Tensor, create_graph: bool):
    """``v(z, t)`` ``(B, n, d)`` and its divergence ``(B,)`` (exact, or Hutchinson with ``probes`` ``(K, B, n, d)``),
    for a leaf ``z`` that requires grad."""
    v = field(z, t.expand(z.shape[0]))  # (B, n, d)
    if mean_free:
        v = remove_mean(v)
    div = z.new_zeros(z.shape[0])
    if probes is None:
        flat = v.flatten(1)  # (B, D)
        for k in range(flat.shape[1]):
            (g,) = torch.autograd.grad(flat[:, k].sum(), z, create_graph=create_graph, retain_graph=True)
            div = div + g.flatten(1)[:, k]
        return v, div
    for eps in probes:  # (B, n, d) each
        (g,) = torch.autograd.grad((v * eps).sum(), z, create_graph=create_graph, retain_graph=True)
        div = div + (g * eps).flatten(1).sum(1)
    return v, div / len(probes)


class _DifferentiableStage(torch.autograd.Function):
    """One evaluation of ``(v, div v)``, differentiable once, recomputed in the backward.

    Differentiating ``div v`` needs a ``create_graph`` divergence. Building it on the solver's
    running state would keep every stage's double-backward graph alive until the end of the solve
    and make each ``autograd.grad`` walk the whole history. Instead the forward evaluates without
    a graph and the backward re-evaluates the stage on a detached leaf with ``create_graph`` and
    returns the vector-Jacobian product (gradient checkpointing per stage).
    """

    @staticmethod
    def forward(ctx, dyn, t, z, *params):
        with torch.enable_grad():
            v, div = field_and_divergence(dyn.field, dyn.mean_free, dyn.probes, z.detach().requires_grad_(True), t,
                                           False)
        ctx.dyn, ctx.n_params = dyn, len(params)
        ctx.save_for_backward(t, z)
        return v.detach(), div.detach()

    @staticmethod
    def backward(ctx, grad_v, grad_div):
        t, z = ctx.saved_tensors
        dyn = ctx.dyn
        params = [p for p in dyn.field.parameters() if p.requires_grad] if ctx.n_params else []
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            v, div = field_and_divergence(dyn.field, dyn.mean_free, dyn.probes, leaf, t, True)
            grads = torch.autograd.grad((v, div), (leaf, *params), (grad_v, grad_div), allow_unused=True)
        return (None, None, *grads)


class Dynamics(torch.nn.Module):
    """Augmented ODE ``d(z, a)/dt = (v, div v)`` for torchdiffeq."""

    def __init__(self, field, mean_free: bool, probes: torch.Tensor | None, create_graph: bool,
                 param_grads: bool = True):
        super().__init__()
        self.field, self.mean_free, self.probes, self.create_graph = field, mean_free, probes, create_graph
        self.param_grads = param_grads
        self.nfe = 0
        self.on_time = None  # optional callable(float flow time), e.g. a progress bar

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        self.nfe += 1
        if self.on_time is not None:
            self.on_time(float(t))
        z = state[0]
        if self.create_graph and torch.is_grad_enabled():
            params = [p for p in self.field.parameters() if p.requires_grad] if self.param_grads else []
            return _DifferentiableStage.apply(self, t, z, *params)
        with torch.enable_grad():
            v, div = field_and_divergence(self.field, self.mean_free, self.probes,
                                           z.detach().requires_grad_(True), t, False)
        return v.detach(), div.detach()
