"""SQNAgent: the act / observe / learn interface around the math in ``soft_q.py``.

This module is bookkeeping: checking inputs, converting actions, filling the replay,
deciding when updates are due, stepping optimizers and the target networks. The
equations live in ``soft_q.py``; saving and loading in ``checkpoint.py``.

Single and batched use are told apart by shape: an observation of the space's shape is
one step of one env; ``(B, *shape)`` is one step of a vector env with ``B`` sub-envs.

Vector envs and autoreset. Gymnasium 1.x vector envs reset a finished sub-env on their
own, in one of two ways (``envs.metadata["autoreset_mode"]``):

* ``NEXT_STEP`` (the default): the step after a done returns the reset observation, a
  zero reward and ignores the action. That step is not a transition, so ``observe``
  drops the row of every sub-env whose previous observed step was done.
* ``SAME_STEP``: the done step returns the reset observation as ``next_obs`` and the real
  last observation in ``info["final_obs"]``. Pass ``info=info`` to ``observe``; it puts
  the real last observation back in place for the done rows.

``DISABLED`` (you reset sub-envs yourself) needs neither.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from sqn_agents import soft_q
from sqn_agents.augment import random_shift
from sqn_agents.config import SQNConfig
from sqn_agents.metrics import LearnMetrics
from sqn_agents.networks import NetworkFactory, build_q_network, image_layout
from sqn_agents.replay import ReplayBuffer
from sqn_agents.spaces import ActionCodec, as_obs_array, batch_size_of_obs, check_observation_space

AUTORESET_MODES = ("next_step", "same_step", "disabled")


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' picks CUDA when it is available, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _autoreset_name(mode: Any) -> str:
    # Accept gymnasium.vector.AutoresetMode members (values 'NextStep', ...) and 'next_step'-style strings.
    key = str(getattr(mode, "value", mode)).replace("_", "").lower()
    name = {m.replace("_", ""): m for m in AUTORESET_MODES}.get(key)
    if name is None:
        raise ValueError(f"autoreset_mode must be one of {AUTORESET_MODES} (or gymnasium.vector.AutoresetMode), got {mode!r}")
    return name


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
    ) -> None:
        self.config = config if config is not None else SQNConfig()
        if not isinstance(self.config, SQNConfig):
            raise ValueError(f"config must be an SQNConfig, got {type(self.config).__name__}")
        self.observation_space = check_observation_space(observation_space)
        self.action_space = action_space
        self.codec = ActionCodec(action_space)
        self.device = resolve_device(device)
        self.seed = seed
        self.network_factory = network_factory
        self.autoreset_mode = _autoreset_name(autoreset_mode)
        cfg = self.config

        # Action sampling has its own generator, and the seeded network initialisation runs on a
        # forked RNG, so the agent neither reads nor changes the user's global torch RNG.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63))

        # Twin online Q networks, and their Polyak-averaged targets (never trained directly).
        dims, n = self.codec.action_dims, self.codec.num_actions
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.q_nets = nn.ModuleList(
                [build_q_network(observation_space, dims, n, cfg.hidden_sizes, network_factory) for _ in range(2)]
            ).to(self.device)
        self.target_nets = copy.deepcopy(self.q_nets).requires_grad_(False)
        # Parameter lists for the fused Polyak update, built once rather than on every gradient step.
        self._online_params = list(self.q_nets.parameters())
        self._target_params = list(self.target_nets.parameters())
        self.q_optimizer = torch.optim.Adam(self.q_nets.parameters(), lr=cfg.learning_rate)

        # Temperature, learned in log space so it stays positive: one shared, or one per dimension.
        n_alpha = 1 if (cfg.shared_alpha or dims == 1) else dims
        self.log_alpha = torch.full((n_alpha,), math.log(cfg.initial_alpha), device=self.device, requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_learning_rate)
        self.entropy_target = soft_q.target_entropy(self.codec.sizes.tolist(), cfg.target_entropy_ratio).to(self.device)
        self.mask = None if self.codec.mask is None else torch.as_tensor(self.codec.mask, device=self.device)

        # Random shifts of sampled images (augmentation='shift') draw from their own generator.
        self.augment_layout = image_layout(tuple(observation_space.shape)) if cfg.augmentation == "shift" else None
        if cfg.augmentation == "shift" and self.augment_layout is None:
            raise ValueError(f"augmentation='shift' needs image observations (H, W, C) or (C, H, W), "
                             f"got shape {observation_space.shape}")
        self.augment_generator = torch.Generator(device=self.device)
        self.augment_generator.manual_seed((seed if seed is not None else int(np.random.SeedSequence().entropy % 2**62)) + 1)

        self.replay = self._make_replay(seed)
        self.env_steps = 0  # transitions stored
        self.updates = 0  # updates done (each is `gradient_steps` gradient steps)
        self.gradient_steps = 0
        self.skipped_updates = 0  # updates dropped because the loss was not finite
        self.training = True
        self._prev_done: np.ndarray | None = None  # per sub-env: was the last observed step done?

    # ------------------------------------------------------------------ construction
    def _make_replay(self, seed: int | None) -> ReplayBuffer:
        cfg, space = self.config, self.observation_space
        kind = cfg.replay
        maybe_stack = space.dtype == np.uint8 and len(space.shape) == 3  # avoid the import for vectors
        if kind == "frame_stack" or (kind == "auto" and maybe_stack):
            from sqn_agents.frame_replay import FrameStackReplayBuffer, is_frame_stack_space

            stackable = is_frame_stack_space(space.shape, space.dtype)
            if kind == "frame_stack" and not stackable:
                raise ValueError(
                    f"replay='frame_stack' needs channels-first uint8 frame stacks, got observations "
                    f"of shape {space.shape} and dtype {space.dtype}; use replay='uniform'"
                )
            if stackable:
                return FrameStackReplayBuffer(cfg.buffer_size, space.shape, space.dtype, self.codec.action_dims, seed=seed)
        return ReplayBuffer(cfg.buffer_size, space.shape, space.dtype, self.codec.action_dims, seed=seed)

    # ------------------------------------------------------------------ properties
    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

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

    # ------------------------------------------------------------------ acting
    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.device)

    def _q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """Acting Q table: the minimum of the two online networks, (B, D, N)."""
        return torch.minimum(self.q_nets[0](obs), self.q_nets[1](obs))

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool | None = None) -> Any:
        """Action(s) for one observation or a batch.

        Samples from ``softmax(Q / alpha)`` (with ``Q = min(Q1, Q2)``), or takes the argmax
        when ``deterministic`` is True. ``deterministic=None`` means greedy in evaluation
        mode and sampling in training mode.
        """
        arr = as_obs_array(obs, self.observation_space)
        batch = batch_size_of_obs(arr, self.observation_space)
        x = self._obs_tensor(arr if batch is not None else arr[None])
        q = self._q_values(x)
        greedy = (not self.training) if deterministic is None else deterministic
        if greedy:
            if self.mask is not None:
                q = q.masked_fill(~self.mask, float("-inf"))
            index = q.argmax(dim=-1)
        else:
            # Gumbel-max: argmax(log pi + Gumbel noise) is a sample of pi, for all rows and dimensions at once.
            log_pi = soft_q.boltzmann_log_policy(q, self.alpha, self.mask)
            u = torch.rand(log_pi.shape, generator=self.generator, device=self.device)
            index = (log_pi - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(dim=-1)
        return self.codec.from_index(index.cpu().numpy(), batched=batch is not None)

    # ------------------------------------------------------------------ observing
    def observe(
        self,
        obs: Any,
        action: Any,
        reward: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Store one transition, or one per sub-env of a vector env.

        Nothing is stored unless every argument is valid: shapes agree with the spaces,
        actions lie in the action space and rewards and observations are finite.
        """
        if not self.training:
            raise RuntimeError("observe() called in evaluation mode; call agent.train() first")
        obs_arr = as_obs_array(obs, self.observation_space, "obs")
        next_arr = as_obs_array(next_obs, self.observation_space, "next_obs")
        batch = batch_size_of_obs(obs_arr, self.observation_space, "obs")
        if batch_size_of_obs(next_arr, self.observation_space, "next_obs") != batch:
            raise ValueError(f"obs has shape {obs_arr.shape} but next_obs has shape {next_arr.shape}; they must match")
        if batch == 0:
            raise ValueError(f"obs has shape {obs_arr.shape}: an empty batch holds no transition to store")
        n = 1 if batch is None else batch
        if self.codec.batch_size_of(action) != batch:
            raise ValueError(
                f"action has shape {np.shape(action)}, which does not match obs of shape {obs_arr.shape} "
                f"(expected {'one action' if batch is None else f'a batch of {batch} actions'})"
            )
        index = self.codec.to_index(action, batch)
        rewards = self._scalars(reward, n, "reward", np.float32)
        if not np.isfinite(rewards).all():
            raise ValueError(f"reward must be finite (and within float32 range), got {reward!r}")
        term = self._scalars(terminated, n, "terminated", bool)
        trunc = self._scalars(truncated, n, "truncated", bool)
        if batch is None:
            obs_arr, next_arr = obs_arr[None], next_arr[None]
        else:
            next_arr = self._restore_final_obs(next_arr, term | trunc, info)

        keep = self._rows_to_keep(batch, term | trunc)
        rows = slice(None) if keep is None else keep
        env_ids = np.arange(n)[rows]
        self.replay.add(obs_arr[rows], index[rows], rewards[rows], next_arr[rows], term[rows], trunc[rows], env_ids)
        if batch is not None and self.autoreset_mode == "next_step":
            self._prev_done = term | trunc  # only once the transition is stored: a rejected call changes nothing
        self.env_steps += len(env_ids)

    @staticmethod
    def _scalars(value: Any, n: int, name: str, dtype: Any) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name} is not a number or a flat array of numbers ({e})") from None
        if arr.size != n or arr.ndim > 1:
            raise ValueError(f"{name} has shape {arr.shape}; expected {n} value(s) ({'a scalar' if n == 1 else f'shape ({n},)'})")
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric or bool, got dtype {arr.dtype}")
        if dtype is bool and arr.dtype.kind != "b" and not ((arr == 0) | (arr == 1)).all():
            raise ValueError(f"{name} must be a bool (or 0/1), got {value!r}")  # NaN would cast to True
        with np.errstate(over="ignore"):  # a reward too large for float32 becomes inf, which observe() refuses
            return arr.reshape(n).astype(dtype, copy=False)

    def _restore_final_obs(self, next_obs: np.ndarray, done: np.ndarray, info: dict[str, Any] | None) -> np.ndarray:
        """SAME_STEP autoreset: put the real last observation back for done rows."""
        if self.autoreset_mode != "same_step" or not done.any():
            return next_obs
        if not isinstance(info, dict) or "final_obs" not in info:
            raise ValueError(
                "autoreset_mode='same_step' and a sub-env is done, so next_obs holds its reset observation; "
                "pass info=info from envs.step() so observe() can use info['final_obs']"
            )
        next_obs, final = next_obs.copy(), info["final_obs"]
        for i in np.flatnonzero(done):  # only the few done rows; final_obs is an object array
            try:
                row = final[i]
            except (TypeError, IndexError, KeyError):
                raise ValueError(f"info['final_obs'] has no final observation for done sub-env {i}") from None
            row = as_obs_array(row, self.observation_space, f"info['final_obs'][{i}]")
            if row.shape != self.observation_space.shape:  # it would broadcast silently
                raise ValueError(f"info['final_obs'][{i}] has shape {row.shape}; expected {self.observation_space.shape}")
            next_obs[i] = row
        return next_obs

    def _rows_to_keep(self, batch: int | None, done: np.ndarray) -> np.ndarray | None:
        """NEXT_STEP autoreset: drop the reset step that follows a done step, per sub-env."""
        if batch is None or self.autoreset_mode != "next_step":
            return None
        prev = self._prev_done
        if prev is not None and len(prev) != batch:
            raise ValueError(f"observe() got a batch of {batch}, but earlier batches had {len(prev)} sub-envs")
        return None if prev is None or not prev.any() else np.flatnonzero(~prev)

    def vector_env_reset(self) -> None:
        """Call after resetting a vector env yourself (``envs.reset()``) in NEXT_STEP mode.

        The agent drops the step that follows a done step because the vector env's own
        autoreset makes it a reset step; after a manual reset no such step is pending.
        """
        self._prev_done = None

    # ------------------------------------------------------------------ learning
    def _updates_due(self) -> int:
        cfg = self.config
        start = max(cfg.learning_starts, cfg.batch_size)
        if self.env_steps < start:
            return 0
        return (self.env_steps - start) // cfg.train_freq + 1 - self.updates

    def learn(self) -> dict[str, float]:
        """Run the gradient steps now due; return the last step's metrics, or {} if none were due.

        An update is due every ``train_freq`` stored transitions once
        ``max(learning_starts, batch_size)`` transitions are stored; each update is
        ``gradient_steps`` gradient steps. Calling ``learn()`` after every ``observe()``
        therefore gives the replay ratio ``gradient_steps / train_freq``.
        """
        if not self.training:
            raise RuntimeError("learn() called in evaluation mode; call agent.train() first")
        due = self._updates_due()
        metrics: dict[str, float] = {}
        for _ in range(due):
            for _ in range(self.config.gradient_steps):
                metrics = self._gradient_step() or metrics
            self.updates += 1
        return metrics

    def _batch_tensors(self) -> tuple[torch.Tensor | None, ...]:
        cfg = self.config
        if cfg.n_step == 1:
            batch = self.replay.sample(cfg.batch_size)
        else:
            batch = self.replay.sample(cfg.batch_size, n_step=cfg.n_step, gamma=cfg.gamma)
        tensors = (None if x is None else torch.from_numpy(np.ascontiguousarray(x)) for x in batch)  # no copy on the CPU
        if self.device.type != "cuda":
            return tuple(t if t is None else t.to(self.device) for t in tensors)
        # CUDA: page-locked host memory lets the copies run asynchronously with the GPU's work.
        return tuple(t if t is None else t.pin_memory().to(self.device, non_blocking=True) for t in tensors)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return random_shift(images, self.config.shift_pad, self.augment_generator,
                            channels_last=self.augment_layout == "channels_last")

    def _gradient_step(self) -> dict[str, float] | None:
        cfg = self.config
        obs, actions, rewards, next_obs, terminated, discounts = self._batch_tensors()
        if self.augment_layout is not None:  # DrQ: obs and next_obs shifted independently
            obs, next_obs = self._augment(obs), self._augment(next_obs)
        alpha = self.alpha

        with torch.no_grad():
            if cfg.munchausen_scale > 0:  # the target networks at s_t too: one forward pass over both batches
                both = torch.cat([obs, next_obs])
                q_both = torch.minimum(self.target_nets[0](both), self.target_nets[1](both))
                q_now, next_q = q_both.split(len(obs))
            else:
                next_q = torch.minimum(self.target_nets[0](next_obs), self.target_nets[1](next_obs))
            target = soft_q.soft_td_target(
                rewards, terminated, next_q, alpha, cfg.gamma if discounts is None else discounts,
                self.mask, cfg.multidiscrete_target,
            )
            if cfg.munchausen_scale > 0:
                bonus = soft_q.munchausen_bonus(q_now, actions, alpha, cfg.munchausen_scale, cfg.munchausen_clip,
                                                self.mask)
                if cfg.multidiscrete_target == "mean":  # the branching target: one shared target per state
                    bonus = bonus.mean(dim=1, keepdim=True).expand_as(bonus)
                target = target + bonus

        q1, q2 = self.q_nets[0](obs), self.q_nets[1](obs)
        q1_taken, q2_taken = soft_q.taken_q(q1, actions), soft_q.taken_q(q2, actions)
        q_loss = soft_q.td_loss(q1_taken, target, cfg.loss) + soft_q.td_loss(q2_taken, target, cfg.loss)
        if not torch.isfinite(q_loss):
            # A non-finite loss would poison the weights and Adam's moments: drop the update.
            self.skipped_updates += 1
            warnings.warn(
                f"skipped a gradient step: the Q loss is {q_loss.item()} (not finite); "
                f"{self.skipped_updates} skipped so far. Check rewards and observations for extreme values.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        if cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q_nets.parameters(), cfg.max_grad_norm)
        self.q_optimizer.step()

        # Temperature: entropy of the acting policy softmax(min(Q1, Q2) / alpha) on the batch states.
        with torch.no_grad():
            log_pi = soft_q.boltzmann_log_policy(torch.minimum(q1, q2), alpha, self.mask)
            entropy = soft_q.policy_entropy(log_pi, self.mask)
        alpha_loss = soft_q.temperature_loss(self.log_alpha, entropy, self.entropy_target)
        if cfg.autotune_alpha:
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()

        # Target update every target_update_interval gradient steps: Polyak averaging, all parameters in one
        # fused call (tau=1 makes it DQN's hard copy).
        self.gradient_steps += 1
        if self.gradient_steps % cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._online_params, cfg.tau)
        return LearnMetrics(
            q_loss=q_loss.item(),
            alpha=self.alpha.mean().item(),
            alpha_loss=alpha_loss.item(),
            entropy=entropy.sum(dim=1).mean().item(),
            mean_q=q1_taken.detach().mean().item(),
        ).as_dict()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, include_replay: bool = False) -> Path:
        """Write a checkpoint directory atomically (see ``checkpoint.py``); returns its path.

        Always saved: config, spaces, networks, targets, temperature, optimizer states,
        counters and RNG states. ``include_replay=True`` adds the replay buffer, which
        makes a resumed run continue exactly as if it had never stopped.
        """
        from sqn_agents.checkpoint import save_agent

        return save_agent(self, path, include_replay=include_replay)

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
        ``network_factory`` when the agent was built with one.
        """
        from sqn_agents.checkpoint import load_agent

        return load_agent(
            path, device=device, network_factory=network_factory,
            observation_space=observation_space, action_space=action_space,
        )


__all__ = ["SQNAgent", "resolve_device"]
