"""Small hand-written environments for the tests and the MultiDiscrete benchmarks.

``MatchTargetsEnv`` is a contextual task with a ``MultiDiscrete`` action space: every step
draws ``D`` random targets, one per action dimension; the observation is the concatenation
of their one-hot codes and the action's component ``d`` must equal target ``d`` (plus the
space's ``start`` offset). Two reward rules:

* ``reward="fraction"``: the fraction of components that match. The dimensions do not
  interact: each one can be learned on its own, which is what factorised Q heads assume.
* ``reward="all"``: 1 only when *every* component matches, else 0. The dimensions interact
  (a component's value depends on what the others do) and a uniformly random policy is
  rewarded with probability ``1 / prod(nvec)``.

Episodes last ``episode_length`` steps and then *terminate* (the horizon is part of the
task), so returns lie in ``[0, episode_length]`` and the greedy optimum is ``episode_length``.
The last entry of the observation is the elapsed fraction of the episode ``t / episode_length``:
without it the value of the remaining steps, which a discount near 1 makes several times
larger than the action gaps, would be unobservable noise in every TD target (measured: the
greedy return then rises to ~7.5 of 8 and decays back to ~5.5 within 4k steps).
``ReachGoalEnv`` is a sequential task: a point moves on a ``size``^D grid, each action
component moving it -1, 0 or +1 along one axis, and collects reward 1 each time it reaches
the current goal (a new goal is then drawn). Here the TD target's bootstrap carries the
reward back over several steps, which is where the per-dimension ("independent") and
averaged ("mean") targets differ.

``TinyScreenEnv`` (with ``make_stacked_env``, 4-frame stacks of it) is a tiny frame-stack game for
the transport and distributed tests: 6x6 screens of three grey levels, so screens often repeat, and
random episode ends plus a time limit, so stacks restart and truncate often.

The benchmarks import this module with ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class MatchTargetsEnv(gym.Env):
    """Match each action component to a random target shown in the observation."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        nvec: tuple[int, ...] | list[int] = (3, 4, 5),
        start: tuple[int, ...] | list[int] | None = None,
        reward: str = "fraction",
        episode_length: int = 8,
    ) -> None:
        if reward not in ("fraction", "all"):
            raise ValueError(f"reward must be 'fraction' or 'all', got {reward!r}")
        self.nvec = np.asarray(nvec, dtype=np.int64)
        if self.nvec.ndim != 1 or (self.nvec < 1).any():
            raise ValueError(f"nvec must be a 1-D sequence of positive ints, got {nvec!r}")
        self.start = np.zeros_like(self.nvec) if start is None else np.asarray(start, dtype=np.int64)
        self.reward_rule = reward
        self.episode_length = int(episode_length)
        self.action_space = gym.spaces.MultiDiscrete(self.nvec, start=self.start)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(int(self.nvec.sum()) + 1,), dtype=np.float32)
        self._offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]])
        self._targets = np.zeros_like(self.nvec)
        self._t = 0

    def _draw(self) -> np.ndarray:
        self._targets = self.np_random.integers(0, self.nvec)
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        obs[self._offsets + self._targets] = 1.0
        obs[-1] = self._t / self.episode_length
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action: Any):
        index = np.asarray(action, dtype=np.int64) - self.start
        matched = index == self._targets
        reward = float(matched.mean()) if self.reward_rule == "fraction" else float(matched.all())
        self._t += 1
        info = {"matched": int(matched.sum())}
        # the next observation shows the new time; at the end it is 1.0 and never acted on
        return self._draw(), reward, self._t >= self.episode_length, False, info


class ReachGoalEnv(gym.Env):
    """Collect goals on a ``size``^``dims`` grid: each action component moves one axis by -1, 0 or +1.

    Reaching the goal gives reward 1 and draws a new goal; the episode terminates after
    ``episode_length`` steps whatever happens, so the return is the number of goals collected, in
    ``[0, episode_length]`` (at most one per step: a new goal is never drawn where the point stands).
    Observation: position and goal (each coordinate scaled to [0, 1]) and the elapsed fraction
    ``t / episode_length``. Action: ``MultiDiscrete([3] * dims)``, clipped at the walls.

    Arrival deliberately does not end the episode: with an entropy bonus ``alpha H`` in every
    soft target, an episode that ends on arrival forfeits the remaining bonuses (about
    ``alpha H / (1 - gamma)``, several times the reward of 1 at the temperatures SQN settles
    at), and the soft-optimal policy then learns to *avoid* the goal (measured: greedy success
    rose to ~0.9 and fell to 0.0-0.2 within 4k steps with every target and temperature variant).
    """

    metadata = {"render_modes": []}

    def __init__(self, dims: int = 3, size: int = 4, episode_length: int = 16) -> None:
        self.dims, self.size, self.episode_length = int(dims), int(size), int(episode_length)
        self.action_space = gym.spaces.MultiDiscrete([3] * self.dims)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2 * self.dims + 1,), dtype=np.float32)
        self._pos = np.zeros(self.dims, dtype=np.int64)
        self._goal = np.zeros(self.dims, dtype=np.int64)
        self._t = 0

    def _new_goal(self) -> None:
        self._goal = self._pos
        while np.array_equal(self._goal, self._pos):
            self._goal = self.np_random.integers(0, self.size, self.dims)

    def _obs(self) -> np.ndarray:
        coords = np.concatenate([self._pos, self._goal]) / (self.size - 1)
        return np.append(coords, self._t / self.episode_length).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._pos = self.np_random.integers(0, self.size, self.dims)
        self._new_goal()
        return self._obs(), {}

    def step(self, action: Any):
        move = np.asarray(action, dtype=np.int64) - 1
        self._pos = np.clip(self._pos + move, 0, self.size - 1)
        self._t += 1
        arrived = bool(np.array_equal(self._pos, self._goal))
        if arrived:
            self._new_goal()
        return self._obs(), float(arrived), self._t >= self.episode_length, False, {}


class TinyScreenEnv(gym.Env):
    """(6, 6) uint8 screens from 3 grey levels, so consecutive screens are sometimes equal (frozen);
    terminates at random, truncated by a time limit."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (6, 6), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _screen(self) -> np.ndarray:
        return (self.np_random.integers(0, 3, (1, 1), dtype=np.uint8) * 100).repeat(6, 0).repeat(6, 1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return self._screen(), {}

    def step(self, action: Any):
        return self._screen(), 1.0, bool(self.np_random.random() < 0.08), False, {}


def make_stacked_env() -> gym.Env:
    return gym.wrappers.FrameStackObservation(gym.wrappers.TimeLimit(TinyScreenEnv(), 15), 4)
