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

ale-py and opencv are optional dependencies (``pip install "sqn-agents[atari]"``); they are
imported only when an Atari env is built, so ``import wrappers`` works without them.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.core import ActType, ObsType
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, RecordEpisodeStatistics

from wrappers.life_loss import LIFE_LOSS_MODES, EpisodicLifeEnv

# The info key of the unclipped game statistics {"r": return, "l": length, "t": seconds}.
# Not "episode": users commonly add their own RecordEpisodeStatistics on top (which records the
# clipped, per-life episodes under "episode" and refuses to overwrite an existing key).
GAME_INFO_KEY = "game"

LIFE_LOSS_OPTIONS: tuple[str, ...] = (*LIFE_LOSS_MODES, "none")
ATARI_EXTRA_HINT = 'pip install "sqn-agents[atari]"'


class FireResetEnv(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """Presses FIRE after every reset, for games that wait for FIRE before they start.

    In games such as Breakout nothing happens until FIRE is pressed; a random early policy can
    then spend a whole episode waiting. This wrapper (not in Gymnasium) takes one FIRE step
    after ``reset`` and returns that observation. The FIRE step's reward is dropped; if that
    step ends the episode, the env is reset again.

    A game without a FIRE action is refused with a ``ValueError`` rather than silently left
    alone: wrapping it is a mistake that would otherwise go unnoticed. ``make_atari_env`` only
    adds this wrapper to games whose action meanings include FIRE.

    Example:
        >>> import gymnasium as gym
        >>> import ale_py
        >>> from wrappers import FireResetEnv
        >>> gym.register_envs(ale_py)
        >>> env = FireResetEnv(gym.make("ALE/Breakout-v5"))
        >>> obs, info = env.reset(seed=0)
        >>> info["episode_frame_number"]  # the 4 frames of the FIRE step, played during reset
        4
    """

    def __init__(self, env: gym.Env[ObsType, ActType]) -> None:
        """Wraps ``env``, an ALE env (or wrapped one) whose action meanings include ``"FIRE"``."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        get_meanings = getattr(env.unwrapped, "get_action_meanings", None)
        if get_meanings is None:
            raise ValueError(
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
    """

    def __init__(self, env: gym.Env[ObsType, ActType]) -> None:
        """Wraps ``env``; its rewards are replaced by their sign."""
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.RewardWrapper.__init__(self, env)

    def reward(self, reward: SupportsFloat) -> float:
        """The sign of ``reward``, as a float."""
        return float(np.sign(float(reward)))


def wrap_atari(
    env: gym.Env,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int | tuple[int, int] = 84,
    grayscale: bool = True,
    fire_reset: bool = True,
    life_loss: Literal["episodic", "signal", "none"] = "episodic",
    clip_rewards: bool = True,
    frame_stack: int = 4,
) -> gym.Env:
    """Applies the Atari preprocessing pipeline to an ALE env created with ``frameskip=1``.

    ``make_atari_env`` creates the ALE env and calls this; call it yourself to preprocess an
    ALE env you created (it must have ``frameskip=1``: the frame skip happens here, with
    max-pooling). The options are those of ``make_atari_env``; see there.

    Example:
        >>> import gymnasium as gym
        >>> import ale_py
        >>> from wrappers import wrap_atari
        >>> gym.register_envs(ale_py)
        >>> env = wrap_atari(gym.make("ALE/Pong-v5", frameskip=1), frame_stack=2, life_loss="none")
        >>> env.observation_space
        Box(0, 255, (2, 84, 84), uint8)
    """
    _import_optional("cv2")
    ale_env = env.unwrapped
    if getattr(ale_env, "ale", None) is None or not hasattr(ale_env, "get_action_meanings"):
        raise ValueError(
            f"wrap_atari: {type(ale_env).__name__} is not an ALE env; expected an Atari game from ale-py, "
            'e.g. gym.make("ALE/Breakout-v5", frameskip=1)'
        )
    base_frameskip = getattr(ale_env, "_frameskip", None)
    if base_frameskip != 1:
        raise ValueError(
            f"wrap_atari: the base env repeats each action frameskip={base_frameskip!r} times; expected frameskip=1, "
            f'e.g. gym.make("{_game_name(env)}", frameskip=1): the frame skip (frame_skip={frame_skip}) '
            "is done by the preprocessing, which max-pools the last two frames"
        )
    _check_int("noop_max", noop_max, minimum=0)
    _check_int("frame_skip", frame_skip, minimum=1)
    _check_int("frame_stack", frame_stack, minimum=1)
    sizes = screen_size if isinstance(screen_size, tuple) else (screen_size,)
    if len(sizes) not in (1, 2) or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(
            f"wrap_atari: screen_size={screen_size!r}; expected a positive int (a square image) or a (width, height) "
            "tuple of positive ints"
        )
    if life_loss not in LIFE_LOSS_OPTIONS:
        raise ValueError(f"wrap_atari: life_loss={life_loss!r}; expected one of {LIFE_LOSS_OPTIONS}")

    env = AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=False,  # life losses are EpisodicLifeEnv's job, which keeps the game going
        grayscale_obs=grayscale,
        scale_obs=False,
    )
    env = RecordEpisodeStatistics(env, stats_key=GAME_INFO_KEY)
    if life_loss != "none":
        env = EpisodicLifeEnv(env, mode=life_loss)
    if fire_reset and "FIRE" in ale_env.get_action_meanings():
        env = FireResetEnv(env)
    if clip_rewards:
        env = ClipRewardEnv(env)
    return FrameStackObservation(env, stack_size=frame_stack)


def make_atari_env(
    env_id: str,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int | tuple[int, int] = 84,
    grayscale: bool = True,
    fire_reset: bool = True,
    life_loss: Literal["episodic", "signal", "none"] = "episodic",
    clip_rewards: bool = True,
    frame_stack: int = 4,
    repeat_action_probability: float = 0.25,
    full_action_space: bool = False,
    max_num_frames_per_episode: int | None = 108_000,
    **make_kwargs: Any,
) -> gym.Env:
    """Creates an ALE game with the standard DQN-style preprocessing.

    Args:
        env_id: an ALE id (``"ALE/Breakout-v5"``, ``"BreakoutNoFrameskip-v4"``) or a game name
            (``"Breakout"``, meaning ``"ALE/Breakout-v5"``).
        noop_max: a reset plays a random number of no-ops, 1 to ``noop_max`` (0: none).
        frame_skip: each action is repeated for this many frames; the observation is the
            pixel-wise maximum of the last two (Atari sprites flicker).
        screen_size: the observation's frame size, an int for a square or ``(width, height)``.
        grayscale: grayscale frames; ``False`` keeps RGB (the stack is then ``(4, 84, 84, 3)``).
        fire_reset: press FIRE on reset, in games whose actions include FIRE.
        life_loss: ``"episodic"``: an episode ends on each life loss, and the game is reset only
            when it is over; ``"signal"``: only ``info["life_loss"]`` reports it; ``"none"``.
        clip_rewards: rewards clipped to their sign (the true score stays in ``info["game"]``).
        frame_stack: the observation stacks this many of the latest frames on axis 0.
        repeat_action_probability: sticky actions: each frame repeats the previous action with
            this probability (0.25 as in ALE v5 and Machado et al. 2018; 0.0 as in DQN 2015).
        full_action_space: all 18 Atari actions instead of the game's minimal set.
        max_num_frames_per_episode: ALE truncates a game after this many frames (108,000
            frames, 30 minutes of play, 27,000 agent steps at ``frame_skip=4``; ``None``: never).
        **make_kwargs: passed on to ``gym.make`` (``render_mode``, ``mode``, ``difficulty``...).

    Returns:
        The wrapped env. Its ``info`` has ``"lives"`` (from ALE), ``"life_loss"`` (unless
        ``life_loss="none"``) and, on the step where the real game ends, ``"game"``:
        ``{"r": unclipped score, "l": length in agent steps, "t": seconds}``.

    Example:
        >>> from wrappers import make_atari_env
        >>> env = make_atari_env("ALE/Breakout-v5")
        >>> env.observation_space, env.action_space
        (Box(0, 255, (4, 84, 84), uint8), Discrete(4))
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> obs.shape, obs.dtype, info["lives"]
        ((4, 84, 84), dtype('uint8'), 5)
    """
    ale_py = _import_optional("ale_py")
    gym.register_envs(ale_py)
    full_id = _resolve_ale_id(env_id)
    if make_kwargs.get("frameskip", 1) != 1:
        raise ValueError(
            f"make_atari_env: frameskip={make_kwargs['frameskip']!r} for the base env; expected frameskip=1 (or no "
            f"frameskip): the frame skip is the frame_skip option (here {frame_skip}), done with max-pooling"
        )
    if "obs_type" in make_kwargs:
        raise ValueError(
            f"make_atari_env: obs_type={make_kwargs['obs_type']!r}; expected no obs_type: the grayscale option chooses it"
        )
    if not 0.0 <= repeat_action_probability <= 1.0:
        raise ValueError(
            f"make_atari_env: repeat_action_probability={repeat_action_probability!r}; expected a probability in [0, 1]"
        )
    if max_num_frames_per_episode is not None:
        _check_int("max_num_frames_per_episode", max_num_frames_per_episode, minimum=1)
    make_kwargs["frameskip"] = 1
    env = gym.make(
        full_id,
        # The preprocessing reads the screen from ALE itself; a grayscale base observation
        # just saves copying an RGB screen on every frame.
        obs_type="grayscale" if grayscale else "rgb",
        repeat_action_probability=repeat_action_probability,
        full_action_space=full_action_space,
        max_num_frames_per_episode=max_num_frames_per_episode,
        **make_kwargs,
    )
    return wrap_atari(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        grayscale=grayscale,
        fire_reset=fire_reset,
        life_loss=life_loss,
        clip_rewards=clip_rewards,
        frame_stack=frame_stack,
    )


def _resolve_ale_id(env_id: str, caller: str = "make_atari_env") -> str:
    """``env_id`` if it is a registered id, else ``"ALE/{env_id}-v5"``; refuses ids that are not ALE games."""
    if not isinstance(env_id, str):
        raise ValueError(f"{caller}: env_id={env_id!r}; expected a string such as 'ALE/Breakout-v5' or 'Breakout'")
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


def _import_optional(module: str) -> Any:
    """Imports an optional Atari dependency, or says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise gym.error.DependencyNotInstalled(
            f"{module} is not installed; the Atari wrappers need ale-py and opencv: {ATARI_EXTRA_HINT}"
        ) from e


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")


def _game_name(env: gym.Env) -> str:
    spec = env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__
