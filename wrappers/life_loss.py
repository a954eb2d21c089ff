"""Life-loss handling for games with several lives (Atari): end the episode, or just say so.

Gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` ends the episode on a life loss
*and resets the game* on the next ``reset()``, so an agent never sees the later lives of a
game. The classic DQN behaviour (an episode per life, the game reset only when it is really
over) and a signal-only mode are not in Gymnasium; this module writes them by hand.
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
from gymnasium.core import ActType, ObsType

LifeLossMode = Literal["episodic", "signal"]
LIFE_LOSS_MODES: tuple[str, ...] = ("episodic", "signal")


class EpisodicLifeEnv(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """Reports every life loss in ``info["life_loss"]`` and, in ``"episodic"`` mode, ends the episode there.

    Two modes:

    * ``"episodic"`` (the classic DQN behaviour): a life loss returns ``terminated=True``, so a
      learner does not bootstrap across it, but the game goes on. The next ``reset()`` does not
      reset the game: it takes one no-op step (action 0, ``NOOP`` in every ALE game) and
      returns that observation, so the next episode is the next life. The game itself is reset
      only once it is really over (terminated or truncated), or when ``reset`` gets a ``seed``
      (a seed asks for a reproducible start, which only a real reset gives).
    * ``"signal"``: episodes are whole games; a life loss only sets ``info["life_loss"]``, so a
      learner can cut bootstrapping there without resetting anything.

    The life count comes from ``info["lives"]``, which ALE envs report on every ``reset`` and
    ``step``; any env that does the same can be wrapped. A decrease of the count is a life loss.
    In ``"episodic"`` mode the count falling to 0 does not end the episode by itself: some games
    (Q*bert) show 0 lives for a few frames before the game is over, and the game's own
    ``terminated`` ends that last episode.

    Example:
        >>> import gymnasium as gym
        >>> import ale_py
        >>> from wrappers import EpisodicLifeEnv
        >>> gym.register_envs(ale_py)
        >>> env = EpisodicLifeEnv(gym.make("ALE/Breakout-v5"), mode="episodic")
        >>> obs, info = env.reset(seed=0)
        >>> info["lives"], info["life_loss"]
        (5, False)
        >>> terminated = False
        >>> while not terminated:  # FIRE (1) launches the ball; the paddle never moves
        ...     obs, reward, terminated, truncated, info = env.step(1)
        >>> info["lives"], info["life_loss"]  # the episode ended with the first lost life
        (4, True)
        >>> obs, info = env.reset()  # the game goes on with 4 lives
        >>> info["lives"]
        4

    Change logs:
     * v0.1.0 - Initially added.
     * v0.1.0 - A ``mode`` that is not a string is a ``TypeError``, was a ``ValueError``.
    """

    def __init__(self, env: gym.Env[ObsType, ActType], mode: LifeLossMode = "episodic") -> None:
        """Wraps ``env``, an env that reports ``info["lives"]``.

        Args:
            env: the environment, e.g. an ALE env.
            mode: ``"episodic"`` ends the episode on a life loss and resets the game only when
                it is over; ``"signal"`` only reports the life loss in ``info["life_loss"]``.
        """
        if not isinstance(mode, str):
            raise TypeError(
                f"EpisodicLifeEnv: mode={mode!r} is a {type(mode).__name__}; expected one of {LIFE_LOSS_MODES}"
            )
        if mode not in LIFE_LOSS_MODES:
            raise ValueError(f"EpisodicLifeEnv: mode={mode!r} is not a life-loss mode; expected one of {LIFE_LOSS_MODES}")
        gym.utils.RecordConstructorArgs.__init__(self, mode=mode)
        gym.Wrapper.__init__(self, env)
        self.mode: LifeLossMode = mode
        self.lives = 0
        # True when the underlying game is over, so that the next reset() must really reset it.
        self.game_over = True

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        """Steps the game and reports a life loss (and, in episodic mode, ends the episode there)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._lives(info, "step")
        life_loss = lives < self.lives
        self.lives = lives
        self.game_over = bool(terminated or truncated)
        if self.mode == "episodic" and life_loss and lives > 0:
            terminated = True
        return obs, reward, terminated, truncated, {**info, "life_loss": life_loss}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Resets the game, unless (episodic mode) only a life was lost: then the game goes on."""
        if self.mode == "episodic" and not self.game_over and seed is None:
            # The game is not over: start the next life with a no-op step instead of a reset.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the game ended during the no-op: reset it after all
                obs, info = self.env.reset(options=options)
        else:
            obs, info = self.env.reset(seed=seed, options=options)
        self.lives = self._lives(info, "reset")
        self.game_over = False
        return obs, {**info, "life_loss": False}

    @staticmethod
    def _lives(info: dict[str, Any], where: str) -> int:
        if "lives" not in info:
            raise ValueError(
                f"EpisodicLifeEnv: the wrapped env's {where}() info has no 'lives' key (keys: {sorted(info)}); "
                "expected an env that reports its life count in info['lives'], as ALE envs do"
            )
        return int(info["lives"])
