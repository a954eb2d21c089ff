"""Target networks: Polyak averaging every gradient step, and hard copies every K steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from sqn_agents import SQNAgent, SQNConfig


def _fill(agent: SQNAgent, n: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(n):
        agent.observe(rng.uniform(-1, 1, 3).astype(np.float32), int(rng.integers(2)), float(rng.normal()),
                      rng.uniform(-1, 1, 3).astype(np.float32), False, False)


def _params(nets) -> list[torch.Tensor]:
    return [p.detach().clone() for p in nets.parameters()]


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_hard_updates_copy_every_k_gradient_steps():
    cfg = SQNConfig(tau=1.0, target_update_interval=3, learning_starts=16, batch_size=16, hidden_sizes=(8,))
    agent = SQNAgent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), cfg, device="cpu", seed=0)
    _fill(agent, 15)
    initial = _params(agent.target_nets)
    for step in range(1, 10):
        _fill(agent, 1)
        agent.learn()  # one gradient step per stored transition
        assert agent.gradient_steps == step
        if step % 3 == 0:
            assert _equal(_params(agent.target_nets), _params(agent.q_nets)), step
            copied = _params(agent.target_nets)
        elif step < 3:
            assert _equal(_params(agent.target_nets), initial), step
        else:
            assert _equal(_params(agent.target_nets), copied), step  # unchanged between copies
            assert not _equal(_params(agent.target_nets), _params(agent.q_nets))


@pytest.mark.parametrize("interval", [1, 2])
def test_polyak_averaging_at_an_interval(interval):
    tau = 0.25
    cfg = SQNConfig(tau=tau, target_update_interval=interval, learning_starts=16, batch_size=16, hidden_sizes=(8,))
    agent = SQNAgent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), cfg, device="cpu", seed=0)
    _fill(agent, 15)
    for step in range(1, 5):
        before = _params(agent.target_nets)
        _fill(agent, 1)
        agent.learn()
        after, online = _params(agent.target_nets), _params(agent.q_nets)
        for b, a, o in zip(before, after, online, strict=True):
            expected = (1 - tau) * b + tau * o if step % interval == 0 else b
            torch.testing.assert_close(a, expected, rtol=1e-6, atol=1e-7)
