"""Argument checks shared by the wrappers, with Gymnasium's conventions for errors.

A wrong *type* is a ``TypeError`` and a wrong *value* of the right type is a ``ValueError``;
each message names the argument, shows what was given and says what was expected. The checks
are public so that code building on these wrappers can report its own arguments the same way:

    >>> from wrappers.validation import check_int
    >>> check_int("num_envs", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: num_envs=0; expected an integer >= 1
    >>> check_int("num_envs", 2.0, minimum=1)
    Traceback (most recent call last):
    ...
    TypeError: num_envs=2.0 is a float; expected an integer >= 1

Also here: ``resolve_ale_id`` (an ALE id or game name to a registered id) and
``import_optional`` (an optional Atari dependency, or the command that installs it), which
``make_atari_env`` and ``make_atari_vector_env`` share. Nothing here imports ale-py or opencv.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np

ATARI_EXTRA_HINT = 'pip install "sqn-agents[atari]"'


def check_int(name: str, value: Any, minimum: int, *, allow_none: bool = False) -> None:
    """An integer (``int`` or NumPy integer, not ``bool``) ``>= minimum``; or ``None`` with ``allow_none``."""
    if allow_none and value is None:
        return
    expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected {expected}")
    if value < minimum:
        raise ValueError(f"{name}={value!r}; expected {expected}")


def check_bool(name: str, value: Any) -> None:
    """``True`` or ``False`` (a NumPy bool too); ``0`` and ``1`` are refused, they usually mean a mix-up."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a bool (True or False)")


def check_probability(name: str, value: Any) -> None:
    """A real number (``int`` or ``float``, not ``bool``) in ``[0, 1]``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected a probability in [0, 1]")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name}={value!r}; expected a probability in [0, 1]")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """One of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r} is a {type(value).__name__}; expected one of {choices}")
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {choices}")


def unexpected_keyword(caller: str, name: str, valid: Iterable[str], hint: str | None = None) -> TypeError:
    """The ``TypeError`` for a keyword ``caller`` does not take: Python's message, plus the valid names.

    ``hint`` says what to use instead, for names that users commonly try.
    """
    because = f": {hint}" if hint else ""
    return TypeError(
        f"{caller}() got an unexpected keyword argument {name!r}{because}; expected one of: {', '.join(valid)}"
    )


def resolve_ale_id(env_id: Any, caller: str) -> str:
    """``env_id`` if it is a registered ALE id, else ``"ALE/{env_id}-v5"``; refuses ids that are not ALE games.

    ale-py's envs must be registered first (``gym.register_envs(ale_py)``).
    """
    if not isinstance(env_id, str):
        raise TypeError(
            f"{caller}: env_id={env_id!r} is a {type(env_id).__name__}; expected a string such as "
            "'ALE/Breakout-v5' or 'Breakout'"
        )
    full_id = env_id if env_id in gym.registry else f"ALE/{env_id}-v5"
    if full_id not in gym.registry:
        raise ValueError(
            f"{caller}: {env_id!r} is neither a registered env id nor an Atari game name (no {full_id!r}); "
            "expected an ALE id such as 'ALE/Breakout-v5' or a game name such as 'Breakout'"
        )
    entry_point = gym.registry[full_id].entry_point
    if not (isinstance(entry_point, str) and entry_point.startswith("ale_py")):
        raise ValueError(
            f"{caller}: {full_id!r} is not an ALE env (its entry point is {entry_point!r}); "
            "expected an Atari game id such as 'ALE/Breakout-v5'"
        )
    return full_id


def import_optional(module: str) -> Any:
    """Imports an optional Atari dependency (``ale_py``, ``cv2``), or says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(
            f"{module} is not installed; the Atari wrappers need ale-py and opencv: {ATARI_EXTRA_HINT}"
        ) from e
