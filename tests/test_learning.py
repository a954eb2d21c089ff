"""A seeded, short learning run: guards against silent regressions in the agent's learning.

Longer runs (steps to 475, five seeds) are benchmarks (benchmarks/cartpole_seeds.py), not tests.
"""

import gymnasium as gym
import numpy as np
import pytest

from sqn_agents import SQNAgent, SQNConfig


def greedy_return(agent: SQNAgent, env: gym.Env, episodes: int, seed: int) -> float:
    totals = []
    with agent.evaluating():
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done, total = False, 0.0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
                total += float(reward)
                done = terminated or truncated
            totals.append(total)
    return float(np.mean(totals))


@pytest.mark.slow
def test_cartpole_learns_within_3000_steps():
    env = gym.make("CartPole-v1")
    agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(), device="cpu", seed=0)
    untrained = greedy_return(agent, env, 5, seed=100)
    obs, _ = env.reset(seed=0)
    for _ in range(3_000):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        agent.learn()
        obs = env.reset()[0] if terminated or truncated else next_obs
    trained = greedy_return(agent, gym.make("CartPole-v1"), 5, seed=100)
    # A uniformly random policy averages about 22 on CartPole-v1; an untrained greedy one about 10.
    assert untrained < 60
    assert trained >= 100, f"greedy return after 3,000 steps is {trained:.1f} (untrained {untrained:.1f})"
