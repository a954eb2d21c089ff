"""Flatten a MultiDiscrete action space into one Discrete space, in a documented (C) order.

Gymnasium has no such wrapper, and the libraries that have one disagree on the order of the
flat indices. Here the order is NumPy's C order, that of ``np.ravel_multi_index`` and
``np.unravel_index``: the last component varies fastest. For ``MultiDiscrete([2, 3])``::

    index:   0       1       2       3       4       5
    action:  [0, 0]  [0, 1]  [0, 2]  [1, 0]  [1, 1]  [1, 2]

A multi-dimensional ``nvec`` is flattened in C order first (row by row), and ``start`` offsets
are added to the components after unravelling.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.core import ObsType
from gymnasium.spaces import Discrete, MultiDiscrete

DEFAULT_MAX_ACTIONS = 10_000


class FlattenMultiDiscreteAction(
    gym.ActionWrapper[ObsType, np.int64, np.ndarray], gym.utils.RecordConstructorArgs
):
    """Turns a ``MultiDiscrete(nvec, start=start)`` action space into ``Discrete(prod(nvec))``.

    Flat index ``i`` is the action ``np.unravel_index(i, nvec.ravel())`` reshaped to
    ``nvec.shape``, plus ``start``: C order, the last component varies fastest.
    ``index_to_action`` and ``action_to_index`` convert either way, for one action or a batch.

    A ``Discrete`` space has one entry per combination, so the product of ``nvec`` grows fast
    (ten components of 4 choices: over a million). A product above ``max_actions`` (default
    10,000) is refused; raise the limit if you mean it, or use a learner that handles
    ``MultiDiscrete`` actions natively (one output head per component).

    Example:
        >>> import gymnasium as gym
        >>> import numpy as np
        >>> from gymnasium.spaces import MultiDiscrete
        >>> from wrappers import FlattenMultiDiscreteAction
        >>> class Env(gym.Env):
        ...     observation_space = gym.spaces.Box(0.0, 1.0, (1,))
        ...     action_space = MultiDiscrete([2, 3], start=[1, -1])
        ...     def reset(self, *, seed=None, options=None):
        ...         return np.zeros(1, np.float32), {}
        ...     def step(self, action):
        ...         return np.zeros(1, np.float32), 0.0, False, False, {"action": action}
        >>> env = FlattenMultiDiscreteAction(Env())
        >>> env.action_space
        Discrete(6)
        >>> env.index_to_action(4)  # [1, 1] in C order, plus start [1, -1]
        array([2, 0])
        >>> env.index_to_action(np.array([0, 5]))
        array([[ 1, -1],
               [ 2,  1]])
        >>> env.action_to_index([2, 0])
        4
        >>> _ = env.reset(seed=0)
        >>> env.step(4)[4]["action"]
        array([2, 0])

    Change logs:
     * v0.1.0 - Initially added.
     * v0.1.0 - Wrong types (an action space that is not ``MultiDiscrete``, a non-integer
       ``max_actions``, action or index) are a ``TypeError``, were a ``ValueError``.
    """

    def __init__(self, env: gym.Env[ObsType, Any], max_actions: int = DEFAULT_MAX_ACTIONS) -> None:
        """Wraps ``env``, whose action space must be ``MultiDiscrete``.

        Args:
            env: the environment with a ``MultiDiscrete`` action space.
            max_actions: the largest ``Discrete`` size allowed (the product of ``nvec``).
        """
        gym.utils.RecordConstructorArgs.__init__(self, max_actions=max_actions)
        gym.ActionWrapper.__init__(self, env)
        space = env.action_space
        if not isinstance(space, MultiDiscrete):
            raise TypeError(
                f"FlattenMultiDiscreteAction: the env's action space is {space}; expected a MultiDiscrete space"
            )
        if space.nvec.size == 0:
            raise ValueError(
                f"FlattenMultiDiscreteAction: {space} has no components; expected at least one component in nvec"
            )
        if isinstance(max_actions, bool) or not isinstance(max_actions, int | np.integer):
            raise TypeError(
                f"FlattenMultiDiscreteAction: max_actions={max_actions!r} is a {type(max_actions).__name__}; "
                "expected a positive integer"
            )
        if max_actions < 1:
            raise ValueError(f"FlattenMultiDiscreteAction: max_actions={max_actions!r}; expected a positive integer")
        # Python ints: the product of a large nvec must not overflow before it is compared.
        n = math.prod(int(k) for k in space.nvec.flat)
        if n > max_actions:
            raise ValueError(
                f"FlattenMultiDiscreteAction: {space} has {n:,} combinations, above max_actions={max_actions:,}; "
                "expected a product of nvec small enough for a Discrete space. Raise max_actions if you mean it, "
                "or keep the MultiDiscrete space and use a learner that supports it natively (one head per component)"
            )
        if n > np.iinfo(np.intp).max:
            raise ValueError(f"FlattenMultiDiscreteAction: {space} has {n} combinations, more than an index can hold")

        self.multi_discrete_space: MultiDiscrete = space
        self._flat_nvec: tuple[int, ...] = tuple(int(k) for k in space.nvec.flat)
        self.action_space = Discrete(n)

    def action(self, action: Any) -> np.ndarray:
        """The ``MultiDiscrete`` action of one flat index (called by ``step``)."""
        if not self.action_space.contains(action):
            expected = f"expected an integer in [0, {self.action_space.n})"
            if np.ndim(action) != 0 or not np.issubdtype(np.asarray(action).dtype, np.integer):
                raise TypeError(f"FlattenMultiDiscreteAction: action {action!r} is not an integer; {expected}")
            raise ValueError(f"FlattenMultiDiscreteAction: action {action!r} is not in {self.action_space}; {expected}")
        return self.index_to_action(action)

    def index_to_action(self, index: Any) -> np.ndarray:
        """Flat index (or array of them, any shape ``B``) to ``MultiDiscrete`` action(s), shape ``B + nvec.shape``."""
        index = np.asarray(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"index_to_action: index dtype {index.dtype}; expected integers")
        n = int(self.action_space.n)
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(
                f"index_to_action: index out of range (min {index.min()}, max {index.max()}); expected integers in [0, {n})"
            )
        space = self.multi_discrete_space
        components = np.unravel_index(index, self._flat_nvec)  # one array of shape B per component
        flat = np.stack(components, axis=-1)  # B + (number of components,)
        return (flat.reshape(index.shape + space.nvec.shape) + space.start).astype(space.dtype)

    def action_to_index(self, action: Any) -> int | np.ndarray:
        """``MultiDiscrete`` action(s), shape ``B + nvec.shape``, to flat index (an int, or an array of shape ``B``)."""
        space = self.multi_discrete_space
        action = np.asarray(action)
        if not np.issubdtype(action.dtype, np.integer):
            raise TypeError(f"action_to_index: action dtype {action.dtype}; expected integers")
        batch_ndim = action.ndim - space.nvec.ndim
        if batch_ndim < 0 or action.shape[batch_ndim:] != space.nvec.shape:
            raise ValueError(
                f"action_to_index: action shape {action.shape}; expected {space.nvec.shape} or a batch of them "
                f"(B + {space.nvec.shape})"
            )
        batch_shape = action.shape[:batch_ndim]
        digits = (action - space.start).reshape(batch_shape + (-1,))
        if np.any(digits < 0) or np.any(digits >= space.nvec.reshape(-1)):
            raise ValueError(
                f"action_to_index: an action is outside {space}; expected components in [start, start + nvec)"
            )
        index = np.ravel_multi_index(tuple(np.moveaxis(digits, -1, 0)), self._flat_nvec)
        return int(index) if batch_ndim == 0 else np.asarray(index, dtype=np.int64)
