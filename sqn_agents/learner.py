"""The learner side: replay, twin Q networks and their targets, the temperature, optimizers and the update schedule.

In the spirit of Acme's Learner: it receives transitions through ``add`` (the replay's
signature, so a ``TransitionIntake`` can write into it directly, or a remote actor's
transitions can be added in batches), decides when updates are due from the number of
transitions received, and runs gradient steps. The math is in ``soft_q.py``; the whole
update is ``gradient_step``, top to bottom.

The schedule: nothing happens before ``max(learning_starts, batch_size)`` transitions have
arrived; then an update of ``gradient_steps`` gradient steps is due every ``train_freq``
transitions. ``learn()`` runs every update due, so calling it after each ``add`` gives
the replay ratio ``gradient_steps / train_freq``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from sqn_agents import soft_q
from sqn_agents.augment import random_shift
from sqn_agents.checkpoint import check_tensors, checked_optimizer_state, load_generator_state
from sqn_agents.config import SQNConfig
from sqn_agents.layout import observation_layout
from sqn_agents.metrics import LearnMetrics
from sqn_agents.networks import NetworkFactory, build_q_network, forward_precision, resolve_device
from sqn_agents.observations import MASK_KEY, ObservationCodec
from sqn_agents.replay import ObsArrays, Replay, ReplayBuffer
from sqn_agents.spaces import ActionCodec


def make_replay(config: SQNConfig, observation_space: gym.spaces.Space, action_dims: int, seed: int | None,
                obs_codec: ObservationCodec | None = None, device: torch.device | None = None) -> Replay:
    """The buffer ``config.replay`` asks for: ``"auto"`` picks the frame-deduplicated one for frame stacks.

    Observations of several parts (``obs_codec`` not flat) are stored as named arrays; when exactly one
    part is a frame stack, ``"auto"`` and ``"frame_stack"`` deduplicate its frames and store the other
    parts per row. With several frame-stack parts none is deduplicated (``"auto"`` stores them whole, and
    ``"frame_stack"`` is refused): which one to favour would be a guess. With ``config.replay_on_device``
    the observations are stored on ``device`` (the learner's; None: the CPU).
    """
    space, kind = observation_space, config.replay
    device = (device or torch.device("cpu")) if config.replay_on_device else None
    if obs_codec is not None and not obs_codec.flat:
        stacks = frame_stack_parts(obs_codec)
        if kind == "frame_stack" and len(stacks) != 1:
            raise ValueError(
                f"replay='frame_stack' deduplicates one part of channels-first uint8 frame stacks, but the "
                f"observations have {len(stacks)} such parts ({stacks}) among {[p.name for p in obs_codec.parts]}; "
                "use replay='uniform' or 'auto'")
        if kind in ("frame_stack", "auto") and len(stacks) == 1:
            from sqn_agents.frame_replay import FrameStackReplayBuffer  # only image agents pay for the import

            return FrameStackReplayBuffer(config.buffer_size, obs_codec.storage_shape, obs_codec.storage_dtype,
                                          action_dims, seed=seed, frame_part=stacks[0], device=device)
        return ReplayBuffer(config.buffer_size, obs_codec.storage_shape, obs_codec.storage_dtype, action_dims, seed=seed,
                            device=device)
    frame_stack = observation_layout(space.shape, space.dtype).frame_stack
    if kind == "frame_stack" and not frame_stack:
        raise ValueError(
            f"replay='frame_stack' needs channels-first uint8 frame stacks, got observations "
            f"of shape {space.shape} and dtype {space.dtype}; use replay='uniform'"
        )
    if kind == "frame_stack" or (kind == "auto" and frame_stack):
        from sqn_agents.frame_replay import FrameStackReplayBuffer  # only image agents pay for the import

        return FrameStackReplayBuffer(config.buffer_size, space.shape, space.dtype, action_dims, seed=seed, device=device)
    return ReplayBuffer(config.buffer_size, space.shape, space.dtype, action_dims, seed=seed, device=device)


def frame_stack_parts(obs_codec: ObservationCodec) -> list[str]:
    """The names of the parts that are frame stacks (``layout.observation_layout``), in the parts' order."""
    return [p.name for p in obs_codec.parts
            if isinstance(p.space, gym.spaces.Box) and observation_layout(p.shape, p.dtype).frame_stack]


def _map_parts(fn: Any, *values: Any) -> Any:
    """``fn`` applied to arrays, part by part to dicts of parts, and None left as None."""
    if values[0] is None:
        return None
    if isinstance(values[0], dict):
        return {k: fn(*(v[k] for v in values)) for k in values[0]}
    return fn(*values)


class PinnedStaging:
    """Host-to-device copies of sampled batches through reusable page-locked buffers (for CUDA).

    Copies from page-locked memory run asynchronously with the GPU's work. Two sets of buffers are
    filled in turn, and a set is refilled only after the event recorded behind its last copies has
    passed: the host runs at most two batches ahead of the GPU and never overwrites a buffer still
    being read. A batch is a tuple of arrays, dicts of part arrays (observations of several parts) or None.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: list[dict[tuple[int, str], torch.Tensor]] = [{}, {}]
        self.copied: list[Any] = [None, None]  # torch.cuda.Event behind each set's last copies
        self.turn = 0

    def to_device(self, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
        i, self.turn = self.turn, 1 - self.turn
        if self.copied[i] is not None:
            self.copied[i].synchronize()  # waits only when the GPU is two batches behind
        out = []
        for slot, x in enumerate(arrays):
            if isinstance(x, dict):
                out.append({name: self._copy(i, (slot, name), part) for name, part in x.items()})
            else:
                out.append(None if x is None else self._copy(i, (slot, ""), x))
        self.copied[i] = torch.cuda.Event()
        self.copied[i].record()
        return tuple(out)

    def _copy(self, i: int, key: tuple[int, str], x: np.ndarray) -> torch.Tensor:
        source = torch.from_numpy(np.ascontiguousarray(x))
        buffer = self.buffers[i].get(key)
        if buffer is None or buffer.shape != source.shape or buffer.dtype != source.dtype:
            buffer = self.buffers[i][key] = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
        buffer.copy_(source)
        return buffer.to(self.device, non_blocking=True)


@dataclass
class LearnerCounters:
    """Everything the learner counts; saved and restored as a whole."""

    env_steps: int = 0
    """Transitions received through ``add`` (the update schedule's clock)."""
    updates: int = 0
    """Updates done; each is ``config.gradient_steps`` gradient steps."""
    gradient_steps: int = 0
    """Gradient steps run, skipped ones included (``Learner.skipped_updates`` counts those, on the device)."""


class Learner:
    """Discrete soft Q-learning with twin Q networks, Polyak targets and a learned temperature."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        config: SQNConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        network_factory: NetworkFactory | None = None,
        action_mask: bool = False,
        mask_as_input: bool = False,
    ) -> None:
        """``action_mask=True``: legal-action masks come with the transitions though the observation space
        has no ``"action_mask"`` entry (see ``observations.py``). ``mask_as_input=True``: the networks also
        see the mask, as one more input part (it masks the policy and the targets either way)."""
        self.config = cfg = config if config is not None else SQNConfig()
        if not isinstance(cfg, SQNConfig):
            raise TypeError(f"config must be an SQNConfig, got {type(cfg).__name__}")
        self.codec = ActionCodec(action_space)
        self.obs_codec = ObservationCodec(observation_space, self.codec, action_mask, mask_as_input)
        self.observation_space = observation_space
        self.device = resolve_device(device)

        # Twin online Q networks (their initialisation runs on a forked RNG, so the global torch RNG
        # is neither read nor changed), and their Polyak-averaged targets (never trained directly).
        dims, n = self.codec.action_dims, self.codec.num_actions
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.q_nets = nn.ModuleList(
                [build_q_network(self.obs_codec.network_space, dims, n, cfg.hidden_sizes, network_factory)
                 for _ in range(2)]
            ).to(self.device)
        self.target_nets = copy.deepcopy(self.q_nets).requires_grad_(False)
        # Parameter lists for the fused Polyak update, built once rather than on every gradient step.
        self._online_params = list(self.q_nets.parameters())
        self._target_params = list(self.target_nets.parameters())
        # Fused Adam: one kernel per step, and it can skip a step on the device (see gradient_step).
        self.q_optimizer = torch.optim.Adam(self.q_nets.parameters(), lr=cfg.learning_rate, fused=True)

        # Temperature, learned in log space so it stays positive: one shared, or one per dimension.
        n_alpha = 1 if (cfg.shared_alpha or dims == 1) else dims
        self.log_alpha = torch.full((n_alpha,), math.log(cfg.initial_alpha), device=self.device, requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_learning_rate, fused=True)
        self.entropy_target = soft_q.target_entropy(self.codec.sizes.tolist(), cfg.target_entropy_ratio).to(self.device)
        self.mask = None if self.codec.mask is None else torch.as_tensor(self.codec.mask, device=self.device)

        # Random shifts of sampled images (augmentation='shift') draw from their own generator.
        space = self.observation_space
        self.augment_layout = None
        if cfg.augmentation == "shift":
            if self.obs_codec.flat:
                self.augment_layout = observation_layout(space.shape, space.dtype).image
            if self.augment_layout is None:
                raise ValueError(f"augmentation='shift' needs image observations (H, W, C) or (C, H, W) in one Box, "
                                 f"got {space}")
        self.augment_generator = torch.Generator(device=self.device)
        self.augment_generator.manual_seed((seed if seed is not None else int(np.random.SeedSequence().entropy % 2**62)) + 1)

        self.replay = make_replay(cfg, self.observation_space, dims, seed, self.obs_codec, self.device)
        self.counters = LearnerCounters()
        # Steps skipped for a non-finite loss, counted on the device so that no step waits to read its loss;
        # skipped_updates reads it (and warns about new skips), and so does the first read of a step's metrics.
        self._skipped = torch.zeros((), dtype=torch.int64, device=self.device)
        self._skipped_reported = 0
        self._staging = PinnedStaging(self.device) if self.device.type == "cuda" and not cfg.replay_on_device else None

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    @property
    def skipped_updates(self) -> int:
        """Gradient steps skipped because their loss was not finite. Reading it waits for the device, and
        raises a ``RuntimeWarning`` when steps were skipped since the last read."""
        return self._report_skipped(stacklevel=3)

    def _report_skipped(self, stacklevel: int = 4) -> int:
        """Read the device's skip count; warn about new skips (``stacklevel`` 4: the reader of a metric)."""
        skipped = int(self._skipped)
        if skipped > self._skipped_reported:
            warnings.warn(
                f"skipped {skipped - self._skipped_reported} gradient step(s) (the Q loss was not finite); "
                f"{skipped} skipped so far. Check rewards and observations for extreme values.",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
            self._skipped_reported = skipped
        return skipped

    def policy_weights(self) -> dict[str, torch.Tensor]:
        """What an ``Actor`` needs to act (``Actor.from_weights`` / ``load_weights``): CPU copies of the
        online networks and ``log_alpha``."""
        weights = {f"q_nets.{k}": v.detach().cpu().clone() for k, v in self.q_nets.state_dict().items()}
        weights["log_alpha"] = self.log_alpha.detach().cpu().clone()
        return weights

    # ------------------------------------------------------------------ receiving
    def add(
        self,
        obs: ObsArrays,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: ObsArrays,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray | None = None,
    ) -> None:
        """Store checked transitions (zero-based ``(n, D)`` action indices) and advance the schedule's clock.

        Observations are arrays, or dicts of part arrays (with the masks) as ``TransitionIntake`` makes them."""
        self.replay.add(obs, actions, rewards, next_obs, terminated, truncated, env_ids)
        self.counters.env_steps += len(rewards)

    # ------------------------------------------------------------------ the schedule
    def updates_due(self) -> int:
        """Updates the schedule asks for now that ``counters.env_steps`` transitions have arrived."""
        cfg, c = self.config, self.counters
        start = max(cfg.learning_starts, cfg.batch_size)
        if c.env_steps < start:
            return 0
        return (c.env_steps - start) // cfg.train_freq + 1 - c.updates

    def learn(self) -> LearnMetrics | None:
        """Run every update due; the last gradient step's metrics, or None when nothing was due."""
        metrics = None
        for _ in range(self.updates_due()):
            for _ in range(self.config.gradient_steps):
                metrics = self.gradient_step()
            self.counters.updates += 1
        return metrics

    # ------------------------------------------------------------------ one gradient step
    def _batch_tensors(self) -> tuple[Any, ...]:
        cfg = self.config
        if cfg.n_step == 1:
            batch = self.replay.sample(cfg.batch_size)
        else:
            batch = self.replay.sample(cfg.batch_size, n_step=cfg.n_step, gamma=cfg.gamma, intermediate=cfg.soft_n_step)
        if cfg.replay_on_device:  # sampled on the device already
            return tuple(batch)
        if self._staging is not None:  # CUDA: through reusable page-locked buffers, asynchronously
            return self._staging.to_device(batch)
        # no copy on the CPU
        return tuple(_map_parts(lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(self.device), x) for x in batch)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return random_shift(images, self.config.shift_pad, self.augment_generator,
                            channels_last=self.augment_layout == "channels_last")

    def gradient_step(self) -> LearnMetrics:
        """One gradient step on a sampled batch: TD loss of both Q networks, temperature, target networks.

        Nothing here waits for the device: the metrics stay on it until read. When the loss is not
        finite the step changes nothing but the counters (``gradient_steps``, and ``skipped_updates``
        on the device) and the replay sampler's position.
        """
        cfg = self.config
        obs, actions, rewards, next_obs, terminated, discounts, mid_obs, mid_discounts = self._batch_tensors()
        if self.augment_layout is not None:  # DrQ: obs and next_obs shifted independently
            obs, next_obs = self._augment(obs), self._augment(next_obs)
            if mid_obs is not None:
                mid_obs = self._augment(mid_obs.flatten(0, 1)).reshape(mid_obs.shape)
        alpha = self.alpha
        # Legal-action masks (B, D, N) ride with the observations; without them, the padding mask (D, N) or None.
        mask, next_mask = (obs[MASK_KEY], next_obs[MASK_KEY]) if self.obs_codec.masked else (self.mask, self.mask)

        # The networks run in cfg.precision (bf16: under autocast); every Q table is cast to float32 (.float(),
        # a no-op in fp32) before the soft-Q math, so targets, losses and the temperature are float32.
        with torch.no_grad():
            with forward_precision(self.device, cfg.precision):
                if cfg.munchausen_scale > 0:  # the target networks at s_t too: one forward pass over both batches
                    both = _map_parts(lambda a, b: torch.cat([a, b]), obs, next_obs)
                    q_both = torch.minimum(self.target_nets[0](both), self.target_nets[1](both)).float()
                    q_now, next_q = q_both.split(len(actions))
                else:
                    next_q = torch.minimum(self.target_nets[0](next_obs), self.target_nets[1](next_obs)).float()
            target = soft_q.soft_td_target(
                rewards, terminated, next_q, alpha, cfg.gamma if discounts is None else discounts,
                next_mask, cfg.multidiscrete_target,
            )
            if cfg.munchausen_scale > 0:
                bonus = soft_q.munchausen_bonus(q_now, actions, alpha, cfg.munchausen_scale, cfg.munchausen_clip, mask)
                if cfg.multidiscrete_target == "mean":  # the branching target: one shared target per state
                    bonus = bonus.mean(dim=1, keepdim=True).expand_as(bonus)
                target = target + bonus
            if mid_obs is not None:  # soft n-step: the entropy bonus of the states on the way
                flat = _map_parts(lambda t: t.flatten(0, 1), mid_obs)
                with forward_precision(self.device, cfg.precision):
                    q_mid = torch.minimum(self.target_nets[0](flat), self.target_nets[1](flat)).float()
                mid_mask = flat[MASK_KEY] if self.obs_codec.masked else self.mask  # (B * K, D, N), as q_mid
                target = target + soft_q.intermediate_entropy_bonus(
                    q_mid.view(*mid_discounts.shape, *q_mid.shape[1:]), alpha, mid_discounts, mid_mask)

        with forward_precision(self.device, cfg.precision):  # the backward pass follows the forward's dtypes
            q1, q2 = self.q_nets[0](obs), self.q_nets[1](obs)
        q1, q2 = q1.float(), q2.float()
        q1_taken, q2_taken = soft_q.taken_q(q1, actions), soft_q.taken_q(q2, actions)
        q_loss = soft_q.td_loss(q1_taken, target, cfg.loss) + soft_q.td_loss(q2_taken, target, cfg.loss)
        # A non-finite loss would poison the weights and Adam's moments. Testing it on the host would make every
        # step wait for the device, so the test stays there: found_inf is 1.0 when the loss is not finite, and
        # then both fused Adam steps skip themselves (torch's fused Adam honours an optimizer's found_inf, as
        # GradScaler uses it), the target update's weight is 0, and _skipped counts the step.
        not_finite = q_loss.isfinite().logical_not()
        found_inf = not_finite.float()
        self._skipped.add_(not_finite)
        self.q_optimizer.found_inf = self.alpha_optimizer.found_inf = found_inf
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        if cfg.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q_nets.parameters(), cfg.max_grad_norm)
        self.q_optimizer.step()

        # Temperature: entropy of the acting policy softmax(min(Q1, Q2) / alpha) on the batch states, against a
        # target that follows each state's number of legal actions when there are masks (soft_q.py's decision).
        with torch.no_grad():
            log_pi = soft_q.boltzmann_log_policy(torch.minimum(q1, q2), alpha, mask)
            entropy = soft_q.policy_entropy(log_pi, mask)
            entropy_target = (soft_q.masked_target_entropy(mask, cfg.target_entropy_ratio)
                              if self.obs_codec.masked else self.entropy_target)
        alpha_loss = soft_q.temperature_loss(self.log_alpha, entropy, entropy_target)
        if cfg.autotune_alpha:
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()

        # Target update every target_update_interval gradient steps (skipped ones count): Polyak averaging, all
        # parameters in one fused call (tau=1 makes it DQN's hard copy); a skipped step's weight is 0.
        self.counters.gradient_steps += 1
        if self.counters.gradient_steps % cfg.target_update_interval == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._online_params, cfg.tau * (1.0 - found_inf))
        return LearnMetrics(
            {
                "q_loss": q_loss.detach(),
                "alpha": self.alpha.mean(),
                "alpha_loss": alpha_loss.detach(),
                "entropy": entropy.sum(dim=1).mean(),
                "mean_q": q1_taken.detach().mean(),
            },
            on_read=self._report_skipped,
        )

    # ------------------------------------------------------------------ state
    def state_dict(self, include_replay: bool = False) -> dict[str, Any]:
        """Counters, networks, temperature, optimizers and the replay sampler's RNG; the replay's
        contents too with ``include_replay``. Tensors are the live ones: copy them to keep a snapshot."""
        state: dict[str, Any] = {
            "counters": {**dataclasses.asdict(self.counters), "skipped_updates": int(self._skipped)},
            "q_nets": self.q_nets.state_dict(),
            "target_nets": self.target_nets.state_dict(),
            "log_alpha": self.log_alpha.detach(),
            "q_optimizer": self.q_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "replay_rng": self.replay.rng.bit_generator.state,
            "augment_generator": self.augment_generator.get_state(),
            "augment_generator_device": self.augment_generator.device.type,
        }
        if include_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict``, after checking every name, shape, dtype and value range against this
        learner (a ValueError changes nothing). Without a ``"replay"`` entry the replay is left as it is."""
        counters, saved = {}, state.get("counters")
        for name in (*(f.name for f in dataclasses.fields(LearnerCounters)), "skipped_updates"):
            value = saved.get(name) if isinstance(saved, Mapping) else None
            if type(value) is not int or value < 0:
                raise ValueError(f"counter '{name}' is {value!r}, expected an integer >= 0")
            counters[name] = value
        for name, module in (("q_nets", self.q_nets), ("target_nets", self.target_nets)):
            check_tensors(f"({name})", module.state_dict(), state[name])
        check_tensors("(temperature)", {"log_alpha": self.log_alpha.detach()}, {"log_alpha": state["log_alpha"]})
        q_opt = checked_optimizer_state(self.q_optimizer, "q_optimizer", state["q_optimizer"])
        alpha_opt = checked_optimizer_state(self.alpha_optimizer, "alpha_optimizer", state["alpha_optimizer"])
        scratch = copy.deepcopy(self.replay.rng)
        try:
            scratch.bit_generator.state = state["replay_rng"]  # numpy checks it; the real RNG changes only if it passes
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"inconsistent RNG or replay state: numpy refused the replay sampler's state ({e!r})") from None
        augment = None
        if "augment_generator" in state:  # (absent in states saved before the augmentation option)
            augment = torch.Generator(device=self.device)
            load_generator_state(augment, state["augment_generator"], state.get("augment_generator_device"),
                                 "augmentation generator")
        replay = self.replay
        if "replay" in state:
            replay = self._replay_for(state["replay"])
            replay.load_state_dict(self._checked_replay_state(replay, state["replay"]))  # checks its layout, then writes

        for name, module in (("q_nets", self.q_nets), ("target_nets", self.target_nets)):
            module.load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.q_optimizer.load_state_dict(q_opt)
        self.alpha_optimizer.load_state_dict(alpha_opt)
        self.replay = replay
        self.replay.rng.bit_generator.state = scratch.bit_generator.state
        if augment is not None:
            self.augment_generator.set_state(augment.get_state())
        skipped = counters.pop("skipped_updates")
        self._skipped.fill_(skipped)
        self._skipped_reported = skipped
        self.counters = LearnerCounters(**counters)

    def _replay_for(self, saved: Mapping[str, Any]) -> Replay:
        """The buffer to load a saved replay state into: this learner's, or a fresh ``ReplayBuffer`` for the
        state of one saved before the frame part of a Dict observation was deduplicated (that state holds
        the part whole, ``obs.<part>``, and no ``frames``), so that such a checkpoint still resumes exactly."""
        part = getattr(self.replay, "frame_part", None)
        if part is None or "frames" in saved or f"obs.{part}" not in saved:
            return self.replay
        return ReplayBuffer(self.config.buffer_size, self.obs_codec.storage_shape, self.obs_codec.storage_dtype,
                            self.codec.action_dims)

    def _checked_replay_state(self, replay: Replay, saved: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Replay arrays checked against ``replay``: names, dtypes, item shapes, values, action ranges.
        The buffer's own ``load_state_dict`` then checks its layout (ring position, frame ids, ...)."""
        arrays = {k: np.asarray(v) for k, v in saved.items()}
        reference = {k: np.asarray(v) for k, v in replay.state_dict().items()}
        missing = sorted(set(reference) - set(arrays) - set(replay.optional_state))
        if missing:
            raise ValueError(f"lacks replay arrays {missing}")
        for name, ref in reference.items():
            if name not in arrays:  # optional: saved by an earlier version, the buffer fills it in
                continue
            arr = arrays[name]
            if arr.dtype != ref.dtype or arr.ndim != ref.ndim or arr.shape[1:] != ref.shape[1:]:
                shape = "a scalar" if ref.ndim == 0 else f"shape (n, {', '.join(map(str, ref.shape[1:]))})"
                raise ValueError(
                    f"replay array '{name}' has shape {arr.shape} and dtype {arr.dtype}, expected {shape} of dtype {ref.dtype}"
                )
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"replay array '{name}' contains NaN or infinity")
            if name in ("terminated", "truncated") and not ((arr == 0) | (arr == 1)).all():
                raise ValueError(f"replay array '{name}' holds values other than 0 and 1")
        actions = arrays["actions"]
        if actions.ndim == 2 and actions.size and ((actions < 0).any() or (actions >= self.codec.sizes).any()):
            raise ValueError(f"replay holds action indices outside the action space {self.codec.space}")
        return {name: arrays[name] for name in reference if name in arrays}


__all__ = ["Learner", "LearnerCounters", "PinnedStaging", "make_replay"]
