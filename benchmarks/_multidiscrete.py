"""The training and evaluation protocol shared by the MultiDiscrete benchmarks.

``multidiscrete_ablation.py`` and ``multidiscrete_vs_flat.py`` both train an ``SQNAgent`` in a
the act / observe / learn loop of ``sqn_agents.loop.interact`` on the hand-written tasks of ``tests/envs.py`` and evaluate
the greedy policy (``sqn_agents.loop.evaluate``) every ``eval_every`` steps on the same evaluation episodes (episode ``i``
is reset with seed ``10_000 + i``) for every variant and seed.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _common import ROOT, eval_auc

sys.path.insert(1, str(ROOT / "tests"))
from envs import MatchTargetsEnv, ReachGoalEnv  # noqa: E402

from sqn_agents import SQNAgent, SQNConfig  # noqa: E402
from sqn_agents.loop import evaluate, interact  # noqa: E402

EVAL_SEED = 10_000


@dataclass(frozen=True)
class Task:
    """A benchmark task: how to build its env, its step budget and the returns that frame the results."""

    name: str
    make: Callable[[], gym.Env]
    steps: int
    quick_steps: int
    optimum: float  # greedy return of the optimal policy
    random: float  # mean return of uniformly random actions
    describe: str


def _match_random(nvec: Sequence[int], length: int = 8) -> float:
    return length * float(np.mean([1.0 / n for n in nvec]))


TASKS = {
    "match": Task(
        "match", lambda: MatchTargetsEnv((2, 3, 5, 8), reward="fraction"), 2_500, 1_000, 8.0,
        _match_random((2, 3, 5, 8)),
        "MatchTargetsEnv nvec=(2,3,5,8), reward = fraction of components matched, 8-step episodes",
    ),
    "joint": Task(
        "joint", lambda: MatchTargetsEnv((2, 3, 4), reward="all"), 4_000, 1_000, 8.0, 8 / 24,
        "MatchTargetsEnv nvec=(2,3,4), reward 1 only if all components match (components interact)",
    ),
    "reach": Task(
        "reach", lambda: ReachGoalEnv(dims=3, size=4, episode_length=16), 6_000, 1_000, 7.4, 0.24,
        "ReachGoalEnv 3 axes x 4 cells, MultiDiscrete([3,3,3]) moves, return = goals collected in 16 steps",
    ),
}


def run(
    make_env: Callable[[], gym.Env],
    config: SQNConfig,
    seed: int,
    steps: int,
    eval_every: int,
    eval_episodes: int,
    wrap: Callable[[gym.Env], gym.Env] | None = None,
) -> dict[str, Any]:
    """Train one agent for ``steps`` env steps; greedy evaluations every ``eval_every`` steps."""
    torch.set_num_threads(1)
    env, eval_env = make_env(), make_env()
    if wrap is not None:
        env, eval_env = wrap(env), wrap(eval_env)
    agent = SQNAgent(env.observation_space, env.action_space, config, device="cpu", seed=seed)

    eval_steps, eval_means = [], []
    obs, _ = env.reset(seed=seed)
    start = time.perf_counter()
    for t, _ in enumerate(interact(agent, env, obs), start=1):
        if t % eval_every == 0 or t == steps:
            eval_steps.append(t)
            eval_means.append(float(np.mean(evaluate(agent, eval_env, eval_episodes, EVAL_SEED))))
        if t == steps:
            break
    return {
        "seed": seed,
        "eval_steps": eval_steps,
        "eval_means": [round(m, 4) for m in eval_means],
        "final": eval_means[-1],
        "auc": eval_auc(eval_steps, eval_means),
        "final_alpha": [round(a, 5) for a in agent.alpha.tolist()],
        "wall_s": round(time.perf_counter() - start, 2),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    finals = [r["final"] for r in runs]
    aucs = [r["auc"] for r in runs]
    def spread(xs: list[float]) -> float:
        return statistics.stdev(xs) if len(xs) > 1 else 0.0

    return {
        "final_mean": round(statistics.mean(finals), 3), "final_std": round(spread(finals), 3),
        "auc_mean": round(statistics.mean(aucs), 3), "auc_std": round(spread(aucs), 3),
        "finals": [round(f, 2) for f in finals],
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
    }
