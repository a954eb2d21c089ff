"""The learner's metrics as one type, so the trainer's columns and the agent's numbers cannot drift apart.

``sqn-train`` builds its ``metrics.csv`` header from ``LearnMetrics.names()``; a metric added
here reaches the CSV, TensorBoard and ``SQNAgent.learn()``'s dict at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class LearnMetrics:
    """What one gradient step reports (the last step's values when an update runs several)."""

    q_loss: float
    """Sum of the two Q networks' TD losses."""
    alpha: float
    """Temperature after the step (the mean over action dimensions when there is one per dimension)."""
    alpha_loss: float
    """Temperature loss, ``log(alpha) * (H - H_target)`` averaged over the batch."""
    entropy: float
    """Entropy of the acting policy on the batch states, summed over action dimensions."""
    mean_q: float
    """Mean of Q1 at the taken actions."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Field names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


__all__ = ["LearnMetrics"]
