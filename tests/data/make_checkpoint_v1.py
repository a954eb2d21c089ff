"""Writes ``tests/data/checkpoint_v1_cartpole/``: checkpoints of format_version 1 that later code must keep loading.

It was run once with the code of commit dd2f291 (before the actor/learner split), from the repository root::

    PYTHONPATH=. python tests/data/make_checkpoint_v1.py

``before/`` is a tiny CartPole agent on a 2-env vector env (a ring of 64 transitions, already
wrapped, so ``pos`` is mid-ring; a pending NEXT_STEP reset in ``prev_done``), saved with its
replay. ``after/`` is the same agent after ``continue_run`` fed it 24 more synthetic steps;
``after_actions.npy`` holds the actions it sampled on the way. tests/test_checkpoint.py loads
``before/``, continues it the same way and checks that it reaches ``after/`` bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np

from sqn_agents import SQNAgent, SQNConfig

HERE = Path(__file__).parent / "checkpoint_v1_cartpole"
CONFIG = SQNConfig(hidden_sizes=(8,), batch_size=8, buffer_size=64, learning_starts=16, replay="uniform")


def continue_run(agent: SQNAgent, steps: int = 24) -> np.ndarray:
    """Feed ``agent`` a fixed stream of 2-env transitions (independent of its actions); return its actions."""
    rng = np.random.default_rng(1234)
    actions = []
    for _ in range(steps):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        action = agent.act(obs)
        actions.append(action)
        done = rng.random(2) < 0.1
        agent.observe(obs, action, np.ones(2), rng.normal(size=(2, 4)).astype(np.float32), done, np.zeros(2, bool))
        agent.learn()
    return np.stack(actions)


def _reset_pending(agent: SQNAgent) -> bool:
    """Whether a sub-env's NEXT_STEP reset step is pending (``_prev_done`` before the split, ``intake`` after)."""
    prev_done = agent.intake.prev_done if hasattr(agent, "intake") else agent._prev_done
    return prev_done is not None and bool(prev_done.any())


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space, CONFIG, device="cpu", seed=3)
    obs, _ = envs.reset(seed=3)
    step = 0
    while agent.env_steps < 90 or not _reset_pending(agent):
        actions = agent.act(obs)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        agent.observe(obs, actions, rewards, next_obs, terminated, truncated, info=info)
        agent.learn()
        obs = next_obs
        step += 1
    agent.save(HERE / "before", include_replay=True)
    np.save(HERE / "after_actions.npy", continue_run(agent))
    agent.save(HERE / "after", include_replay=True)
    print(f"{step} vector steps, env_steps={agent.env_steps}, gradient_steps={agent.gradient_steps}")


if __name__ == "__main__":
    main()
