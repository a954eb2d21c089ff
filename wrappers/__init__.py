"""Gymnasium wrappers that stand on their own: they import gymnasium and numpy (and, to build
Atari envs, ale-py and opencv), never torch or ``sqn_agents``.

- ``AtariOptions``: every setting of the Atari pipeline, one frozen dataclass that the three
  functions below take (or its fields as keywords);
- ``make_atari_env`` / ``wrap_atari``: the Atari preprocessing pipeline, built on Gymnasium's
  ``AtariPreprocessing`` and ``FrameStackObservation``;
- ``make_atari_vector_env``: ale-py's C++ ``AtariVectorEnv``, set up like ``make_atari_env``;
- ``FireResetEnv``, ``EpisodicLifeEnv``, ``ClipRewardEnv``: its hand-written pieces, usable alone;
- ``FlattenMultiDiscreteAction``: ``MultiDiscrete`` actions as one ``Discrete`` space (C order);
- ``wrappers.validation``: the argument checks they share (``TypeError`` for a wrong type,
  ``ValueError`` for a wrong value), public for code that builds on them.

See docs/wrappers.md.
"""

from wrappers.atari import GAME_INFO_KEY, ClipRewardEnv, FireResetEnv, make_atari_env, wrap_atari
from wrappers.atari_options import AtariOptions
from wrappers.atari_vector import make_atari_vector_env
from wrappers.life_loss import EpisodicLifeEnv
from wrappers.multidiscrete import FlattenMultiDiscreteAction

__all__ = [
    "GAME_INFO_KEY",
    "AtariOptions",
    "ClipRewardEnv",
    "EpisodicLifeEnv",
    "FireResetEnv",
    "FlattenMultiDiscreteAction",
    "make_atari_env",
    "make_atari_vector_env",
    "wrap_atari",
]
