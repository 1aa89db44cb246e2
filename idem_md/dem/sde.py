r"""Priors, the reverse VE SDE and the probability-flow ODE.

For the forward SDE ``dx = g(t) dW`` the reverse-time SDE is (Song et al. 2021, used
by iDEM's outer loop, Algorithm 1)

.. math::

    dx = -g(t)^2 \, s_\theta(x, t)\, dt + \eta\, g(t)\, d\bar W, \qquad t: 1 \to 0,

integrated with Euler-Maruyama. ``eta`` is iDEM's diffusion scale (1 is the exact
reverse SDE; < 1 sharpens towards the modes and is what the paper uses for LJ).
The probability-flow ODE ``dx/dt = -g(t)^2 s_\theta(x, t) / 2`` shares the marginals
of the forward process and gives exact likelihoods through the instantaneous
change of variables, ``d log p_t(x_t)/dt = -div f``.

All coordinates here are the sampler's working coordinates, shape ``(B, n, d)``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .schedule import GeometricNoiseSchedule
from .schedule import time_grid as _time_grid_of

__all__ = [
    "ScoreFn",
    "remove_mean",
    "degrees_of_freedom",
    "sample_prior",
    "prior_log_prob",
    "integrate_reverse_sde",
    "integrate_probability_flow",
    "probability_flow_log_prob",
    "sample_probability_flow",
    "EXACT_DIVERGENCE_MAX_DIM",
    "INTEGRATORS",
    "score_evaluations",
]

#: Step rules of :func:`integrate_reverse_sde` and :func:`integrate_probability_flow`.
INTEGRATORS = ("euler", "heun", "exponential")

#: ``divergence="auto"`` uses the exact divergence up to this many coordinates, Hutchinson above.
EXACT_DIVERGENCE_MAX_DIM = 64

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B,n,d), t (B,)) -> (B,n,d)


def remove_mean(x: torch.Tensor) -> torch.Tensor:
    """Subtract the centre of mass (equal masses) of each configuration ``(B, n, d)``."""
    return x - x.mean(dim=1, keepdim=True)


def degrees_of_freedom(n_particles: int, spatial_dim: int, mean_free: bool) -> int:
    """Dimension of the space a density lives on: ``(n - 1) d`` on the centre-of-mass-free
    subspace of a translation-invariant particle system, ``n d`` otherwise.

    >>> degrees_of_freedom(13, 3, True), degrees_of_freedom(1, 2, False)
    (36, 2)
    """
    return (n_particles - 1) * spatial_dim if mean_free else n_particles * spatial_dim


def sample_prior(n: int, event_shape: tuple[int, int], schedule: GeometricNoiseSchedule, mean_free: bool,
                 *, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Draw ``n`` configurations from the prior ``N(0, h(1) I)``, mean-free for particle systems.

    Returns ``(n, *event_shape)`` in working coordinates.
    """
    std = math.sqrt(float(schedule.h(torch.tensor(1.0, dtype=torch.float64))))
    x = std * torch.randn((n, *event_shape), generator=generator, device=device, dtype=dtype)
    return remove_mean(x) if mean_free else x


def prior_log_prob(x: torch.Tensor, schedule: GeometricNoiseSchedule, mean_free: bool) -> torch.Tensor:
    """Log density of the prior, ``(B,)``.

    For particle systems the prior lives on the ``(n-1) d``-dimensional mean-free
    subspace; the density is the Gaussian density on that subspace (the squared norm of a
    mean-free ``x`` equals the squared norm of its subspace coordinates).
    """
    var = float(schedule.h(torch.tensor(1.0, dtype=torch.float64)))
    n, d = x.shape[1], x.shape[2]
    dof = degrees_of_freedom(n, d, mean_free)
    sq = (x * x).flatten(1).sum(1)
    return -0.5 * sq / var - 0.5 * dof * math.log(2 * math.pi * var)


def _time_grid(steps: int, t_end: float = 0.0) -> torch.Tensor:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64)


def _check_method(method: str) -> None:
    if method not in INTEGRATORS:
        raise ValueError(f"method must be one of {INTEGRATORS}, got {method!r}")


def _grid(schedule: GeometricNoiseSchedule, steps: int, time_grid: str, grid_rho: float, t_end: float = 0.0,
          sigma_lo: float | None = None) -> tuple[list[float], list[float]]:
    """Times ``t_i`` (1 -> t_end) and variances ``h(t_i)`` as Python floats (float64 arithmetic)."""
    times = _time_grid_of(schedule, steps, time_grid, t_end=t_end, rho=grid_rho, sigma_lo=sigma_lo)
    return times.tolist(), schedule.h(times).tolist()


def _denoised_mean(score: torch.Tensor, x: torch.Tensor, u: float) -> torch.Tensor:
    """``m = x + u s``: the mean of the Gaussian ``N(m, (u - h) I)`` whose noised score at ``x`` is ``s``."""
    return x + u * score


@torch.no_grad()
def integrate_reverse_sde(score_fn: ScoreFn, x1: torch.Tensor, schedule: GeometricNoiseSchedule, *,
                          steps: int = 1000, diffusion_scale: float = 1.0, mean_free: bool = False,
                          generator: torch.Generator | None = None, callback=None, method: str = "euler",
                          time_grid: str = "uniform", grid_rho: float = 7.0,
                          exponential_sigma: float = 0.0, grid_sigma_lo: float | None = None) -> torch.Tensor:
    r"""Integrate the reverse SDE ``dx = -g^2 s dt + eta g dW`` from t = 1 to t = 0.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(x (B, n, d), t (B,)) -> (B, n, d)``.
    x1 : torch.Tensor
        ``(B, n, d)`` prior samples.
    steps : int
        Number of steps (1000 in the paper).
    diffusion_scale : float
        eta, multiplies the noise term only (as in the iDEM code).
    mean_free : bool
        Remove the centre of mass after every step (particle systems).
    method : {"euler", "heun", "exponential"}
        ``"euler"``: Euler-Maruyama in t (iDEM; one score evaluation per step).
        ``"heun"``: stochastic Heun in sigma = sqrt(h) with the exact noise variance
        ``h(t_i) - h(t_{i+1})`` (two evaluations per step, one on a last step to sigma = 0).
        ``"exponential"``: over each step the score is taken as that of a Gaussian
        ``N(m, c^2 I)`` noised to variance ``u = c^2 + h`` with ``m = x + u s(x, t_i)`` frozen, and
        the linear SDE is solved exactly:
        ``x' = m + (u'/u)(x - m) + eta sqrt(u'(u - u')/u) z`` (one evaluation per step; ``c = 0``
        freezes the denoiser, the DDPM posterior step; exact for any step count when the target
        is ``N(mu, c^2 I)``).
    time_grid : {"uniform", "edm", "log_sigma"}
        The grid of :func:`~idem_md.dem.schedule.time_grid` (``grid_rho`` for ``"edm"``).
    exponential_sigma : float
        ``c`` of the exponential integrator (working length, >= 0).
    grid_sigma_lo : float, optional
        ``sigma_lo`` of :func:`~idem_md.dem.schedule.time_grid`: the last nonzero noise level of the
        ``"edm"`` and ``"log_sigma"`` grids (working length; None:
        :func:`~idem_md.dem.schedule.default_grid_sigma_lo`).

    Returns
    -------
    torch.Tensor
        ``(B, n, d)`` samples at t = 0.

    Examples
    --------
    >>> s = GeometricNoiseSchedule(1e-3, 2.0)
    >>> x1 = sample_prior(3, (1, 2), s, mean_free=False, generator=torch.Generator().manual_seed(0))
    >>> integrate_reverse_sde(lambda x, t: -x / (0.25 + s.h(t)[:, None, None]), x1, s, steps=10,
    ...                       method="exponential", exponential_sigma=0.5).shape
    torch.Size([3, 1, 2])
    """
    if not diffusion_scale >= 0:
        raise ValueError(f"diffusion_scale must be >= 0, got {diffusion_scale!r}")
    _check_method(method)
    if not exponential_sigma >= 0:
        raise ValueError(f"exponential_sigma must be >= 0, got {exponential_sigma!r}")
    times, hs = _grid(schedule, steps, time_grid, grid_rho, sigma_lo=grid_sigma_lo)
    x = x1.clone()
    B = x.shape[0]
    full = lambda t: torch.full((B,), t, dtype=x.dtype, device=x.device)  # noqa: E731
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        h, h_next = hs[i], hs[i + 1]
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        if method == "euler":
            dt = t - t_next  # > 0, stepping backwards in time
            g = float(schedule.g(torch.tensor(t, dtype=torch.float64)))
            x = x + g * g * score_fn(x, full(t)) * dt + diffusion_scale * g * math.sqrt(dt) * noise
        elif method == "exponential":
            u, u_next = exponential_sigma**2 + h, exponential_sigma**2 + h_next
            m = _denoised_mean(score_fn(x, full(t)), x, u)
            x = m + (u_next / u) * (x - m) + diffusion_scale * math.sqrt(u_next * (h - h_next) / u) * noise
        else:  # heun in sigma: drift dx/dsigma = -2 sigma s, additive noise of variance h - h'
            sig, sig_next = math.sqrt(h), math.sqrt(h_next)
            dw = diffusion_scale * math.sqrt(max(h - h_next, 0.0)) * noise
            d0 = -2.0 * sig * score_fn(x, full(t))
            x_pred = x + (sig_next - sig) * d0 + dw
            if sig_next > 0.0:
                x_pred = remove_mean(x_pred) if mean_free else x_pred
                d1 = -2.0 * sig_next * score_fn(x_pred, full(t_next))
                x = x + (sig_next - sig) * 0.5 * (d0 + d1) + dw
            else:
                x = x_pred
        if mean_free:
            x = remove_mean(x)
        if callback is not None:
            callback(i, x)
    return x


def _divergence_exact(f_fn, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and its exact divergence by one backward pass per coordinate, ``(B, n, d)``, ``(B,)``."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        f = f_fn(xg, t)
        flat = f.flatten(1)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for k in range(flat.shape[1]):
            (gk,) = torch.autograd.grad(flat[:, k].sum(), xg, retain_graph=k < flat.shape[1] - 1)
            div = div + gk.flatten(1)[:, k]
    return f.detach(), div.detach()


def _divergence_hutchinson(f_fn, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and the Hutchinson estimate ``eps^T (df/dx) eps`` of its divergence."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        f = f_fn(xg, t)
        (vjp,) = torch.autograd.grad((f * eps).sum(), xg)
    return f.detach(), (vjp * eps).flatten(1).sum(1).detach()


def integrate_probability_flow(score_fn: ScoreFn, x: torch.Tensor, schedule: GeometricNoiseSchedule, *,
                               steps: int = 1000, reverse: bool = True, mean_free: bool = False,
                               t_min: float = 0.0, method: str = "euler", time_grid: str = "uniform",
                               grid_rho: float = 7.0, exponential_sigma: float = 0.0) -> torch.Tensor:
    """Integrate ``dx/dt = -g(t)^2 s(x, t) / 2`` from 1 to ``t_min`` when ``reverse`` (sampling),
    else from ``t_min`` to 1 (encoding data to the prior).

    ``method``, ``time_grid``, ``grid_rho`` and ``exponential_sigma`` as in
    :func:`integrate_reverse_sde`: ``"euler"`` steps in t; ``"heun"`` is Heun's second-order
    rule for ``dx/dsigma = -sigma s`` (EDM's Algorithm 1; Euler on a last step to sigma = 0);
    ``"exponential"`` freezes ``m = x + u s`` and moves ``x' = m + sqrt(u'/u)(x - m)``, exact for
    the target ``N(m, c^2 I)``. The encoding direction reverses the same grid.
    """
    _check_method(method)
    if not exponential_sigma >= 0:
        raise ValueError(f"exponential_sigma must be >= 0, got {exponential_sigma!r}")
    times, hs = _grid(schedule, steps, time_grid, grid_rho, t_end=t_min)
    if not reverse:
        times, hs = times[::-1], hs[::-1]
    B = x.shape[0]
    full = lambda t: torch.full((B,), t, dtype=x.dtype, device=x.device)  # noqa: E731
    with torch.no_grad():
        for i in range(steps):
            t, t_next, h, h_next = times[i], times[i + 1], hs[i], hs[i + 1]
            if method == "euler":
                g = float(schedule.g(torch.tensor(t, dtype=torch.float64)))
                x = x + (-0.5 * g * g) * score_fn(x, full(t)) * (t_next - t)
            elif method == "exponential":
                u, u_next = exponential_sigma**2 + h, exponential_sigma**2 + h_next
                if u <= 0:
                    raise ValueError("the exponential integrator cannot start from h = 0 with exponential_sigma = 0; "
                                     "use t_min > 0 or exponential_sigma > 0")
                m = _denoised_mean(score_fn(x, full(t)), x, u)
                x = m + math.sqrt(u_next / u) * (x - m)
            else:  # heun in sigma: dx/dsigma = -sigma s
                sig, sig_next = math.sqrt(h), math.sqrt(h_next)
                d0 = -sig * score_fn(x, full(t))
                x_pred = x + (sig_next - sig) * d0
                if sig_next > 0.0:
                    x_pred = remove_mean(x_pred) if mean_free else x_pred
                    x = x + (sig_next - sig) * 0.5 * (d0 - sig_next * score_fn(x_pred, full(t_next)))
                else:
                    x = x_pred
            if mean_free:
                x = remove_mean(x)
    return x


def score_evaluations(method: str, steps: int) -> int:
    """Score-network evaluations of ``steps`` steps of ``method`` from t = 1 to t = 0 (per sample).

    >>> score_evaluations("heun", 100)
    199
    """
    _check_method(method)
    return 2 * steps - 1 if method == "heun" else steps


def _flow_with_divergence(score_fn: ScoreFn, x: torch.Tensor, schedule: GeometricNoiseSchedule, times: torch.Tensor,
                          *, mean_free: bool, exact: bool, generator: torch.Generator | None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler steps of ``dx/dt = f = -g^2 s / 2`` along ``times`` (either direction), with
    ``L = sum_i div f(x_i, t_i) (t_{i+1} - t_i)``. Returns the end point and ``L``, ``(B,)``."""
    B = x.shape[0]
    x = x.detach().clone()
    integral = torch.zeros(B, dtype=x.dtype, device=x.device)
    eps = None
    if not exact:
        eps = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        if mean_free:
            eps = remove_mean(eps)
    for i in range(len(times) - 1):
        t, dt = float(times[i]), float(times[i + 1] - times[i])
        g = float(schedule.g(torch.tensor(t, dtype=torch.float64)))
        tt = torch.full((B,), t, dtype=x.dtype, device=x.device)

        def f_fn(xx, ttt, g=g):
            return -0.5 * g * g * score_fn(xx, ttt)

        f, div = _divergence_exact(f_fn, x, tt) if exact else _divergence_hutchinson(f_fn, x, tt, eps)
        x = x + f * dt
        if mean_free:
            x = remove_mean(x)
        integral = integral + div * dt
    return x, integral


def _use_exact_divergence(divergence: str, x: torch.Tensor) -> bool:
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {divergence!r}")
    return divergence == "exact" or (divergence == "auto" and x[0].numel() <= EXACT_DIVERGENCE_MAX_DIM)


def probability_flow_log_prob(score_fn: ScoreFn, x0: torch.Tensor, schedule: GeometricNoiseSchedule, *,
                              steps: int = 200, mean_free: bool = False, divergence: str = "auto",
                              t_min: float = 1e-4, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Model log density of ``x0`` in working coordinates by the probability-flow ODE.

    Integrates ``x`` from ``t_min`` to 1 (Euler, ``steps`` steps) together with
    ``log p_0(x_0) = log p_1(x_1) + \int_0^1 \mathrm{div} f(x_t, t) dt`` where
    ``f = -g^2 s / 2``, and adds the prior's log density at ``x_1``.

    Parameters
    ----------
    divergence : {"auto", "exact", "hutchinson"}
        ``exact`` costs one backward pass per coordinate; ``hutchinson`` one per step
        with a fixed Rademacher probe per sample (unbiased, noisy); ``auto`` picks exact
        for at most 64 coordinates.

    Returns
    -------
    torch.Tensor
        ``(B,)`` log densities (nats, working coordinates; on the mean-free subspace for
        particle systems).
    """
    exact = _use_exact_divergence(divergence, x0)
    times = _time_grid(steps, t_min).flip(0)  # t_min -> 1
    x1, integral = _flow_with_divergence(score_fn, x0, schedule, times, mean_free=mean_free, exact=exact,
                                         generator=generator)
    return prior_log_prob(x1, schedule, mean_free) + integral


def sample_probability_flow(score_fn: ScoreFn, x1: torch.Tensor, schedule: GeometricNoiseSchedule, *,
                            steps: int = 200, mean_free: bool = False, divergence: str = "auto",
                            t_min: float = 1e-4, generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Samples of the probability-flow ODE model with their log densities, from one trajectory each.

    Integrates prior samples ``x1`` from t = 1 down to ``t_min`` (Euler, ``steps`` steps) and
    accumulates ``log q(x_0) = log p_1(x_1) + \int_0^1 \mathrm{div} f(x_t, t) dt`` along the same
    path. Because the density is computed for the points the flow actually produced, ``x_0`` is a
    draw from ``q`` and ``exp(-E/kT) / q`` are proper importance weights (up to the
    discretisation of the flow and, with ``"hutchinson"``, the divergence estimate's noise).
    Reverse-SDE samples, by contrast, follow another distribution whenever the learned score is
    imperfect, so they must not be weighted with the ODE's ``q``.

    Parameters
    ----------
    x1 : torch.Tensor
        ``(B, n, d)`` prior samples (working coordinates).
    divergence : {"auto", "exact", "hutchinson"}
        As in :func:`probability_flow_log_prob`.

    Returns
    -------
    x0 : torch.Tensor
        ``(B, n, d)`` samples at ``t_min``.
    log_q : torch.Tensor
        ``(B,)`` their log densities (nats, working coordinates; mean-free subspace for particles).
    """
    exact = _use_exact_divergence(divergence, x1)
    times = _time_grid(steps, t_min)  # 1 -> t_min: the accumulated integral is -int div f dt
    x0, integral = _flow_with_divergence(score_fn, x1, schedule, times, mean_free=mean_free, exact=exact,
                                         generator=generator)
    return x0, prior_log_prob(x1, schedule, mean_free) - integral
