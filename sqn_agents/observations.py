"""Observations of every supported space as the arrays the agent stores and feeds to its networks.

A ``Box`` observation is one array, as it always was (``ObservationCodec.flat``). Every other
space (``Discrete``, ``MultiDiscrete``, ``MultiBinary``, and ``Dict`` / ``Tuple`` of these and
of ``Box``) becomes a dict of named *parts*, one array per leaf of the space, each in a compact
dtype of its own (a uint8 image stays uint8; a ``Discrete`` value is one zero-based int64
index, one-hot encoded only on the device by ``networks.py``). Nested names are joined with a
dot: ``Dict(pos=Tuple(Discrete(3), Discrete(4)))`` has the parts ``pos.0`` and ``pos.1``.

Legal-action masks follow PettingZoo and Gymnasium: the ``"action_mask"`` entry of a ``Dict``
observation is the mask, or the env gives it elsewhere (Taxi's ``info["action_mask"]``) and the
agent is built with ``action_mask=True`` and passed masks explicitly. Either way it is stored
as the part ``"action_mask"``: ``(D, N)`` bool, True for a legal action, already combined with
the padding of a ``MultiDiscrete`` action space (``spaces.ActionCodec.mask``). It rides with
the observation through the replay, so the mask of ``next_obs`` is always that of the
bootstrap state, n-step returns included, and it is never fed to the networks.

A mask may be given as ``(N,)`` for a ``Discrete(N)`` action space (``MultiBinary(N)``), as the
padded ``(D, N)`` table, as the ``sum(nvec)`` per-component masks concatenated, or as a tuple of
``D`` per-component arrays; each with a leading batch axis for a vector env.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from sqn_agents.spaces import ActionCodec, as_obs_array, batch_size_of_obs

MASK_KEY = "action_mask"
LEAF_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


@dataclass(frozen=True)
class Part:
    """One leaf of an observation space, and how it is stored."""

    name: str
    space: gym.spaces.Space
    shape: tuple[int, ...]
    dtype: np.dtype


def _part(name: str, space: gym.spaces.Space) -> Part:
    if isinstance(space, gym.spaces.Box):
        return Part(name, space, tuple(space.shape), np.dtype(space.dtype))
    if isinstance(space, gym.spaces.Discrete):
        return Part(name, space, (), np.dtype(np.int64))  # the zero-based index
    if isinstance(space, gym.spaces.MultiDiscrete):
        return Part(name, space, tuple(space.nvec.shape), np.dtype(np.int64))  # zero-based, per component
    return Part(name, space, tuple(space.shape), np.dtype(np.int8))  # MultiBinary: 0 or 1


def _leaves(space: gym.spaces.Space, prefix: str) -> list[Part]:
    if isinstance(space, LEAF_SPACES):
        return [_part(prefix, space)]
    if isinstance(space, gym.spaces.Dict):
        items = space.spaces.items()
    elif isinstance(space, gym.spaces.Tuple):
        items = ((str(i), s) for i, s in enumerate(space.spaces))
    else:
        raise TypeError(
            f"observation_space part {prefix or '(top)'} is {space!r}; expected gymnasium.spaces.Box, Discrete, "
            "MultiDiscrete, MultiBinary, or a Dict / Tuple of these"
        )
    parts = [p for key, sub in items for p in _leaves(sub, f"{prefix}.{key}" if prefix else key)]
    if not parts:
        raise ValueError(f"observation_space {space!r} has no parts")
    return parts


def _integers(value: Any, name: str) -> np.ndarray:
    """An integer array; floats holding whole numbers pass, as for actions (TypeError for other dtypes)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} is not a rectangular array of numbers ({e})") from None
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            if not (np.isfinite(arr).all() and (np.mod(arr, 1) == 0).all()):
                raise ValueError(f"{name} must hold whole numbers, got {value!r:.200}")
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected integers")
    return arr.astype(np.int64)


def _batch_of(shape: tuple[int, ...], single: tuple[int, ...], name: str) -> int | None:
    if shape == single:
        return None
    if len(shape) == len(single) + 1 and shape[1:] == single:
        return shape[0]
    raise ValueError(f"{name} has shape {shape}; expected {single} for one observation or (batch, *{single}) for a batch")


def encode_part(part: Part, value: Any, name: str) -> tuple[np.ndarray, int | None]:
    """One leaf's value(s) as the stored array, with its batch size (None for a single observation)."""
    space = part.space
    if isinstance(space, gym.spaces.Box):
        arr = as_obs_array(value, space, name)
        return arr, batch_size_of_obs(arr, space, name)
    arr = _integers(value, name)
    batch = _batch_of(arr.shape, part.shape, name)
    if isinstance(space, gym.spaces.MultiBinary):
        if arr.size and not ((arr == 0) | (arr == 1)).all():
            raise ValueError(f"{name} must hold only 0 and 1 for {space}")
        return arr.astype(part.dtype), batch
    start = space.start
    n = space.n if isinstance(space, gym.spaces.Discrete) else space.nvec
    index = arr - start
    if ((index < 0) | (index >= n)).any():
        raise ValueError(f"{name} holds {value!r:.200}, outside {space}")
    return index, batch


class ObservationCodec:
    """Checks observations of one space and turns them into stored arrays; extracts the legal-action mask.

    ``flat``: a ``Box`` space without masks, whose observations are one array (no dict).
    Otherwise ``parts`` lists the stored parts (the mask last, as ``MASK_KEY``) and
    ``network_space`` is the ``gym.spaces.Dict`` of the parts the networks see: the mask is one of
    them only with ``mask_as_input`` (a ``MultiBinary((D, N))`` part, flattened to floats by its torso).
    """

    def __init__(self, space: gym.spaces.Space, action_codec: ActionCodec, action_mask: bool = False,
                 mask_as_input: bool = False) -> None:
        if not isinstance(mask_as_input, (bool, np.bool_)):
            raise TypeError(f"mask_as_input must be a bool, got {type(mask_as_input).__name__} {mask_as_input!r}")
        if not isinstance(space, (*LEAF_SPACES, gym.spaces.Dict, gym.spaces.Tuple)):
            raise TypeError(
                f"observation_space must be gymnasium.spaces.Box, Discrete, MultiDiscrete, MultiBinary, or a Dict / "
                f"Tuple of these, got {space!r}"
            )
        self.space = space
        self.action_codec = action_codec
        self.mask_in_obs = isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces
        if self.mask_in_obs and action_mask:
            raise ValueError(f"the observation space already has an '{MASK_KEY}' entry; do not also pass action_mask=True")
        self.masked = self.mask_in_obs or action_mask
        if mask_as_input and not self.masked:
            raise ValueError(f"mask_as_input=True feeds the legal-action mask to the networks, but there is none: give "
                             f"the observation space an '{MASK_KEY}' entry or build the agent with action_mask=True")
        self.mask_as_input = bool(mask_as_input)
        self.flat = isinstance(space, gym.spaces.Box) and not self.masked
        dims, n = action_codec.action_dims, action_codec.num_actions
        self.mask_shape = (dims, n)
        self.padding = np.ones((dims, n), bool) if action_codec.mask is None else action_codec.mask
        # where each real action of the concatenated per-component masks sits in the (D, N) table
        self.flat_index = np.flatnonzero(self.padding.ravel())
        if self.mask_in_obs:
            self._check_mask_space(space.spaces[MASK_KEY])
        if self.flat:
            self.parts: tuple[Part, ...] = ()
            self.network_space: gym.spaces.Space = space
            return
        if isinstance(space, gym.spaces.Dict):
            inputs = [_leaves(s, k) for k, s in space.spaces.items() if not (self.mask_in_obs and k == MASK_KEY)]
            leaves = [p for group in inputs for p in group]
        elif isinstance(space, gym.spaces.Box):
            leaves = [_part("obs", space)]  # a Box with masks given explicitly
        else:
            leaves = _leaves(space, "")
            if len(leaves) == 1 and leaves[0].name == "":
                leaves = [_part("obs", space)]
        if not leaves:
            raise ValueError(f"observation_space {space!r} has no parts (besides a mask) to feed the networks")
        if any(p.name == MASK_KEY for p in leaves):
            raise ValueError(f"an observation part is named '{MASK_KEY}', which is reserved for the legal-action mask")
        self.inputs = tuple(leaves)
        mask = (Part(MASK_KEY, gym.spaces.MultiBinary(list(self.mask_shape)), self.mask_shape, np.dtype(bool)),)
        self.parts = self.inputs + (mask if self.masked else ())
        fed = self.inputs + (mask if self.mask_as_input else ())
        self.network_space = gym.spaces.Dict({p.name: p.space for p in fed})

    # ------------------------------------------------------------------ storage layout
    @property
    def storage_shape(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        """``obs_shape`` for the replay: the space's shape, or one shape per part."""
        return tuple(self.space.shape) if self.flat else {p.name: p.shape for p in self.parts}

    @property
    def storage_dtype(self) -> np.dtype | dict[str, np.dtype]:
        return np.dtype(self.space.dtype) if self.flat else {p.name: p.dtype for p in self.parts}

    def _check_mask_space(self, mask_space: gym.spaces.Space) -> None:
        sizes = self.action_codec.sizes
        if isinstance(mask_space, gym.spaces.Tuple):
            shapes = [tuple(s.shape) for s in mask_space.spaces]
            if shapes == [(int(n),) for n in sizes]:
                return
        elif tuple(mask_space.shape or ()) in (self.mask_shape, (int(sizes.sum()),)):
            return
        raise ValueError(
            f"the observation's '{MASK_KEY}' space is {mask_space!r}; expected MultiBinary({int(sizes.sum())}) (one flag "
            f"per action, per component concatenated), shape {self.mask_shape} (padded) or a Tuple of MultiBinary(n_d) "
            f"for the action space {self.action_codec.space}"
        )

    # ------------------------------------------------------------------ observations
    def encode(self, obs: Any, name: str = "obs") -> tuple[np.ndarray | dict[str, np.ndarray], int | None]:
        """Check ``obs`` and return (arrays, batch): one array or a dict of part arrays, and the batch size
        (None for a single observation, whose arrays then have no batch axis: see ``batched``).

        The mask part is included only when the observation holds it (``mask_in_obs``); a mask given
        explicitly is added by ``with_mask``.
        """
        if self.flat:
            arr = as_obs_array(obs, self.space, name)
            return arr, batch_size_of_obs(arr, self.space, name)
        values = self._leaf_values(obs, name)
        arrays, batches = {}, {}
        for part in self.inputs:
            arrays[part.name], batches[part.name] = encode_part(part, values[part.name], f"{name}[{part.name!r}]")
        batch = next(iter(batches.values()))
        if any(b != batch for b in batches.values()):
            raise ValueError(f"the parts of {name} disagree about the batch size: {batches}")
        if self.mask_in_obs:
            arrays[MASK_KEY] = self.mask(values[MASK_KEY], batch, f"{name}[{MASK_KEY!r}]")
        return arrays, batch

    def _leaf_values(self, obs: Any, name: str) -> dict[str, Any]:
        """The value of every leaf (and of the mask), by part name."""
        if isinstance(self.space, LEAF_SPACES):
            return {"obs": obs}
        out: dict[str, Any] = {}

        def walk(space: gym.spaces.Space, value: Any, prefix: str) -> None:
            if isinstance(space, LEAF_SPACES) or (prefix == MASK_KEY and self.mask_in_obs):
                out[prefix] = value
                return
            if isinstance(space, gym.spaces.Dict):
                if not isinstance(value, Mapping):
                    raise TypeError(f"{name}{'.' + prefix if prefix else ''} must be a dict with keys "
                                    f"{list(space.spaces)}, got {type(value).__name__}")
                missing = [k for k in space.spaces if k not in value]
                extra = [k for k in value if k not in space.spaces]
                if missing or extra:
                    raise ValueError(f"{name}{'.' + prefix if prefix else ''} has keys {list(value)}; expected "
                                     f"{list(space.spaces)} (missing {missing}, unexpected {extra})")
                items = [(k, space.spaces[k], value[k]) for k in space.spaces]
            else:
                if not isinstance(value, (tuple, list)) or len(value) != len(space.spaces):
                    raise TypeError(f"{name}{'.' + prefix if prefix else ''} must be a tuple of "
                                    f"{len(space.spaces)} parts, got {type(value).__name__}")
                items = [(str(i), s, v) for i, (s, v) in enumerate(zip(space.spaces, value, strict=True))]
            for key, sub, v in items:
                walk(sub, v, f"{prefix}.{key}" if prefix else key)

        walk(self.space, obs, "")
        return out

    # ------------------------------------------------------------------ masks
    def mask(self, value: Any, batch: int | None, name: str = "action_mask") -> np.ndarray:
        """A mask in any accepted form as ``(B, D, N)`` bool (``(D, N)`` for a single one), combined with the padding.

        Refuses a non-boolean, non-integer dtype (TypeError), values other than 0 and 1, and a shape
        that fits neither form (ValueError). Whether every state has a legal action is the caller's check.
        """
        dims, n = self.mask_shape
        if isinstance(value, tuple):  # per component
            if len(value) != dims:
                raise ValueError(f"{name} is a tuple of {len(value)} masks; expected one per action dimension ({dims})")
            value = np.concatenate([self._mask_values(v, name) for v in value], axis=-1)
        arr = self._mask_values(value, name)
        rows = 1 if batch is None else batch
        lead = () if batch is None else (batch,)
        if arr.shape == (*lead, dims, n):
            table = arr.reshape(rows, dims, n)
        elif arr.shape == (*lead, len(self.flat_index)):
            table = np.zeros((rows, dims * n), bool)
            table[:, self.flat_index] = arr.reshape(rows, -1)
            table = table.reshape(rows, dims, n)
        else:
            expected = [(*lead, len(self.flat_index))] + ([(*lead, dims, n)] if dims > 1 else [])
            raise ValueError(f"{name} has shape {arr.shape}; expected {' or '.join(map(str, expected))}"
                             f"{' or a tuple of per-component masks' if dims > 1 else ''} for {self.action_codec.space}")
        table &= self.padding
        return table if batch is not None else table[0]

    @staticmethod
    def _mask_values(value: Any, name: str) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name} is not a rectangular array ({e})") from None
        if arr.dtype.kind not in "biu":
            raise TypeError(f"{name} has dtype {arr.dtype}; expected bool or integers (1 for a legal action, 0 if not)")
        if arr.dtype.kind != "b" and arr.size and not ((arr == 0) | (arr == 1)).all():
            raise ValueError(f"{name} must hold only 0 and 1 (or bools)")
        return arr.astype(bool)

    def with_mask(self, arrays: dict[str, np.ndarray], mask: Any, batch: int | None, name: str) -> dict[str, np.ndarray]:
        """``arrays`` with an explicitly given mask added as the mask part."""
        if self.mask_in_obs:
            raise ValueError(f"{name} was given, but the observations hold '{MASK_KEY}' already")
        if not self.masked:
            raise ValueError(f"{name} was given, but the agent was built without masks; build it with action_mask=True")
        return {**arrays, MASK_KEY: self.mask(mask, batch, name)}


def batched(arrays: np.ndarray | dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    """A single observation's arrays with a batch axis of 1 added."""
    return {k: v[None] for k, v in arrays.items()} if isinstance(arrays, dict) else arrays[None]


def shape_of(arrays: np.ndarray | dict[str, np.ndarray]) -> Any:
    """The shape, or the shape of every part (for error messages)."""
    return {k: v.shape for k, v in arrays.items()} if isinstance(arrays, dict) else arrays.shape


def no_legal_action(mask: np.ndarray) -> np.ndarray:
    """``(B,)`` bool: rows of a ``(B, D, N)`` mask where some dimension has no legal action."""
    return ~mask.any(axis=-1).all(axis=-1)


__all__ = ["LEAF_SPACES", "MASK_KEY", "ObservationCodec", "Part", "batched", "encode_part", "no_legal_action", "shape_of"]
