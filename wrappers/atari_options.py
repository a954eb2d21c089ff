"""``AtariOptions``: every setting of the Atari pipeline, in one frozen, validated dataclass.

``make_atari_env``, ``wrap_atari``, ``make_atari_vector_env`` and ``sqn-train --atari.*`` all
take this one object, so the options, their defaults and their checks are written once, here.
Those functions also take the fields as keyword overrides (``make_atari_env("Pong",
noop_max=0)``), applied with ``dataclasses.replace``.

This module imports neither ale-py nor opencv: ``import wrappers`` stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from wrappers.life_loss import LIFE_LOSS_MODES
from wrappers.validation import check_bool, check_choice, check_int, check_probability, unexpected_keyword

LifeLoss = Literal["episodic", "signal", "none"]
LIFE_LOSS_OPTIONS: tuple[str, ...] = (*LIFE_LOSS_MODES, "none")


@dataclass(frozen=True)
class AtariOptions:
    """The Atari preprocessing and game settings; the defaults are the DQN-style pipeline with sticky actions.

    Every field is checked once, at construction: a wrong type is a ``TypeError``, a wrong
    value a ``ValueError``, each naming the field and what was expected. The last three
    fields are settings of the ALE game itself, chosen when the ALE env is created (see
    ``wrap_atari`` for envs you create yourself).

    Example:
        >>> from wrappers import AtariOptions
        >>> options = AtariOptions(repeat_action_probability=0.0, frame_stack=2)
        >>> options.frame_stack, options.noop_max
        (2, 30)
        >>> import dataclasses
        >>> dataclasses.replace(options, life_loss="signal").life_loss
        'signal'
        >>> AtariOptions(frame_stack=0)
        Traceback (most recent call last):
        ...
        ValueError: AtariOptions.frame_stack=0; expected an integer >= 1
        >>> AtariOptions(grayscale="yes")
        Traceback (most recent call last):
        ...
        TypeError: AtariOptions.grayscale='yes' is a str; expected a bool (True or False)

    Change logs:
     * v0.1.0 - Initially added, replacing the keyword lists of ``make_atari_env``,
       ``wrap_atari``, ``make_atari_vector_env`` and ``sqn-train``'s ``AtariArgs``.
    """

    noop_max: int = 30
    """A reset plays a random number of no-ops, 1 to noop_max (0: none)."""
    frame_skip: int = 4
    """Each action is repeated for this many frames; the observation is the max of the last two."""
    screen_size: int | tuple[int, int] = 84
    """Frame size: an int for a square, or (width, height)."""
    grayscale: bool = True
    """Grayscale frames; False keeps RGB (the stack is then (4, 84, 84, 3))."""
    fire_reset: bool = True
    """Press FIRE after each reset, in games whose actions include FIRE."""
    life_loss: LifeLoss = "episodic"
    """'episodic': an episode ends at each lost life, the game goes on; 'signal': only info['life_loss']; 'none'."""
    clip_rewards: bool = True
    """Rewards clipped to their sign; the unclipped game score stays in info['game']."""
    frame_stack: int = 4
    """The observation stacks this many of the latest frames on axis 0."""
    repeat_action_probability: float = 0.25
    """Sticky actions: each frame repeats the previous action with this probability (ALE v5: 0.25; DQN 2015: 0)."""
    full_action_space: bool = False
    """All 18 Atari actions instead of the game's minimal set."""
    max_num_frames_per_episode: int | None = 108_000
    """ALE truncates a game after this many frames (108,000 = 27,000 agent steps at frame_skip 4); None: no limit."""

    def __post_init__(self) -> None:
        check_int("AtariOptions.noop_max", self.noop_max, minimum=0)
        check_int("AtariOptions.frame_skip", self.frame_skip, minimum=1)
        check_int("AtariOptions.frame_stack", self.frame_stack, minimum=1)
        for name in ("grayscale", "fire_reset", "clip_rewards", "full_action_space"):
            check_bool(f"AtariOptions.{name}", getattr(self, name))
        check_choice("AtariOptions.life_loss", self.life_loss, LIFE_LOSS_OPTIONS)
        check_probability("AtariOptions.repeat_action_probability", self.repeat_action_probability)
        check_int("AtariOptions.max_num_frames_per_episode", self.max_num_frames_per_episode, minimum=1,
                  allow_none=True)
        # A list (from JSON, e.g. sqn-train's args.json) is stored as a tuple, so the options stay hashable.
        object.__setattr__(self, "screen_size", _screen_size(self.screen_size))

    @property
    def width_height(self) -> tuple[int, int]:
        """``screen_size`` as ``(width, height)``."""
        size = self.screen_size
        return (size, size) if isinstance(size, int) else size


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AtariOptions))


def resolve_options(caller: str, options: AtariOptions | None, overrides: Mapping[str, Any]) -> AtariOptions:
    """``options`` (``AtariOptions()`` if None) with the keyword ``overrides`` applied by ``dataclasses.replace``.

    An override that is no field is a ``TypeError`` naming ``caller`` and the fields.
    """
    if options is None:
        options = AtariOptions()
    elif not isinstance(options, AtariOptions):
        raise TypeError(
            f"{caller}: options={options!r} is a {type(options).__name__}; expected an AtariOptions or None "
            "(the fields can also be given as keywords)"
        )
    for name in overrides:
        if name not in FIELD_NAMES:
            raise unexpected_keyword(caller, name, FIELD_NAMES)
    return dataclasses.replace(options, **overrides) if overrides else options


def _screen_size(size: Any) -> int | tuple[int, int]:
    expected = "expected a positive int (a square image) or a (width, height) tuple of positive ints"
    if isinstance(size, list | tuple):
        if len(size) != 2:
            raise ValueError(f"AtariOptions.screen_size={size!r} has {len(size)} entries; {expected}")
        for s in size:
            if isinstance(s, bool) or not isinstance(s, int | np.integer):
                raise TypeError(f"AtariOptions.screen_size={size!r} holds a {type(s).__name__}; {expected}")
        size = (int(size[0]), int(size[1]))
        if min(size) < 1:
            raise ValueError(f"AtariOptions.screen_size={size!r}; {expected}")
        return size
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"AtariOptions.screen_size={size!r} is a {type(size).__name__}; {expected}")
    if size < 1:
        raise ValueError(f"AtariOptions.screen_size={size!r}; {expected}")
    return int(size)
