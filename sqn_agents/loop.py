"""The interaction loop and the greedy evaluator, written once for ``sqn-train``, the examples
and the benchmarks.

``interact`` is the act / step / observe / learn loop as a generator: it yields after every
env step, so the caller decides when to log, evaluate, checkpoint or stop (CleanRL's loop,
turned inside out). ``play_episodes`` is the evaluation protocol (episode ``i`` reset with
``seed + i``; an Atari game is played whole, across lost lives) for any policy, and
``evaluate`` runs it with the agent's greedy policy.

    >>> import gymnasium as gym
    >>> from sqn_agents import SQNAgent, SQNConfig
    >>> env = gym.make("CartPole-v1")
    >>> agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(hidden_sizes=(8,)), device="cpu")
    >>> obs, _ = env.reset(seed=0)
    >>> for step in interact(agent, env, obs):
    ...     if agent.env_steps == 50:
    ...         break
    >>> len(evaluate(agent, gym.make("CartPole-v1"), episodes=2, seed=100))
    2
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym

from wrappers import GAME_INFO_KEY

# The info key under which wrappers.make_atari_env reports the unclipped score of a whole game.
GAME_KEY = GAME_INFO_KEY


class Agent(Protocol):
    """What the loop needs of an agent (``SQNAgent`` has it)."""

    def act(self, obs: Any, deterministic: bool | None = None) -> Any: ...

    def observe(self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any,
                info: dict[str, Any] | None = None) -> None: ...

    def learn(self) -> dict[str, float]: ...

    def evaluating(self) -> Any: ...


@dataclass(frozen=True)
class Step:
    """One env step of ``interact``: the transition as the env returned it, and what ``learn()`` returned."""

    obs: Any
    action: Any
    reward: Any
    next_obs: Any
    terminated: Any
    truncated: Any
    info: dict[str, Any]
    metrics: Mapping[str, float]
    """``learn()``'s metrics of this step; ``{}`` when no update was due."""


def interact(agent: Agent, env: gym.Env | gym.vector.VectorEnv, obs: Any) -> Iterator[Step]:
    """Act, step ``env``, observe and learn, forever; yields a ``Step`` after each env step.

    ``obs`` is the observation of the first ``env.reset``, which the caller does (with its seed).
    A single env is reset here when an episode ends (``env.reset()`` without a seed, so the
    env's own RNG continues); a vector env resets its sub-envs itself, and its ``info`` is
    passed to ``observe`` (SAME_STEP autoreset needs ``info["final_obs"]``). Stop by breaking
    out of the ``for`` loop.
    """
    vector = isinstance(env, gym.vector.VectorEnv)
    while True:
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated, info=info if vector else None)
        metrics = agent.learn()
        yield Step(obs, action, reward, next_obs, terminated, truncated, info, metrics)
        obs = next_obs if vector or not (terminated or truncated) else env.reset()[0]


def play_episodes(policy: Callable[[Any], Any], env: gym.Env, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes of ``policy`` (obs -> action), episode ``i`` starting from
    ``env.reset(seed=seed + i)``.

    For Atari games from ``wrappers.make_atari_env`` an episode is a whole game: a life loss
    that ends a training episode (``terminated`` with ``info["life_loss"]``) only starts the next
    life here, and the score is the unclipped game score from ``info["game"]``.
    """
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total = 0.0
        while True:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            if GAME_KEY in info:  # the real game ended
                returns.append(float(info[GAME_KEY]["r"]))
                break
            if terminated and info.get("life_loss", False):  # only a life was lost: play on
                obs, _ = env.reset()
                continue
            if terminated or truncated:
                returns.append(total)
                break
    return returns


def evaluate(agent: Agent, env: gym.Env, episodes: int, seed: int) -> list[float]:
    """Greedy returns of ``agent`` (``play_episodes`` in the agent's evaluation mode, where ``act`` is greedy)."""
    with agent.evaluating():
        return play_episodes(agent.act, env, episodes, seed)


__all__ = ["GAME_KEY", "Step", "evaluate", "interact", "play_episodes"]
