"""Between Gymnasium spaces and the agent's arrays: input checks and action index codecs.

The agent works on zero-based action indices of shape ``(B, D)``; users pass and receive
actions as their space defines them (``Discrete`` ints with a ``start`` offset, or
``MultiDiscrete`` arrays of any ``nvec`` shape with ``start`` offsets). Every check here
names the argument, what it got and what was expected, and follows Gymnasium's convention:
``TypeError`` for the wrong type (an unsupported space, a str or bool action, a float or
text observation for an integer space) and ``ValueError`` for a wrong value of the right
type (a shape, an action outside the space, a NaN).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def _as_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray`` with numpy's error on ragged nested sequences turned into one that names the argument."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} is not a rectangular array of numbers ({e})") from None


class ActionCodec:
    """Converts user actions to ``(B, D)`` zero-based indices and back, for Discrete and MultiDiscrete."""

    def __init__(self, space: gym.spaces.Space) -> None:
        if isinstance(space, gym.spaces.Discrete):
            self.sizes = np.array([space.n], dtype=np.int64)
            self.start = np.array([space.start], dtype=np.int64)
            self.shape: tuple[int, ...] = ()
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.sizes = np.asarray(space.nvec, dtype=np.int64).ravel()
            self.start = np.asarray(space.start, dtype=np.int64).ravel()
            self.shape = tuple(space.nvec.shape)
        else:
            raise TypeError(
                f"action_space must be gymnasium.spaces.Discrete or MultiDiscrete, got {space!r}; "
                "for other spaces, wrap the env (e.g. wrappers.FlattenMultiDiscreteAction) or discretise it"
            )
        self.space = space
        self.dtype = space.dtype
        self.action_dims = len(self.sizes)
        self.num_actions = int(self.sizes.max())
        # (D, N) mask of real actions; None when every dimension has N actions (no padding needed).
        padded = np.arange(self.num_actions)[None, :] < self.sizes[:, None]
        self.mask = None if padded.all() else padded

    def batch_size_of(self, action: Any) -> int | None:
        """None for a single action, B for a batch of B actions; raises for other shapes."""
        shape = _as_array(action, "action").shape
        if shape == self.shape:
            return None
        if len(shape) == len(self.shape) + 1 and shape[1:] == self.shape:
            return shape[0]
        single = "a scalar" if self.shape == () else f"shape {self.shape}"
        raise ValueError(
            f"action has shape {shape}; expected {single} for one action of {self.space} "
            f"or (batch, *{self.shape}) for a batch of actions"
        )

    def to_index(self, action: Any, batch: int | None) -> np.ndarray:
        """User action(s) -> ``(B, D)`` int64 zero-based indices, checking that each lies in the space."""
        arr = _as_array(action, "action")
        with np.errstate(invalid="ignore"):
            integral = arr.dtype.kind == "f" and bool(np.all(np.mod(arr, 1) == 0))  # NaN and infinity fail this
        if integral:
            if np.any(np.abs(arr) >= 2.0**62):  # would overflow int64
                raise ValueError(f"action {action!r} is outside the action space {self.space}")
            arr = arr.astype(np.int64)  # accept 2.0 for 2, as np.int64(2.0) would
        if arr.dtype.kind not in "iu":  # floats left here have a fraction or are not finite: a wrong value
            error = ValueError if arr.dtype.kind == "f" else TypeError
            raise error(f"action must be integer-valued for {self.space}, got dtype {arr.dtype} ({action!r})")
        if arr.dtype == np.uint64 and arr.size and arr.max() >= 2**63:  # would wrap to a negative int64
            raise ValueError(f"action {action!r} is outside the action space {self.space}")
        index = arr.reshape(1 if batch is None else batch, self.action_dims).astype(np.int64) - self.start
        if np.any(index < 0) or np.any(index >= self.sizes):
            raise ValueError(f"action {action!r} is outside the action space {self.space}")
        return index

    def from_index(self, index: np.ndarray, batched: bool) -> Any:
        """``(B, D)`` zero-based indices -> user actions (an int or array for one, an array for a batch)."""
        actions = (index + self.start).astype(self.dtype, copy=False)
        if self.shape == ():
            actions = actions[:, 0]
            return actions if batched else actions[0].item()
        actions = actions.reshape(-1, *self.shape)
        return actions if batched else actions[0]


def batch_size_of_obs(obs: np.ndarray, space: gym.spaces.Box, name: str = "obs") -> int | None:
    """None when ``obs`` has the space's shape, B when it has ``(B, *shape)``; otherwise a ValueError."""
    if obs.shape == space.shape:
        return None
    if obs.ndim == len(space.shape) + 1 and obs.shape[1:] == space.shape:
        return obs.shape[0]
    raise ValueError(
        f"{name} has shape {obs.shape}; expected {space.shape} for one observation "
        f"or (batch, {', '.join(map(str, space.shape))}) for a batch from a vector env"
    )


def as_obs_array(obs: Any, space: gym.spaces.Box, name: str = "obs") -> np.ndarray:
    """Array of the space's dtype; refuses lossy casts and non-finite values.

    Lossy casts are floats into an integer space and integers that do not fit the space's
    integer dtype (300 into uint8 would silently wrap to 44). Float values that overflow a
    smaller float dtype (1e39 into float32) become infinite and are refused as such.
    """
    arr = _as_array(obs, name)
    if arr.dtype != space.dtype:
        if arr.dtype.kind == "f" and space.dtype.kind in "iub":
            raise TypeError(f"{name} has dtype {arr.dtype}, but the observation space holds {space.dtype}")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name} has dtype {arr.dtype}; expected numbers of dtype {space.dtype}")
        if arr.dtype.kind in "iu" and space.dtype.kind in "iu" and arr.size:
            info = np.iinfo(space.dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise ValueError(
                    f"{name} holds values in [{arr.min()}, {arr.max()}], which do not fit the observation "
                    f"space's dtype {space.dtype} [{info.min}, {info.max}]"
                )
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is caught just below
            arr = arr.astype(space.dtype)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity (as {arr.dtype}); observations must be finite")
    return arr


def describe_space(space: gym.spaces.Space) -> dict[str, Any]:
    """A JSON description of a space, used to check a checkpoint against an env without pickle.

    An unsupported space still raises ``ValueError`` here (not ``TypeError``): ``checkpoint.load``
    catches ``ValueError`` to report a mismatched env space; change both together.

    A top-level Box's bounds are saved apart (as tensors); a Box inside a Dict or Tuple carries
    its bounds here, as one number when they are uniform.
    """
    return _describe(space, top=True)


def _bound(values: np.ndarray) -> Any:
    flat = np.asarray(values).ravel()
    return flat[0].item() if flat.size and (flat == flat[0]).all() else np.asarray(values).tolist()


def _describe(space: gym.spaces.Space, top: bool) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        desc: dict[str, Any] = {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype)}
        if not top:
            desc.update(low=_bound(space.low), high=_bound(space.high))
        return desc
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": list(np.atleast_1d(space.n).tolist())}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": [[k, _describe(s, False)] for k, s in space.spaces.items()]}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [_describe(s, False) for s in space.spaces]}
    raise ValueError(f"cannot describe space {space!r}")


def space_from_description(desc: dict[str, Any], low: np.ndarray | None = None, high: np.ndarray | None = None) -> gym.spaces.Space:
    """Inverse of ``describe_space`` (a Box takes its bounds from ``low``/``high``)."""
    kind = desc.get("type")
    if kind == "Box":
        return gym.spaces.Box(low=low, high=high, shape=tuple(desc["shape"]), dtype=np.dtype(desc["dtype"]))
    if kind == "Discrete":
        return gym.spaces.Discrete(desc["n"], start=desc["start"])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.array(desc["nvec"]), start=np.array(desc["start"]))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(desc["n"] if len(desc["n"]) > 1 else desc["n"][0])
    if kind == "Dict":
        return gym.spaces.Dict({k: _nested(s) for k, s in desc["spaces"]})
    if kind == "Tuple":
        return gym.spaces.Tuple([_nested(s) for s in desc["spaces"]])
    raise ValueError(f"unknown space description {desc!r}")


def _nested(desc: dict[str, Any]) -> gym.spaces.Space:
    """A part of a Dict or Tuple description (a Box carries its bounds)."""
    if desc.get("type") == "Box":
        dtype = np.dtype(desc["dtype"])
        shape = tuple(desc["shape"])
        low = np.broadcast_to(np.asarray(desc["low"], dtype=dtype), shape)
        high = np.broadcast_to(np.asarray(desc["high"], dtype=dtype), shape)
        return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    return space_from_description(desc)
