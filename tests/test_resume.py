"""Exact resume: a run stopped at step N, saved with its replay and resumed gives the same actions and
learn() metrics as a run that never stopped (CartPole, fixed seeds, CPU, one torch thread).

The env is not part of a checkpoint: both runs keep stepping the same kind of env object, and the
resumed agent continues with the very env object the first half used (see docs/checkpoints.md).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import assert_same_state, assert_save_load_continues_exactly, snapshot

from sqn_agents import SQNAgent, SQNConfig

torch.set_num_threads(1)

CONFIG = SQNConfig(hidden_sizes=(32, 32), batch_size=32, buffer_size=1000, learning_starts=200, replay="uniform")
N, M = 400, 200


class Run:
    """One training run: an env, an agent, and a log of (action, learn() metrics) per step."""

    def __init__(self, seed: int = 0) -> None:
        self.env = gym.make("CartPole-v1")
        self.agent = SQNAgent(self.env.observation_space, self.env.action_space, CONFIG, seed=seed, device="cpu")
        self.obs, _ = self.env.reset(seed=seed)
        self.log: list[tuple[int, dict[str, float]]] = []

    def steps(self, n: int) -> None:
        for _ in range(n):
            action = self.agent.act(self.obs)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.agent.observe(self.obs, action, reward, next_obs, terminated, truncated)
            self.log.append((action, self.agent.learn()))
            self.obs = next_obs if not (terminated or truncated) else self.env.reset()[0]


def test_resume_with_replay_continues_exactly(tmp_path):
    straight = Run()
    straight.steps(N + M)

    stopped = Run()
    stopped.steps(N)
    stopped.agent.save(tmp_path / "ckpt", include_replay=True)
    env = stopped.env
    stopped.agent = SQNAgent.load(
        tmp_path / "ckpt", device="cpu", observation_space=env.observation_space, action_space=env.action_space
    )
    stopped.steps(M)

    assert [a for a, _ in stopped.log] == [a for a, _ in straight.log]
    learned = [m for _, m in straight.log if m]
    assert len(learned) >= M  # updates ran on both sides of the resume point
    for i, ((_, got), (_, want)) in enumerate(zip(stopped.log, straight.log, strict=True)):
        assert got == want, f"step {i}: learn() metrics {got} != {want}"  # exact, not approximately
    assert_same_state(snapshot(straight.agent), snapshot(stopped.agent))


def test_resume_of_a_vector_env_restores_the_autoreset_bookkeeping(tmp_path):
    """NEXT_STEP autoreset: the step after a done is dropped; a save right after a done must remember it."""

    def make_envs():
        envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(2)])
        agent = SQNAgent(envs.single_observation_space, envs.single_action_space, CONFIG, seed=3, device="cpu")
        return envs, agent, envs.reset(seed=3)[0]

    def step(envs, agent, obs, log):
        actions = agent.act(obs)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        agent.observe(obs, actions, rewards, next_obs, terminated, truncated)
        log.append((actions.tolist(), agent.learn()))
        return next_obs, bool((terminated | truncated).any())

    envs, agent, obs = make_envs()
    straight: list = []
    for _ in range(300):
        obs, _ = step(envs, agent, obs, straight)
    final = snapshot(agent)

    envs, agent, obs = make_envs()
    resumed: list = []
    done = False
    while len(resumed) < 150 or not done:  # stop right after a sub-env finished
        obs, done = step(envs, agent, obs, resumed)
    prev_done = agent.intake.prev_done.copy()
    assert prev_done.any()
    agent.save(tmp_path / "vec", include_replay=True)
    agent = SQNAgent.load(tmp_path / "vec", device="cpu")
    np.testing.assert_array_equal(agent.intake.prev_done, prev_done)
    while len(resumed) < 300:
        obs, _ = step(envs, agent, obs, resumed)

    assert resumed == straight
    assert_same_state(final, snapshot(agent))


class FrameStackEnv(gym.Env):
    """Channels-first uint8 stacks of 4 frames that overlap like Atari frame stacks (each step shifts the
    stack and appends one new random frame), in short episodes: what the frame-deduplicating replay stores."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (4, 12, 12), np.uint8)
        self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.stack = self.np_random.integers(0, 256, (4, 12, 12), dtype=np.uint8)
        return self.stack.copy(), {}

    def step(self, action):
        self.t += 1
        frame = self.np_random.integers(0, 256, (1, 12, 12), dtype=np.uint8)
        self.stack = np.concatenate([self.stack[1:], frame])
        return self.stack.copy(), float(action == self.t % 3), self.t >= 15, False, {}


def test_resume_with_the_frame_stack_replay_continues_exactly(tmp_path):
    pytest.importorskip("sqn_agents.frame_replay", reason="the frame-stack replay is not in this checkout yet")
    config = SQNConfig(batch_size=16, buffer_size=200, learning_starts=40)  # replay='auto' picks frame_stack

    loaded = assert_save_load_continues_exactly(FrameStackEnv, config, total=100, save_at=60, path=tmp_path / "frames")
    assert type(loaded.replay).__name__ == "FrameStackReplayBuffer"
