"""A custom Gymnasium environment with a MultiDiscrete action space, trained by SQN natively.

The environment, written here from scratch: a pan-tilt camera follows a subject that
wanders on a 7 x 7 grid. Every step the camera chooses three things at once:

    pan  in {-1, 0, +1}   (move the camera one cell left / stay / right)
    tilt in {-1, 0, +1}   (down / stay / up)
    zoom in {0, 1}        (wide: sees the 3 x 3 cells around its centre; tight: only the centre)

so the action space is ``MultiDiscrete([3, 3, 2], start=[-1, -1, 0])``. The reward is 0.5 when
the subject is in a wide shot, 1.0 when it is in a tight shot and 0 when it is out of frame:
zooming in pays only when the camera is exactly on the subject, so the best zoom depends on
the pan and tilt (the components interact). An episode lasts 32 steps.

SQN learns one Q head per component (see docs/multidiscrete.md) in the ordinary
act / observe / learn loop of ``sqn_agents.loop.interact``:

    python examples/multidiscrete_custom_env.py              # about 30-60 s on one CPU thread
    python examples/multidiscrete_custom_env.py --steps 2000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.loop import interact, play_episodes


class CameraTrackingEnv(gym.Env):
    """Keep a wandering subject in frame with a pan-tilt-zoom camera."""

    metadata = {"render_modes": []}

    def __init__(self, size: int = 7, episode_length: int = 32) -> None:
        self.size, self.episode_length = size, episode_length
        # pan, tilt in {-1, 0, 1}; zoom in {0, 1}: the start offsets make the actions read naturally.
        self.action_space = gym.spaces.MultiDiscrete([3, 3, 2], start=[-1, -1, 0])
        # subject (x, y), camera (x, y), each scaled to [0, 1], and the elapsed fraction of the episode
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(5,), dtype=np.float32)
        self.subject = np.zeros(2, dtype=np.int64)
        self.camera = np.zeros(2, dtype=np.int64)
        self.t = 0

    def _obs(self) -> np.ndarray:
        coords = np.concatenate([self.subject, self.camera]) / (self.size - 1)
        return np.append(coords, self.t / self.episode_length).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.subject = self.np_random.integers(0, self.size, 2)
        self.camera = self.np_random.integers(0, self.size, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray):
        pan, tilt, zoom = (int(x) for x in action)
        self.camera = np.clip(self.camera + [pan, tilt], 0, self.size - 1)
        offset = np.abs(self.subject - self.camera).max()
        if zoom == 1:
            reward = 1.0 if offset == 0 else 0.0
        else:
            reward = 0.5 if offset <= 1 else 0.0
        # the subject wanders: a random step on one axis, half of the time
        if self.np_random.random() < 0.5:
            axis = self.np_random.integers(2)
            self.subject[axis] = np.clip(self.subject[axis] + self.np_random.choice([-1, 1]), 0, self.size - 1)
        self.t += 1
        return self._obs(), reward, self.t >= self.episode_length, False, {"offset": int(offset)}


def oracle_action(env: CameraTrackingEnv) -> np.ndarray:
    """The hand-written best move: step toward the subject, zoom in when that centres it."""
    pan, tilt = np.sign(env.subject - env.camera)
    zoom = int(np.array_equal(env.camera + [pan, tilt], env.subject))
    return np.array([pan, tilt, zoom])


def evaluate(policy, env: CameraTrackingEnv, episodes: int, seed: int) -> float:
    """Mean return of ``policy`` (obs -> action) over ``episodes`` fixed episodes (``loop.play_episodes``)."""
    return float(np.mean(play_episodes(policy, env, episodes, seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    env, eval_env = CameraTrackingEnv(), CameraTrackingEnv()
    check_env(CameraTrackingEnv(), skip_render_check=True)  # the env follows the Gymnasium API
    config = SQNConfig(replay="uniform", learning_starts=500)  # the MultiDiscrete defaults otherwise
    agent = SQNAgent(env.observation_space, env.action_space, config, device="cpu", seed=args.seed)
    print(f"action space {env.action_space}: {agent.codec.action_dims} Q heads, "
          f"{int(np.prod(env.action_space.nvec))} joint actions")

    def greedy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, deterministic=True)

    before = evaluate(greedy, eval_env, 20, seed=10_000)
    obs, _ = env.reset(seed=args.seed)
    episode_return, returns, start = 0.0, [], time.perf_counter()
    # each t.action is e.g. array([ 1, -1,  0]): pan right, tilt down, wide shot
    for step, t in enumerate(interact(agent, env, obs), start=1):
        metrics = t.metrics
        episode_return += t.reward
        if t.terminated or t.truncated:  # (interact resets the env)
            returns.append(episode_return)
            episode_return = 0.0
        if step % 2_000 == 0:
            print(f"step {step:6d}  training return (last 20 episodes) {np.mean(returns[-20:]):5.2f}  "
                  f"alpha {metrics.get('alpha', float('nan')):.3f}  entropy {metrics.get('entropy', float('nan')):.2f}")
        if step == args.steps:
            break
    elapsed = time.perf_counter() - start
    after = evaluate(greedy, eval_env, 20, seed=10_000)
    oracle = evaluate(lambda obs: oracle_action(eval_env), eval_env, 20, seed=10_000)
    rng = np.random.default_rng(0)
    uniform = evaluate(lambda obs: rng.integers(0, [3, 3, 2]) + [-1, -1, 0], eval_env, 20, seed=10_000)

    # What the greedy camera does when the subject is one cell to its right (not yet centred), and on it.
    probe = CameraTrackingEnv()
    probe.reset(seed=0)
    probe.subject, probe.camera = np.array([4, 3]), np.array([3, 3])
    off_centre = agent.act(probe._obs(), deterministic=True)
    probe.camera = np.array([4, 3])
    centred = agent.act(probe._obs(), deterministic=True)

    print("\nsummary")
    print(f"  steps {args.steps:,} in {elapsed:.0f} s ({args.steps / elapsed:.0f} steps/s)")
    print(f"  mean return over 20 fixed episodes: random actions {uniform:.2f}, untrained greedy {before:.2f}, "
          f"trained greedy {after:.2f}, hand-written oracle {oracle:.2f}")
    print(f"  subject one cell right of the camera: action {off_centre.tolist()} (pan, tilt, zoom); oracle [1, 0, 1]")
    print(f"  subject centred:                      action {centred.tolist()}; oracle [0, 0, 1]")
    print(f"  temperature alpha {agent.alpha.tolist()}, gradient steps {agent.gradient_steps:,}")


if __name__ == "__main__":
    main()
