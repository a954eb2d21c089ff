"""A seeded, short learning run: guards against silent regressions in the agent's learning.

Longer runs (steps to 475, five seeds) are benchmarks (benchmarks/cartpole_seeds.py), not tests.
"""

import gymnasium as gym
import numpy as np
import pytest

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.loop import evaluate


@pytest.mark.slow
def test_cartpole_learns_within_3000_steps():
    env = gym.make("CartPole-v1")
    agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(), device="cpu", seed=0)
    untrained = float(np.mean(evaluate(agent, env, 5, seed=100)))
    obs, _ = env.reset(seed=0)
    for _ in range(3_000):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        agent.learn()
        obs = env.reset()[0] if terminated or truncated else next_obs
    trained = float(np.mean(evaluate(agent, env, 5, seed=100)))
    # A uniformly random policy averages about 22 on CartPole-v1; an untrained greedy one about 10.
    assert untrained < 60
    assert trained >= 100, f"greedy return after 3,000 steps is {trained:.1f} (untrained {untrained:.1f})"
