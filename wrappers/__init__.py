"""Gymnasium wrappers that stand on their own: they import gymnasium and numpy (and, to build
Atari envs, ale-py and opencv), never torch or ``sqn_agents``.

- ``make_atari_env`` / ``wrap_atari``: the Atari preprocessing pipeline, built on Gymnasium's
  ``AtariPreprocessing`` and ``FrameStackObservation``;
- ``FireResetEnv``, ``EpisodicLifeEnv``, ``ClipRewardEnv``: its hand-written pieces, usable alone;
- ``FlattenMultiDiscreteAction``: ``MultiDiscrete`` actions as one ``Discrete`` space (C order).

See docs/wrappers.md.
"""

from wrappers.atari import GAME_INFO_KEY, ClipRewardEnv, FireResetEnv, make_atari_env, wrap_atari
from wrappers.life_loss import EpisodicLifeEnv
from wrappers.multidiscrete import FlattenMultiDiscreteAction

__all__ = [
    "GAME_INFO_KEY",
    "ClipRewardEnv",
    "EpisodicLifeEnv",
    "FireResetEnv",
    "FlattenMultiDiscreteAction",
    "make_atari_env",
    "wrap_atari",
]
