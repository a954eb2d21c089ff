"""Uniform experience replay: a preallocated ring buffer of transitions.

Every array is allocated once, at construction, with the dtype of the observation space,
so uint8 frames stay uint8 (4x smaller than float32) until the network casts them on the
device. ``terminated`` and ``truncated`` are stored apart: only ``terminated`` stops
bootstrapping in the TD target, ``truncated`` is kept for diagnostics and for buffers
that need to know where an episode was cut (see ``frame_replay.py``).

Why not a library buffer: gymnasium has none, and torch's data utilities are built for
datasets, not for a ring that is written one transition at a time and sampled in batches.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
    """A sampled mini-batch, as numpy arrays with a leading batch axis ``B``."""

    obs: np.ndarray  # (B, *obs_shape), the observation space's dtype
    actions: np.ndarray  # (B, D) int64, zero-based action indices per action dimension
    rewards: np.ndarray  # (B,) float32
    next_obs: np.ndarray  # (B, *obs_shape)
    terminated: np.ndarray  # (B,) float32, 1.0 where the episode really ended


class ReplayBuffer:
    """Ring buffer with uniform sampling.

    ``add`` takes a batch of transitions (axis 0 is the batch, e.g. one row per vector-env
    sub-environment); the oldest transitions are overwritten once ``capacity`` is reached.

    >>> import numpy as np
    >>> rb = ReplayBuffer(capacity=4, obs_shape=(2,), obs_dtype=np.float32, action_dims=1, seed=0)
    >>> o = np.zeros((3, 2), np.float32)
    >>> rb.add(o, np.zeros((3, 1)), np.ones(3), o, np.zeros(3, bool), np.zeros(3, bool))
    >>> len(rb), rb.sample(2).obs.shape
    (3, (2, 2))
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type,
        action_dims: int = 1,
        seed: int | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        self.obs_shape = tuple(obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.obs = np.zeros((self.capacity, *self.obs_shape), dtype=self.obs_dtype)
        self.next_obs = np.zeros((self.capacity, *self.obs_shape), dtype=self.obs_dtype)
        self.actions = np.zeros((self.capacity, action_dims), dtype=np.int64)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.truncated = np.zeros(self.capacity, dtype=np.float32)
        self.pos = 0  # next slot to write
        self.size = 0  # number of valid transitions
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated arrays (the buffer's full-capacity footprint)."""
        arrays = (self.obs, self.next_obs, self.actions, self.rewards, self.terminated, self.truncated)
        return sum(a.nbytes for a in arrays)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray | None = None,
    ) -> None:
        """Store ``n`` transitions (axis 0 of every argument). ``env_ids`` is unused here."""
        n = len(rewards)
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` rows could survive anyway
            keep = slice(n - self.capacity, n)
            obs, actions, rewards, next_obs = obs[keep], actions[keep], rewards[keep], next_obs[keep]
            terminated, truncated, n = terminated[keep], truncated[keep], self.capacity
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = np.reshape(actions, (n, -1))
        self.rewards[idx] = rewards
        self.terminated[idx] = terminated
        self.truncated[idx] = truncated
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> Batch:
        """Sample ``batch_size`` transitions uniformly, with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer; call add() first")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return Batch(
            obs=self.obs[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=self.next_obs[idx],
            terminated=self.terminated[idx],
        )

    # --- checkpointing: plain arrays and ints, no pickle -------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that fully describe the buffer (only the filled part of the ring)."""
        n = self.size
        return {
            "obs": self.obs[:n],
            "next_obs": self.next_obs[:n],
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "terminated": self.terminated[:n],
            "truncated": self.truncated[:n],
            "pos": np.array(self.pos, dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        n = len(state["rewards"])
        if n > self.capacity:
            raise ValueError(f"replay state holds {n} transitions but capacity is {self.capacity}")
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated"):
            target = getattr(self, name)
            if state[name].shape[1:] != target.shape[1:]:
                raise ValueError(
                    f"replay state '{name}' has per-item shape {state[name].shape[1:]}, "
                    f"expected {target.shape[1:]}"
                )
            target[:n] = state[name]
        self.size = n
        self.pos = int(state["pos"])
