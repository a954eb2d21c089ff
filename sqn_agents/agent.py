"""SQNAgent: the act / observe / learn interface, a thin facade over an actor and a learner.

The agent is three parts that share tensors (see "How the code is laid out" in the README):

* ``actor.Actor``: the acting policy, over the learner's online networks and temperature;
* ``actor.TransitionIntake``: ``observe``'s checks and vector-env autoreset handling, writing
  into the learner;
* ``learner.Learner``: replay, twin Q networks and targets, temperature, optimizers, the
  update schedule and the gradient step.

The agent adds the training/evaluation mode, and saving and loading: ``state_dict()``
gathers the parts' own state, ``checkpoint.py`` lays it out on disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sqn_agents.actor import Actor, TransitionIntake, autoreset_name
from sqn_agents.checkpoint import CheckpointError, pack_agent, read_checkpoint, unpack_agent, write_checkpoint
from sqn_agents.config import SQNConfig
from sqn_agents.learner import Learner
from sqn_agents.networks import NetworkFactory, resolve_device
from sqn_agents.replay import Replay
from sqn_agents.spaces import ActionCodec, describe_space, space_from_description

# Errors a part may raise on a malformed state it is asked to load; a load turns each into a CheckpointError.
_LOAD_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError)


def _counter(name: str) -> property:
    """``agent.<name>``: the learner's counter of that name (assignable, as tests and benchmarks do)."""

    def get(self: SQNAgent) -> int:
        return getattr(self.learner.counters, name)

    def set_(self: SQNAgent, value: int) -> None:
        setattr(self.learner.counters, name, value)

    return property(get, set_, doc=f"The learner's ``counters.{name}``.")


class SQNAgent:
    """Discrete soft Q-learning agent with twin Q networks and a learned temperature.

    >>> import gymnasium as gym
    >>> env = gym.make("CartPole-v1")
    >>> agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(learning_starts=10, batch_size=8), seed=0)
    >>> obs, _ = env.reset(seed=0)
    >>> action = agent.act(obs)
    >>> next_obs, reward, terminated, truncated, _ = env.step(action)
    >>> agent.observe(obs, action, reward, next_obs, terminated, truncated)
    >>> agent.learn()  # nothing due yet during warm-up
    {}
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        config: SQNConfig | None = None,
        *,
        device: str | torch.device = "auto",
        seed: int | None = None,
        network_factory: NetworkFactory | None = None,
        autoreset_mode: Any = "next_step",
        action_mask: bool = False,
        mask_as_input: bool = False,
    ) -> None:
        """``action_mask=True``: the env gives legal-action masks outside the observation (Taxi's
        ``info["action_mask"]``), passed to ``act`` and ``observe``; a ``Dict`` observation with an
        ``"action_mask"`` entry needs no flag. ``mask_as_input=True``: the networks see the mask too, as
        one more input part (it masks the policy either way). Observation spaces: see ``observations.py``."""
        self.config = config if config is not None else SQNConfig()
        if not isinstance(self.config, SQNConfig):
            raise TypeError(f"config must be an SQNConfig, got {type(self.config).__name__}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.action_mask = bool(action_mask)
        self.device = resolve_device(device)
        self.seed = seed
        self.network_factory = network_factory
        autoreset_mode = autoreset_name(autoreset_mode)  # refuse a bad mode before building networks
        self.learner = Learner(observation_space, action_space, self.config, device=self.device, seed=seed,
                               network_factory=network_factory, action_mask=action_mask, mask_as_input=mask_as_input)
        self.mask_as_input = bool(mask_as_input)  # (the learner's codec refused a non-bool)
        self.actor = Actor(observation_space, action_space, self.learner.q_nets, self.learner.log_alpha, seed=seed,
                           action_mask=action_mask, mask_as_input=mask_as_input, precision=self.config.precision)
        self.intake = TransitionIntake(observation_space, action_space, self.learner, autoreset_mode,
                                       action_mask=action_mask)
        self.training = True

    # ------------------------------------------------------------------ the parts' public state
    env_steps = _counter("env_steps")
    updates = _counter("updates")
    gradient_steps = _counter("gradient_steps")

    @property
    def skipped_updates(self) -> int:
        """The learner's ``skipped_updates`` (read from the device; warns about steps skipped since the last read)."""
        return self.learner.skipped_updates

    @property
    def codec(self) -> ActionCodec:
        return self.learner.codec

    @property
    def replay(self) -> Replay:
        return self.learner.replay

    @property
    def q_nets(self) -> torch.nn.ModuleList:
        return self.learner.q_nets

    @property
    def target_nets(self) -> torch.nn.ModuleList:
        return self.learner.target_nets

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.learner.log_alpha

    @property
    def alpha(self) -> torch.Tensor:
        return self.learner.alpha

    @property
    def q_optimizer(self) -> torch.optim.Optimizer:
        return self.learner.q_optimizer

    @property
    def alpha_optimizer(self) -> torch.optim.Optimizer:
        return self.learner.alpha_optimizer

    @property
    def entropy_target(self) -> torch.Tensor:
        return self.learner.entropy_target

    @property
    def mask(self) -> torch.Tensor | None:
        return self.learner.mask

    @property
    def generator(self) -> torch.Generator:
        return self.actor.generator

    @property
    def autoreset_mode(self) -> str:
        return self.intake.autoreset_mode

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> SQNAgent:
        """Training mode (the default): ``act`` samples from the Boltzmann policy."""
        self.training = mode
        return self

    def eval(self) -> SQNAgent:
        """Evaluation mode: ``act`` is greedy unless asked otherwise; ``observe`` and ``learn`` refuse."""
        return self.train(False)

    @contextmanager
    def evaluating(self) -> Iterator[SQNAgent]:
        """``with agent.evaluating(): ...`` runs the block in evaluation mode and restores the previous mode."""
        previous = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(previous)

    # ------------------------------------------------------------------ act / observe / learn
    def act(self, obs: Any, deterministic: bool | None = None, *, action_mask: Any = None) -> Any:
        """Action(s) for one observation or a batch.

        Samples from ``softmax(Q / alpha)`` (with ``Q = min(Q1, Q2)``), or takes the argmax
        when ``deterministic`` is True. ``deterministic=None`` means greedy in evaluation
        mode and sampling in training mode. Only legal actions are chosen when there is a mask:
        the observation's ``"action_mask"``, or ``action_mask`` (one per observation of a batch).
        """
        return self.actor.act(obs, (not self.training) if deterministic is None else deterministic, action_mask)

    def observe(
        self,
        obs: Any,
        action: Any,
        reward: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any,
        info: dict[str, Any] | None = None,
        *,
        action_mask: Any = None,
        next_action_mask: Any = None,
    ) -> None:
        """Store one transition, or one per sub-env of a vector env.

        Nothing is stored unless every argument is valid: shapes agree with the spaces,
        actions lie in the action space and rewards and observations are finite; with masks,
        every state acted in has a legal action and the action taken is legal. An agent built
        with ``action_mask=True`` needs ``action_mask`` (of ``obs``) and ``next_action_mask``.
        """
        if not self.training:
            raise RuntimeError("observe() called in evaluation mode; call agent.train() first")
        self.intake.observe(obs, action, reward, next_obs, terminated, truncated, info,
                            action_mask=action_mask, next_action_mask=next_action_mask)

    def vector_env_reset(self) -> None:
        """Call after resetting a vector env yourself (``envs.reset()``) in NEXT_STEP mode.

        The agent drops the step that follows a done step because the vector env's own
        autoreset makes it a reset step; after a manual reset no such step is pending.
        """
        self.intake.reset()

    def learn(self) -> Mapping[str, float]:
        """Run the gradient steps now due; return the last step's metrics, or {} if none were due.

        An update is due every ``train_freq`` stored transitions once
        ``max(learning_starts, batch_size)`` transitions are stored; each update is
        ``gradient_steps`` gradient steps. Calling ``learn()`` after every ``observe()``
        therefore gives the replay ratio ``gradient_steps / train_freq``.

        The metrics are a ``LearnMetrics`` mapping of floats that stays on the device until it is
        read (``metrics["q_loss"]``, ``dict(metrics)``), so a loop that logs now and then never
        waits for the device. Steps skipped for a non-finite loss raise a ``RuntimeWarning`` at
        that read (or at a read of ``skipped_updates``).
        """
        if not self.training:
            raise RuntimeError("learn() called in evaluation mode; call agent.train() first")
        metrics = self.learner.learn()
        return {} if metrics is None else metrics

    # ------------------------------------------------------------------ state and persistence
    def state_dict(self, include_replay: bool = False) -> dict[str, Any]:
        """The parts' own state: ``{"learner": ..., "actor": ..., "intake": ...}`` (live tensors, not copies)."""
        return {
            "learner": self.learner.state_dict(include_replay=include_replay),
            "actor": self.actor.state_dict(),
            "intake": self.intake.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict``. Each part checks its state before it changes anything, and when a
        later part refuses, the earlier ones are put back: a refused state leaves the agent as it was."""
        previous = self.intake.state_dict(), self.actor.state_dict()  # small: the pending resets, the generator
        self.intake.load_state_dict(state["intake"])
        try:
            self.actor.load_state_dict(state["actor"])
            self.learner.load_state_dict(state["learner"])
        except BaseException:
            self.intake.load_state_dict(previous[0])
            self.actor.load_state_dict(previous[1])
            raise

    def _description(self) -> dict[str, Any]:
        """What ``load`` needs to rebuild an agent like this one before loading its state."""
        return {
            "config": self.config.to_dict(),
            "observation_space": describe_space(self.observation_space),
            "action_space": describe_space(self.action_space),
            "network": "builtin" if self.network_factory is None else "custom",
            "autoreset_mode": self.autoreset_mode,
            "action_mask": self.action_mask,
            "mask_as_input": self.mask_as_input,
            # a Box's bounds go into the model file; a Dict or Tuple carries its parts' bounds in its description
            "observation_low": getattr(self.observation_space, "low", np.zeros(0, np.float32)),
            "observation_high": getattr(self.observation_space, "high", np.zeros(0, np.float32)),
        }

    def save(self, path: str | Path, *, include_replay: bool = False) -> Path:
        """Write a checkpoint directory atomically (see ``checkpoint.py``); returns its path.

        Always saved: config, spaces, networks, targets, temperature, optimizer states,
        counters and RNG states. ``include_replay=True`` adds the replay buffer, which
        makes a resumed run continue exactly as if it had never stopped.
        """
        manifest, groups = pack_agent(self._description(), self.state_dict(include_replay), include_replay)
        return write_checkpoint(path, manifest, groups)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        network_factory: NetworkFactory | None = None,
        observation_space: gym.spaces.Space | None = None,
        action_space: gym.spaces.Space | None = None,
    ) -> SQNAgent:
        """Load a checkpoint written by ``save``; never unpickles anything.

        Pass the env's spaces to check that the checkpoint was made for them, and the same
        ``network_factory`` when the agent was built with one. Every problem is a
        ``CheckpointError`` that names the file or field.
        """
        manifest, groups = read_checkpoint(path)
        try:
            description, state = unpack_agent(manifest, groups)
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint at {path}: {e}") from None
        try:
            config = SQNConfig.from_dict(description["config"])
            obs_space = space_from_description(
                description["observation_space"], description["observation_low"], description["observation_high"]
            )
            act_space = space_from_description(description["action_space"])
        except (KeyError, ValueError, TypeError, AttributeError, AssertionError) as e:
            raise CheckpointError(f"checkpoint at {path} has an invalid config or space description: {e!r}") from None
        for given, saved, name in ((observation_space, obs_space, "observation"), (action_space, act_space, "action")):
            if given is None:
                continue
            try:
                given_desc = describe_space(given)
            except ValueError:
                given_desc = repr(given)
            if given_desc != describe_space(saved):
                raise CheckpointError(
                    f"checkpoint at {path} was made for {name} space {describe_space(saved)}, but the env has {given_desc}"
                )
        if description["network"] == "custom" and network_factory is None:
            raise CheckpointError(
                f"checkpoint at {path} was saved from an agent with a custom network_factory; pass the same factory to load()"
            )
        try:
            agent = cls(obs_space, act_space, config, device=device, network_factory=network_factory,
                        autoreset_mode=description["autoreset_mode"], action_mask=description.get("action_mask", False),
                        mask_as_input=description.get("mask_as_input", False))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint at {path} describes an agent that cannot be built: {e}") from None
        try:
            agent.load_state_dict(state)
        except _LOAD_ERRORS as e:
            raise CheckpointError(f"checkpoint at {path}: {e if isinstance(e, ValueError) else repr(e)}") from None
        return agent


__all__ = ["SQNAgent", "resolve_device"]
