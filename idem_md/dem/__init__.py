"""The DEM algorithm: noise schedule, Monte-Carlo score estimator, SDE/ODE integrators, replay buffer."""

from .buffer import ReplayBuffer
from .estimator import ScoreEstimate, clip_score, estimate_dem_score
from .schedule import TIME_GRIDS, GeometricNoiseSchedule, time_grid
from .sde import (
    INTEGRATORS,
    integrate_probability_flow,
    integrate_reverse_sde,
    prior_log_prob,
    probability_flow_log_prob,
    remove_mean,
    sample_prior,
    sample_probability_flow,
    score_evaluations,
)

__all__ = [
    "INTEGRATORS",
    "TIME_GRIDS",
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
    "score_evaluations",
    "time_grid",
]
