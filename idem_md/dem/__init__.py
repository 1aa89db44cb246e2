"""The DEM algorithm: noise schedule, Monte-Carlo score estimator, SDE/ODE integrators, replay buffer."""

from .buffer import ReplayBuffer
from .estimator import ScoreEstimate, clip_score, estimate_dem_score
from .schedule import GeometricNoiseSchedule
from .sde import (
    integrate_probability_flow,
    integrate_reverse_sde,
    prior_log_prob,
    probability_flow_log_prob,
    remove_mean,
    sample_prior,
    sample_probability_flow,
)

__all__ = [
    "GeometricNoiseSchedule",
    "ReplayBuffer",
    "ScoreEstimate",
    "clip_score",
    "estimate_dem_score",
    "integrate_probability_flow",
    "integrate_reverse_sde",
    "prior_log_prob",
    "probability_flow_log_prob",
    "remove_mean",
    "sample_prior",
    "sample_probability_flow",
]
