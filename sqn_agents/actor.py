"""The actor side: the acting policy, and the intake that turns env steps into stored transitions.

In the spirit of Acme's Actor, nothing here trains anything:

* ``Actor`` acts from twin Q networks and a temperature it is given: shared with a
  ``Learner`` (``SQNAgent`` does this, so acting always sees the latest weights), or
  built from weights alone (``Actor.from_weights``), e.g. in an env worker that receives
  the learner's ``policy_weights()`` now and then.
* ``TransitionIntake`` checks what ``observe`` is given, handles a vector env's autoreset,
  and writes the transitions into a sink: anything with the replay's ``add`` signature
  (a ``Learner``, a replay buffer, or a list that is shipped to a learner elsewhere).

Single and batched use are told apart by shape: an observation of the space's shape is
one step of one env; ``(B, *shape)`` is one step of a vector env with ``B`` sub-envs.

Vector envs and autoreset. Gymnasium 1.x vector envs reset a finished sub-env on their
own, in one of two ways (``envs.metadata["autoreset_mode"]``):

* ``NEXT_STEP`` (the default): the step after a done returns the reset observation, a
  zero reward and ignores the action. That step is not a transition, so the intake
  drops the row of every sub-env whose previous observed step was done.
* ``SAME_STEP``: the done step returns the reset observation as ``next_obs`` and the real
  last observation in ``info["final_obs"]``. Pass ``info=info``; the intake puts the real
  last observation back in place for the done rows.

``DISABLED`` (you reset sub-envs yourself) needs neither.

Legal-action masks (``observations.py``): from the observation's ``"action_mask"`` entry, or
given as ``act(obs, action_mask=...)`` and ``observe(..., action_mask=..., next_action_mask=...)``
to an agent built with ``action_mask=True``. ``act`` samples and takes the argmax over legal
actions only. ``observe`` refuses a state with no legal action and an action its mask forbids;
a terminated ``next_obs`` may have none (a finished board game), and is stored with every action
legal, since nothing bootstraps from it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from sqn_agents import soft_q
from sqn_agents.checkpoint import load_generator_state
from sqn_agents.networks import NetworkFactory, build_q_network, forward_precision, resolve_device
from sqn_agents.observations import MASK_KEY, ObservationCodec, batched, no_legal_action, shape_of
from sqn_agents.replay import ObsArrays, take_obs
from sqn_agents.spaces import ActionCodec

AUTORESET_MODES = ("next_step", "same_step", "disabled")


def autoreset_name(mode: Any) -> str:
    """'next_step', 'same_step' or 'disabled' for a ``gymnasium.vector.AutoresetMode`` or such a string."""
    value = getattr(mode, "value", mode)  # AutoresetMode values are 'NextStep', ...
    if not isinstance(value, str):
        raise TypeError(f"autoreset_mode must be a str or gymnasium.vector.AutoresetMode, got {type(mode).__name__}")
    key = value.replace("_", "").lower()
    name = {m.replace("_", ""): m for m in AUTORESET_MODES}.get(key)
    if name is None:
        raise ValueError(f"autoreset_mode must be one of {AUTORESET_MODES} (or gymnasium.vector.AutoresetMode), got {mode!r}")
    return name


# ---------------------------------------------------------------------- acting
def gumbel_max_sample(log_pi: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One sample of each row's policy: ``argmax(log pi + Gumbel noise)``, ``(B, D, N) -> (B, D)``.

    The noise is finite, so an action with ``log pi = -inf`` (padded or illegal) is never drawn
    while any action of its row is possible.
    """
    u = torch.rand(log_pi.shape, generator=generator, device=log_pi.device)
    return (log_pi - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(dim=-1)


class Actor:
    """The Boltzmann policy ``softmax(min(Q1, Q2) / alpha)`` over Q networks it is given.

    ``q_nets`` (two networks mapping ``(B, *obs_shape)`` to ``(B, D, N)``) and ``log_alpha``
    are used by reference, never copied: an actor built on a learner's tensors acts with
    the learner's latest weights. Sampling uses the actor's own ``torch.Generator``, so it
    neither reads nor changes the global torch RNG. ``precision`` is ``SQNConfig.precision``: the
    networks' forward pass in ``"fp32"`` or under bfloat16 autocast (``"bf16"``).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        q_nets: Sequence[nn.Module],
        log_alpha: torch.Tensor,
        *,
        seed: int | None = None,
        action_mask: bool = False,
        mask_as_input: bool = False,
        precision: str = "fp32",
    ) -> None:
        self.codec = ActionCodec(action_space)
        self.obs_codec = ObservationCodec(observation_space, self.codec, action_mask, mask_as_input)
        self.observation_space = observation_space
        if len(q_nets) != 2:
            raise ValueError(f"q_nets must hold the two online Q networks, got {len(q_nets)}")
        self.q_nets = q_nets
        self.log_alpha = log_alpha
        self.device = log_alpha.device
        forward_precision(self.device, precision)  # refuses an unknown precision now, not at the first act
        self.precision = precision
        self.mask = None if self.codec.mask is None else torch.as_tensor(self.codec.mask, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63))

    @classmethod
    def from_weights(
        cls,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        weights: Mapping[str, torch.Tensor],
        *,
        hidden_sizes: Sequence[int] = (256, 256),
        network_factory: NetworkFactory | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        action_mask: bool = False,
        mask_as_input: bool = False,
        precision: str = "fp32",
    ) -> Actor:
        """An act-only policy from a learner's ``policy_weights()`` (no replay, optimizers or targets).

        ``hidden_sizes``, ``network_factory``, ``action_mask`` and ``mask_as_input`` must be the learner's,
        so the networks match the weights; ``precision`` may differ (the weights are float32 either way).
        """
        codec = ActionCodec(action_space)
        space = ObservationCodec(observation_space, codec, action_mask, mask_as_input).network_space
        with torch.random.fork_rng(devices=[]):  # the weights replace the initialisation: leave the global RNG alone
            q_nets = nn.ModuleList(
                [build_q_network(space, codec.action_dims, codec.num_actions, hidden_sizes, network_factory)
                 for _ in range(2)]
            )
        if "log_alpha" not in weights:
            raise ValueError(f"weights lack 'log_alpha'; expected a learner's policy_weights(), got keys {sorted(weights)[:5]}")
        device = resolve_device(device)
        log_alpha = torch.empty(tuple(weights["log_alpha"].shape), device=device)
        actor = cls(observation_space, action_space, q_nets.to(device).requires_grad_(False), log_alpha, seed=seed,
                    action_mask=action_mask, mask_as_input=mask_as_input, precision=precision)
        actor.load_weights(weights)
        return actor

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Copy ``policy_weights()`` (``q_nets.<i>.<param>`` and ``log_alpha``) into the actor's tensors, in place."""
        q_state = {k[len("q_nets."):]: v for k, v in weights.items() if k.startswith("q_nets.")}
        if "log_alpha" not in weights or tuple(weights["log_alpha"].shape) != tuple(self.log_alpha.shape):
            raise ValueError(f"weights need a 'log_alpha' of shape {tuple(self.log_alpha.shape)}")
        try:
            nn.ModuleList(self.q_nets).load_state_dict(q_state)
        except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
            raise ValueError(f"the weights do not fit the actor's Q networks: {e}") from None
        with torch.no_grad():
            self.log_alpha.copy_(weights["log_alpha"])

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def q_values(self, obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Acting Q table: the minimum of the two online networks, (B, D, N), in float32."""
        with forward_precision(self.device, self.precision):
            q = torch.minimum(self.q_nets[0](obs), self.q_nets[1](obs))
        return q.float()  # the policy's softmax in float32 (a no-op in fp32)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False, action_mask: Any = None) -> Any:
        """Action(s) for one observation or a batch: a sample of ``softmax(Q / alpha)``, or its argmax,
        over the legal actions when there is a mask (in the observation, or ``action_mask``).

        A single state with no legal action is refused. In a batch such a row is a finished sub-env of a
        vector env (NEXT_STEP autoreset ignores its action), so it gets an action of the unmasked policy.
        """
        arrays, batch = self.obs_codec.encode(obs)
        legal = self._legal_actions(arrays, action_mask, batch)
        arrays = batched(arrays) if batch is None else arrays
        mask = self.mask if legal is None else torch.as_tensor(legal, device=self.device)
        if isinstance(arrays, dict):
            x = {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items() if k != MASK_KEY}
            if self.obs_codec.mask_as_input:  # the mask acted under (a given one too) is then a network input
                x[MASK_KEY] = mask
        else:
            x = torch.as_tensor(arrays, device=self.device)
        q = self.q_values(x)
        if deterministic:
            if mask is not None:
                q = q.masked_fill(~mask, float("-inf"))
            index = q.argmax(dim=-1)
        else:
            # Gumbel-max: argmax(log pi + Gumbel noise) is a sample of pi, for all rows and dimensions at once.
            index = gumbel_max_sample(soft_q.boltzmann_log_policy(q, self.alpha, mask), self.generator)
        return self.codec.from_index(index.cpu().numpy(), batched=batch is not None)

    def _legal_actions(self, arrays: ObsArrays, action_mask: Any, batch: int | None) -> np.ndarray | None:
        """The ``(B, D, N)`` mask to act under, or None (no masks: only the padding, ``self.mask``)."""
        codec = self.obs_codec
        if action_mask is not None:
            if codec.mask_in_obs:
                raise ValueError(f"action_mask was given, but the observations hold '{MASK_KEY}' already")
            legal = codec.mask(action_mask, batch, "action_mask")
        elif codec.mask_in_obs:
            legal = arrays[MASK_KEY]
        elif codec.masked:
            raise ValueError("this agent was built with action_mask=True: pass act(obs, action_mask=...)")
        else:
            return None
        legal = legal[None] if batch is None else legal
        empty = no_legal_action(legal)
        if empty.any():
            if batch is None:
                raise ValueError("action_mask allows no action: a state needs at least one legal action per dimension")
            legal = np.where(empty[:, None, None], codec.padding, legal)
        return legal

    # --- state: the sampling generator ---------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "generator_device": self.generator.device.type}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the generator. A state from another device type (CPU vs CUDA states differ) reseeds
        the generator from it, with a warning: sampling goes on, but not bit-identically."""
        if not load_generator_state(self.generator, state["generator"], state.get("generator_device"),
                                    "action-sampling generator"):
            warnings.warn(
                f"the state was saved with a {state['generator_device']} action-sampling generator and is loaded on "
                f"{self.generator.device.type}; its state cannot move across devices, so it was reseeded from it "
                "(actions after the resume are not bit-identical to an uninterrupted run)",
                RuntimeWarning,
                stacklevel=2,
            )


# ---------------------------------------------------------------------- observing
class TransitionSink(Protocol):
    """Where the intake writes: the replay's ``add`` signature (a ``Learner`` and both replay buffers have it).

    Observations of several parts, masks included, arrive as dicts of ``(n, ...)`` arrays."""

    def add(
        self,
        obs: ObsArrays,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: ObsArrays,
        terminated: np.ndarray,
        truncated: np.ndarray,
        env_ids: np.ndarray | None = None,
    ) -> None: ...


def _scalars(value: Any, n: int, name: str, dtype: Any) -> np.ndarray:
    """``n`` rewards or flags as a flat array of ``dtype``, refusing anything that is not ``n`` numbers."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} is not a number or a flat array of numbers ({e})") from None
    if arr.size != n or arr.ndim > 1:
        raise ValueError(f"{name} has shape {arr.shape}; expected {n} value(s) ({'a scalar' if n == 1 else f'shape ({n},)'})")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric or bool, got dtype {arr.dtype}")
    if dtype is bool and arr.dtype.kind != "b" and not ((arr == 0) | (arr == 1)).all():
        raise ValueError(f"{name} must be a bool (or 0/1), got {value!r}")  # NaN would cast to True
    with np.errstate(over="ignore"):  # a reward too large for float32 becomes inf, which observe() refuses
        return arr.reshape(n).astype(dtype, copy=False)


class TransitionIntake:
    """Checks env steps, handles autoreset, and writes transitions (zero-based action indices) to ``sink``.

    Nothing reaches the sink unless every argument is valid: shapes agree with the spaces,
    actions lie in the action space and rewards and observations are finite.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        sink: TransitionSink,
        autoreset_mode: Any = "next_step",
        *,
        action_mask: bool = False,
    ) -> None:
        self.codec = ActionCodec(action_space)
        self.obs_codec = ObservationCodec(observation_space, self.codec, action_mask)
        self.observation_space = observation_space
        self.sink = sink
        self.autoreset_mode = autoreset_name(autoreset_mode)
        self.prev_done: np.ndarray | None = None  # NEXT_STEP, per sub-env: was the last observed step done?

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
    ) -> int:
        """Write one transition, or one per sub-env of a vector env; returns how many were written.

        ``action_mask`` / ``next_action_mask``: the legal actions of ``obs`` and ``next_obs`` when the
        intake was built with ``action_mask=True`` (masks in ``info``, as Taxi's)."""
        codec = self.obs_codec
        obs_arr, batch = codec.encode(obs, "obs")
        next_arr, next_batch = codec.encode(next_obs, "next_obs")
        if next_batch != batch:
            raise ValueError(f"obs has shape {shape_of(obs_arr)} but next_obs has shape {shape_of(next_arr)}; "
                             "they must match")
        if batch == 0:
            raise ValueError(f"obs has shape {shape_of(obs_arr)}: an empty batch holds no transition to store")
        obs_arr = self._with_mask(obs_arr, action_mask, batch, "action_mask")
        next_arr = self._with_mask(next_arr, next_action_mask, batch, "next_action_mask")
        n = 1 if batch is None else batch
        if self.codec.batch_size_of(action) != batch:
            raise ValueError(
                f"action has shape {np.shape(action)}, which does not match obs of shape {obs_arr.shape} "
                f"(expected {'one action' if batch is None else f'a batch of {batch} actions'})"
            )
        index = self.codec.to_index(action, batch)
        rewards = _scalars(reward, n, "reward", np.float32)
        if not np.isfinite(rewards).all():
            raise ValueError(f"reward must be finite (and within float32 range), got {reward!r}")
        term = _scalars(terminated, n, "terminated", bool)
        trunc = _scalars(truncated, n, "truncated", bool)
        if batch is None:
            obs_arr, next_arr = batched(obs_arr), batched(next_arr)
        else:
            next_arr = self._restore_final_obs(next_arr, term | trunc, info)

        keep = self._rows_to_keep(batch, term | trunc)
        rows = slice(None) if keep is None else keep
        env_ids = np.arange(n)[rows]
        obs_arr, next_arr = take_obs(obs_arr, rows), take_obs(next_arr, rows)
        if codec.masked:
            next_arr = self._checked_masks(obs_arr, index[rows], next_arr, term[rows])
        self.sink.add(obs_arr, index[rows], rewards[rows], next_arr, term[rows], trunc[rows], env_ids)
        if batch is not None and self.autoreset_mode == "next_step":
            self.prev_done = term | trunc  # only once the transition is written: a rejected call changes nothing
        return len(env_ids)

    def _with_mask(self, arrays: ObsArrays, mask: Any, batch: int | None, name: str) -> ObsArrays:
        """The observation's arrays with an explicitly given mask as its mask part."""
        if mask is not None:
            return self.obs_codec.with_mask(arrays, mask, batch, name)
        if self.obs_codec.masked and not self.obs_codec.mask_in_obs:
            raise ValueError(f"this agent was built with action_mask=True: pass {name}=... to observe()")
        return arrays

    def _checked_masks(self, obs: dict[str, np.ndarray], index: np.ndarray, next_obs: dict[str, np.ndarray],
                       terminated: np.ndarray) -> dict[str, np.ndarray]:
        """Refuse a state without legal actions or an illegal action; give a terminal next state all actions."""
        mask, next_mask = obs[MASK_KEY], next_obs[MASK_KEY]
        empty = no_legal_action(mask)
        if empty.any():
            raise ValueError(f"the action mask of obs (row {int(np.flatnonzero(empty)[0])}) allows no action; "
                             "a state acted in needs at least one legal action per dimension")
        legal = np.take_along_axis(mask, index[:, :, None], axis=2)[:, :, 0].all(axis=1)
        if not legal.all():
            row = int(np.flatnonzero(~legal)[0])
            raise ValueError(f"the action of row {row} ({self.codec.from_index(index[row:row + 1], False)!r}) "
                             "is illegal under its state's action mask")
        empty = no_legal_action(next_mask)
        if (empty & ~terminated).any():
            raise ValueError(f"the action mask of next_obs (row {int(np.flatnonzero(empty & ~terminated)[0])}) "
                             "allows no action, but the episode was not terminated there, so the target bootstraps from it")
        if empty.any():  # nothing bootstraps from a terminal state: store it with every action legal (no NaN)
            next_obs = {**next_obs, MASK_KEY: np.where(empty[:, None, None], self.obs_codec.padding, next_mask)}
        return next_obs

    def _restore_final_obs(self, next_obs: ObsArrays, done: np.ndarray, info: dict[str, Any] | None) -> ObsArrays:
        """SAME_STEP autoreset: put the real last observation back for done rows."""
        if self.autoreset_mode != "same_step" or not done.any():
            return next_obs
        if not isinstance(info, dict) or "final_obs" not in info:
            raise ValueError(
                "autoreset_mode='same_step' and a sub-env is done, so next_obs holds its reset observation; "
                "pass info=info from envs.step() so observe() can use info['final_obs']"
            )
        final = info["final_obs"]
        next_obs = {k: v.copy() for k, v in next_obs.items()} if isinstance(next_obs, dict) else next_obs.copy()
        for i in np.flatnonzero(done):  # only the few done rows; final_obs is an object array
            try:
                row = final[i]
            except (TypeError, IndexError, KeyError):
                raise ValueError(f"info['final_obs'] has no final observation for done sub-env {i}") from None
            row, row_batch = self.obs_codec.encode(row, f"info['final_obs'][{i}]")
            if row_batch is not None:  # it would broadcast silently
                raise ValueError(f"info['final_obs'][{i}] has shape {shape_of(row)}; expected one observation")
            if isinstance(next_obs, dict):
                for k, v in row.items():  # an explicitly given next_action_mask stays as given
                    next_obs[k][i] = v
            else:
                next_obs[i] = row
        return next_obs

    def _rows_to_keep(self, batch: int | None, done: np.ndarray) -> np.ndarray | None:
        """NEXT_STEP autoreset: drop the reset step that follows a done step, per sub-env."""
        if batch is None or self.autoreset_mode != "next_step":
            return None
        prev = self.prev_done
        if prev is not None and len(prev) != batch:
            raise ValueError(f"observe() got a batch of {batch}, but earlier batches had {len(prev)} sub-envs")
        return None if prev is None or not prev.any() else np.flatnonzero(~prev)

    def reset(self) -> None:
        """After a manual ``envs.reset()`` no autoreset step is pending (see ``SQNAgent.vector_env_reset``)."""
        self.prev_done = None

    # --- state: the pending autoreset ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"prev_done": None if self.prev_done is None else self.prev_done.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        prev_done = state.get("prev_done")
        if prev_done is not None and not (isinstance(prev_done, list) and all(isinstance(x, bool) for x in prev_done)):
            raise ValueError(f"'prev_done' is {prev_done!r:.200}, expected a list of bools or null")
        self.prev_done = None if prev_done is None else np.array(prev_done, dtype=bool)


__all__ = ["AUTORESET_MODES", "Actor", "gumbel_max_sample", "TransitionIntake", "TransitionSink", "autoreset_name"]
