"""The Atari preprocessing pipeline for Gymnasium 1.x ALE envs, and the pieces Gymnasium lacks.

``make_atari_env("ALE/Breakout-v5")`` (or just ``make_atari_env("Breakout")``) builds, from the
innermost wrapper out:

1. the ALE env with ``frameskip=1`` (the frame skip is done with max-pooling in step 2),
   sticky actions ``repeat_action_probability=0.25`` and the minimal action set;
2. Gymnasium's ``AtariPreprocessing``: up to 30 no-op starts, frame skip 4 with max-pooling of
   the last two frames, grayscale, 84x84;
3. Gymnasium's ``RecordEpisodeStatistics`` under the info key ``"game"``: the true, unclipped
   game score and length, recorded when the real game ends (it sits below the life-loss and
   clipping wrappers, so it sees whole games and raw rewards);
4. ``EpisodicLifeEnv`` (written here): an episode per life, or a life-loss signal in ``info``;
5. ``FireResetEnv`` (written here): press FIRE on reset, for games whose actions include FIRE;
6. ``ClipRewardEnv`` (written here): rewards clipped to their sign, -1, 0 or +1;
7. Gymnasium's ``FrameStackObservation``: the last 4 frames, a ``uint8`` array ``(4, 84, 84)``.

Those are the defaults of ``AtariOptions`` (wrappers/atari_options.py), the one object that
holds every setting; ``make_atari_env`` and ``wrap_atari`` take it, or its fields as keywords.

ale-py and opencv are optional dependencies (``pip install "sqn-agents[atari]"``); they are
imported only when an Atari env is built, so ``import wrappers`` works without them.
"""

from __future__ import annotations

import inspect
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.core import ActType, ObsType
from gymnasium.envs.registration import load_env_creator
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, RecordEpisodeStatistics

from wrappers.atari_options import FIELD_NAMES, AtariOptions, resolve_options
from wrappers.life_loss import EpisodicLifeEnv
from wrappers.validation import import_optional, resolve_ale_id, unexpected_keyword

# The info key of the unclipped game statistics {"r": return, "l": length, "t": seconds}.
# Not "episode": users commonly add their own RecordEpisodeStatistics on top (which records the
# clipped, per-life episodes under "episode" and refuses to overwrite an existing key).
GAME_INFO_KEY = "game"


class FireResetEnv(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """Presses FIRE after every reset, for games that wait for FIRE before they start.

    In games such as Breakout nothing happens until FIRE is pressed; a random early policy can
    then spend a whole episode waiting. This wrapper (not in Gymnasium) takes one FIRE step
    after ``reset`` and returns that observation. The FIRE step's reward is dropped; if that
    step ends the episode, the env is reset again.

    A game without a FIRE action is refused with a ``ValueError`` rather than silently left
    alone: wrapping it is a mistake that would otherwise go unnoticed (an env that is not an
    ALE game is a ``TypeError``). ``make_atari_env`` only adds this wrapper to games whose
    action meanings include FIRE.

    Example:
        >>> import gymnasium as gym
        >>> import ale_py
        >>> from wrappers import FireResetEnv
        >>> gym.register_envs(ale_py)
        >>> env = FireResetEnv(gym.make("ALE/Breakout-v5"))
        >>> obs, info = env.reset(seed=0)
        >>> info["episode_frame_number"]  # the 4 frames of the FIRE step, played during reset
        4

    Change logs:
     * v0.1.0 - Initially added.
     * v0.1.0 - An env without ``get_action_meanings`` (not an ALE game) is a ``TypeError``, was a ``ValueError``.
    """

    def __init__(self, env: gym.Env[ObsType, ActType]) -> None:
        """Wraps ``env``, an ALE env (or wrapped one) whose action meanings include ``"FIRE"``."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        get_meanings = getattr(env.unwrapped, "get_action_meanings", None)
        if get_meanings is None:
            raise TypeError(
                f"FireResetEnv: {type(env.unwrapped).__name__} has no get_action_meanings(); "
                "expected an ALE env, whose action meanings say which action is FIRE"
            )
        meanings = list(get_meanings())
        if "FIRE" not in meanings:
            raise ValueError(
                f"FireResetEnv: {_game_name(env)} has no FIRE action (its actions: {', '.join(meanings)}); "
                "expected a game with FIRE. Games without FIRE start on their own: do not wrap them"
            )
        self.fire_action = meanings.index("FIRE")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Resets, then presses FIRE once."""
        _, reset_info = self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, step_info = self.env.step(self.fire_action)
        if terminated or truncated:  # the FIRE step ended the episode: start again, without FIRE
            return self.env.reset(options=options)
        return obs, {**reset_info, **step_info}


class ClipRewardEnv(gym.RewardWrapper[ObsType, ActType], gym.utils.RecordConstructorArgs):
    """Clips every reward to its sign: -1.0, 0.0 or +1.0.

    The DQN convention, so that one learning rate suits games whose scores differ by orders of
    magnitude. Gymnasium's ``ClipReward`` clips to a range (0.5 stays 0.5); sign clipping is
    written here. The unclipped score is still available: ``make_atari_env`` records it in
    ``info["game"]``.

    Example:
        >>> import gymnasium as gym
        >>> from wrappers import ClipRewardEnv
        >>> env = ClipRewardEnv(gym.make("CartPole-v1"))
        >>> env.reward(7.0), env.reward(0.5), env.reward(-3.0), env.reward(0.0)
        (1.0, 1.0, -1.0, 0.0)

    Change logs:
     * v0.1.0 - Initially added.
    """

    def __init__(self, env: gym.Env[ObsType, ActType]) -> None:
        """Wraps ``env``; its rewards are replaced by their sign."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.RewardWrapper.__init__(self, env)

    def reward(self, reward: SupportsFloat) -> float:
        """The sign of ``reward``, as a float."""
        return float(np.sign(float(reward)))


def wrap_atari(env: gym.Env, options: AtariOptions | None = None, **overrides: Any) -> gym.Env:
    """Applies the Atari preprocessing pipeline to an ALE env created with ``frameskip=1``.

    ``make_atari_env`` creates the ALE env and calls this; call it yourself to preprocess an
    ALE env you created (it must have ``frameskip=1``: the frame skip happens here, with
    max-pooling).

    Args:
        env: an ALE env (or a wrapped one) created with ``frameskip=1``.
        options: the settings (``AtariOptions()`` if None).
        **overrides: ``AtariOptions`` fields, replacing those of ``options``; any other
            keyword is a ``TypeError``.

    Three fields, ``repeat_action_probability``, ``full_action_space`` and
    ``max_num_frames_per_episode``, are settings of the ALE game that are fixed when the ALE
    env is created; no wrapper can change them afterwards. Here they are checked: if ``env``
    was created with other values, a ``ValueError`` says which, and how to create the env
    (or what to pass) instead. So ``wrap_atari(env, options)`` always plays the game that
    ``make_atari_env(env_id, options)`` plays.

    Example:
        >>> import gymnasium as gym
        >>> import ale_py
        >>> from wrappers import wrap_atari
        >>> gym.register_envs(ale_py)
        >>> env = wrap_atari(gym.make("ALE/Pong-v5", frameskip=1), frame_stack=2, life_loss="none")
        >>> env.observation_space
        Box(0, 255, (2, 84, 84), uint8)
        >>> wrap_atari(gym.make("ALE/Pong-v5", frameskip=1), repeat_action_probability=0.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: wrap_atari: the ALE env ALE/Pong-v5 was created with repeat_action_probability=0.25, not the options' repeat_action_probability=0.0; ...

    Change logs:
     * v0.1.0 - Initially added.
     * v0.1.0 - Takes one ``AtariOptions`` (the fields are still accepted as keywords) and every
       option: the three ALE game settings are checked against ``env``. Unknown keywords are a
       ``TypeError``, a non-ALE env too.
    """
    caller = "wrap_atari"
    options = resolve_options(caller, options, overrides)
    import_optional("cv2")
    ale_env = env.unwrapped
    if getattr(ale_env, "ale", None) is None or not hasattr(ale_env, "get_action_meanings"):
        raise TypeError(
            f"{caller}: {type(ale_env).__name__} is not an ALE env; expected an Atari game from ale-py, "
            'e.g. gym.make("ALE/Breakout-v5", frameskip=1)'
        )
    base_frameskip = getattr(ale_env, "_frameskip", None)
    if base_frameskip != 1:
        raise ValueError(
            f"{caller}: the base env repeats each action frameskip={base_frameskip!r} times; expected frameskip=1, "
            f'e.g. gym.make("{_game_name(env)}", frameskip=1): the frame skip (frame_skip={options.frame_skip}) '
            "is done by the preprocessing, which max-pools the last two frames"
        )
    _check_game_settings(caller, ale_env, options)

    env = AtariPreprocessing(
        env,
        noop_max=options.noop_max,
        frame_skip=options.frame_skip,
        screen_size=options.screen_size,
        terminal_on_life_loss=False,  # life losses are EpisodicLifeEnv's job, which keeps the game going
        grayscale_obs=options.grayscale,
        scale_obs=False,
    )
    env = RecordEpisodeStatistics(env, stats_key=GAME_INFO_KEY)
    if options.life_loss != "none":
        env = EpisodicLifeEnv(env, mode=options.life_loss)
    if options.fire_reset and "FIRE" in ale_env.get_action_meanings():
        env = FireResetEnv(env)
    if options.clip_rewards:
        env = ClipRewardEnv(env)
    return FrameStackObservation(env, stack_size=options.frame_stack)


def make_atari_env(env_id: str, options: AtariOptions | None = None, **kwargs: Any) -> gym.Env:
    """Creates an ALE game with the standard DQN-style preprocessing.

    Args:
        env_id: an ALE id (``"ALE/Breakout-v5"``, ``"BreakoutNoFrameskip-v4"``) or a game name
            (``"Breakout"``, meaning ``"ALE/Breakout-v5"``). The id's registered settings
            (sticky actions, frame skip, frame limit) are overridden by the options.
        options: the settings (``AtariOptions()`` if None); see ``AtariOptions`` for each.
        **kwargs: ``AtariOptions`` fields, replacing those of ``options``; the other keywords
            are passed on to ``gym.make``: the ALE env's own arguments (``render_mode``,
            ``mode``, ``difficulty``, ...) and ``gym.make``'s (``max_episode_steps``, which
            counts frames: the base env has ``frameskip=1``).
            ``frameskip`` may only be 1 and ``obs_type`` is chosen by ``grayscale``; any other
            keyword is a ``TypeError`` naming the valid ones.

    Returns:
        The wrapped env. Its ``info`` has ``"lives"`` (from ALE), ``"life_loss"`` (unless
        ``life_loss="none"``) and, on the step where the real game ends, ``"game"``:
        ``{"r": unclipped score, "l": length in agent steps, "t": seconds}``.

    Example:
        >>> from wrappers import AtariOptions, make_atari_env
        >>> env = make_atari_env("ALE/Breakout-v5")
        >>> env.observation_space, env.action_space
        (Box(0, 255, (4, 84, 84), uint8), Discrete(4))
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> obs.shape, obs.dtype, info["lives"]
        ((4, 84, 84), dtype('uint8'), 5)
        >>> env = make_atari_env("Pong", AtariOptions(repeat_action_probability=0.0), frame_stack=2)
        >>> env.observation_space.shape, env.unwrapped.ale.getFloat("repeat_action_probability")
        ((2, 84, 84), 0.0)

    Change logs:
     * v0.1.0 - Initially added.
     * v0.1.0 - Takes one ``AtariOptions`` (the fields are still accepted as keywords); an
       unknown keyword is a ``TypeError`` raised here, not by ``gym.make``.
    """
    caller = "make_atari_env"
    overrides = {name: value for name, value in kwargs.items() if name in FIELD_NAMES}
    make_kwargs = {name: value for name, value in kwargs.items() if name not in FIELD_NAMES}
    options = resolve_options(caller, options, overrides)
    ale_py = import_optional("ale_py")
    gym.register_envs(ale_py)
    full_id = resolve_ale_id(env_id, caller)
    frameskip = make_kwargs.pop("frameskip", 1)
    if frameskip != 1:
        raise ValueError(
            f"{caller}: frameskip={frameskip!r} for the base env; expected frameskip=1 (or no frameskip): the frame "
            f"skip is the frame_skip option (here {options.frame_skip}), done with max-pooling"
        )
    _check_make_kwargs(caller, full_id, make_kwargs)
    env = gym.make(
        full_id,
        frameskip=1,
        # The preprocessing reads the screen from ALE itself; a grayscale base observation
        # just saves copying an RGB screen on every frame.
        obs_type="grayscale" if options.grayscale else "rgb",
        repeat_action_probability=float(options.repeat_action_probability),
        full_action_space=bool(options.full_action_space),
        max_num_frames_per_episode=options.max_num_frames_per_episode,
        **make_kwargs,
    )
    return wrap_atari(env, options)


def _check_make_kwargs(caller: str, full_id: str, make_kwargs: dict[str, Any]) -> None:
    """Refuses the keywords for ``gym.make`` that the ALE env and ``gym.make`` do not take, or that the options set."""
    refused = {"obs_type": "the grayscale option chooses the base env's observation",
               "game": "the env_id chooses the game"}
    ale_env = load_env_creator(gym.registry[full_id].entry_point)
    passed_on = [name for name in (*_keyword_names(ale_env), *_keyword_names(gym.make))
                 if name not in (*FIELD_NAMES, *refused, "frameskip", "id")]
    for name in make_kwargs:
        if name not in passed_on:
            raise unexpected_keyword(caller, name, (*FIELD_NAMES, *passed_on), hint=refused.get(name))


def _keyword_names(function: Any) -> list[str]:
    """The names a callable takes as keywords (its ``**kwargs`` aside)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds]


def _check_game_settings(caller: str, ale_env: gym.Env, options: AtariOptions) -> None:
    """The ALE game settings of ``options`` must be those ``ale_env`` was created with (they cannot change later)."""
    ale = ale_env.ale
    # ALE stores the probability as a float32 (0.3 reads back as 0.30000001...): compare 6 digits.
    created = {
        "repeat_action_probability": round(float(ale.getFloat("repeat_action_probability")), 6),
        "max_num_frames_per_episode": int(ale.getInt("max_num_frames_per_episode")) or None,  # ALE's 0: no limit
    }
    wanted = {
        "repeat_action_probability": round(float(options.repeat_action_probability), 6),
        "max_num_frames_per_episode": options.max_num_frames_per_episode,
    }
    # The action set tells full from minimal, except in games whose minimal set is all 18 actions
    # (either value is then the same game) and with continuous actions (no action set; n is None).
    n = getattr(ale_env.action_space, "n", None)
    if n is not None and len(ale.getLegalActionSet()) != len(ale.getMinimalActionSet()):
        created["full_action_space"] = int(n) == len(ale.getLegalActionSet())
        wanted["full_action_space"] = bool(options.full_action_space)
    differs = [name for name in created if created[name] != wanted[name]]
    if differs:
        game = _game_name(ale_env)
        was = ", ".join(f"{name}={created[name]!r}" for name in differs)
        asked = ", ".join(f"{name}={wanted[name]!r}" for name in differs)
        raise ValueError(
            f"{caller}: the ALE env {game} was created with {was}, not the options' {asked}; these are settings of "
            f"the ALE game, fixed when the env is created: create it with gym.make({game!r}, frameskip=1, {asked}), "
            f"or pass {was} to {caller}, or use make_atari_env({game!r}, ...), which creates it from the options"
        )


def _game_name(env: gym.Env) -> str:
    spec = env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__
