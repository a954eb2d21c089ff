"""The learner's metrics as one type, so the trainer's columns and the agent's numbers cannot drift apart.

``sqn-train`` builds its ``metrics.csv`` header from ``LearnMetrics.names()``; a metric added
here reaches the CSV, TensorBoard and ``SQNAgent.learn()``'s mapping at once.

The values stay on the learner's device as 0-d tensors until they are read: reading a float
from a GPU tensor waits for the GPU to finish, and a gradient step that waited five times would
leave the GPU idle while Python prepares the next one. The first read converts all of them at
once (one transfer) and caches the floats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch

NAMES = ("q_loss", "alpha", "alpha_loss", "entropy", "mean_q")


class LearnMetrics(Mapping[str, float]):
    """What one gradient step reports (the last step's values when an update runs several).

    A read-only mapping from the names below to floats, also readable as attributes
    (``metrics.q_loss``). ``on_read`` runs once, at the first read (the learner reports
    skipped steps there).
    """

    def __init__(self, values: Mapping[str, torch.Tensor | float], on_read: Callable[[], None] | None = None) -> None:
        if tuple(values) != NAMES:
            raise ValueError(f"LearnMetrics needs the values {NAMES} in that order, got {tuple(values)}")
        self._values = dict(values)
        self._on_read = on_read
        self._floats: dict[str, float] | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The metric names, in order."""
        return NAMES

    def as_dict(self) -> dict[str, float]:
        """The values as Python floats (the first read waits for the device)."""
        return dict(self._read())

    def _read(self) -> dict[str, float]:
        if self._floats is None:
            tensors = [torch.as_tensor(v, dtype=torch.float32) for v in self._values.values()]
            device = tensors[0].device
            floats = torch.stack([t.to(device) for t in tensors]).tolist()  # one transfer for all of them
            self._floats = dict(zip(NAMES, floats, strict=True))
            if self._on_read is not None:
                self._on_read()
        return self._floats

    def __getitem__(self, name: str) -> float:
        if name not in NAMES:
            raise KeyError(name)
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(NAMES)

    def __len__(self) -> int:  # also makes a LearnMetrics truthy without reading it
        return len(NAMES)

    def __repr__(self) -> str:
        return f"LearnMetrics({self._read()})"

    def __reduce__(self) -> tuple:
        """Pickles (e.g. to send to another process) as the plain dict of floats, never the learner it reports to."""
        return (dict, (self.as_dict(),))

    @property
    def q_loss(self) -> float:
        """Sum of the two Q networks' TD losses (not finite when the step was skipped)."""
        return self["q_loss"]

    @property
    def alpha(self) -> float:
        """Temperature after the step (the mean over action dimensions when there is one per dimension)."""
        return self["alpha"]

    @property
    def alpha_loss(self) -> float:
        """Temperature loss, ``log(alpha) * (H - H_target)`` averaged over the batch."""
        return self["alpha_loss"]

    @property
    def entropy(self) -> float:
        """Entropy of the acting policy on the batch states, summed over action dimensions."""
        return self["entropy"]

    @property
    def mean_q(self) -> float:
        """Mean of Q1 at the taken actions."""
        return self["mean_q"]


__all__ = ["LearnMetrics"]
