"""ale-py's own vector env (C++ preprocessing and frame stacking), set up like ``make_atari_env``.

``make_atari_vector_env("Breakout", num_envs=8)`` returns an ``ale_py.vector_env.AtariVectorEnv``
whose sub-envs play the game as ``make_atari_env("Breakout")`` does: the same frame skip with
max-pooling, 84x84 grayscale frames resized with ``INTER_AREA``, 4-frame stacks, sticky actions
(0.25), minimal action set, no-op starts, FIRE on reset, an episode per life and sign-clipped
rewards. It is the fast path when many envs are wanted: no Python wrapper runs per step.

With the reset randomness removed (``noop_max=0, fire_reset=False, repeat_action_probability=0``)
both routes produce pixel-identical frames and the same rewards for the same actions; the tests
check this. What differs is listed in ``make_atari_vector_env``'s docstring and in
docs/wrappers.md, measured on ale-py 0.12.1.

The options are one ``AtariOptions``, as for ``make_atari_env``. ale-py is imported only when
an env is built, so ``import wrappers`` works without it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from wrappers.atari_options import FIELD_NAMES, AtariOptions, resolve_options
from wrappers.validation import check_int, import_optional, resolve_ale_id, unexpected_keyword

# No limit: ale-py's vector env has no "never", and 0 truncates at once; 2**31 - 1 frames is 414 days of play.
NO_FRAME_LIMIT = 2**31 - 1

# Keywords make_atari_env takes (and passes to gym.make) or AtariVectorEnv takes under its own
# name, which make_atari_vector_env refuses (a TypeError), with what to use instead.
_REFUSED = {
    "render_mode": "AtariVectorEnv does not render; use make_atari_env(env_id, render_mode='rgb_array') "
                   "for videos or human play",
    "mode": "AtariVectorEnv plays each game's default mode; use make_atari_env(env_id, mode=...) "
            "inside gymnasium.vector.AsyncVectorEnv",
    "difficulty": "AtariVectorEnv plays each game's default difficulty; use make_atari_env(env_id, difficulty=...) "
                  "inside gymnasium.vector.AsyncVectorEnv",
    "obs_type": "the grayscale option chooses the observation (RAM observations: use make_atari_env's base env)",
    "frameskip": "use frame_skip (the frame skip, with max-pooling of the last two frames)",
    "stack_num": "use frame_stack",
    "img_height": "use screen_size=(width, height)",
    "img_width": "use screen_size=(width, height)",
    "maxpool": "the last two frames of each skip are always max-pooled, as in make_atari_env",
    "use_fire_reset": "use fire_reset",
    "reward_clipping": "use clip_rewards",
    "episodic_life": "use life_loss='episodic' (ale-py's episodic_life resets the whole game on every lost life, "
                     "which make_atari_env never does); build ale_py.vector_env.AtariVectorEnv yourself for that",
    "life_loss_info": "use life_loss='episodic', which sets it",
    "batch_size": "AtariVectorEnv with batch_size < num_envs returns a different subset of sub-envs on each step "
                  "(see info['env_id']), which batched learners that read row i as sub-env i cannot use; "
                  "build ale_py.vector_env.AtariVectorEnv yourself for that",
    "continuous": "the action space is Discrete, as in make_atari_env; build ale_py.vector_env.AtariVectorEnv "
                  "yourself for continuous actions",
    "continuous_action_threshold": "the action space is Discrete, as in make_atari_env; build "
                                   "ale_py.vector_env.AtariVectorEnv yourself for continuous actions",
}


def make_atari_vector_env(
    env_id: str,
    num_envs: int,
    options: AtariOptions | None = None,
    *,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    num_threads: int = 0,
    thread_affinity_offset: int = -1,
    **overrides: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of an ALE game in ale-py's ``AtariVectorEnv``, preprocessed like ``make_atari_env``.

    Args:
        env_id: an ALE id (``"ALE/Breakout-v5"``, ``"BreakoutNoFrameskip-v4"``) or a game name
            (``"Breakout"``), as for ``make_atari_env``; the id's registered settings (sticky
            actions, frame skip) are overridden by the options, as there.
        num_envs: the number of sub-envs.
        options: the settings (``AtariOptions()`` if None), as for ``make_atari_env``, with
            the same defaults (``repeat_action_probability=0.25``, not ale-py's 0.0);
            ``max_num_frames_per_episode=None`` means no limit. ``life_loss``:
            ``"episodic"`` (default): ``terminated=True`` on every lost life while the game
            goes on (ale-py's ``life_loss_info=True``); ``"signal"`` and ``"none"``: a life
            loss changes nothing (``terminated`` only at the end of the game); there is no
            ``info["life_loss"]``, a decrease of ``info["lives"]`` is a life loss.
        autoreset_mode: ``NEXT_STEP`` (default, as gymnasium's vector envs) or ``SAME_STEP``;
            ``envs.metadata["autoreset_mode"]`` says which. ``DISABLED`` is not supported.
        num_threads: C++ worker threads (0: one per sub-env, up to the CPU count).
        thread_affinity_offset: pin worker threads to cores from this one on (-1: no pinning).
        **overrides: ``AtariOptions`` fields, replacing those of ``options``. Any other
            keyword is a ``TypeError``; for those users try (``render_mode``, ``mode``,
            ``difficulty``, ``obs_type``, ``frameskip``, ``batch_size``, ale-py's own names
            such as ``episodic_life`` or ``stack_num``, ...) it says what to use instead.

    Returns:
        An ``ale_py.vector_env.AtariVectorEnv``: observations ``uint8 (num_envs, 4, 84, 84)``
        (``(num_envs, 4, 84, 84, 3)`` in RGB), a ``Discrete`` action space per sub-env.

    How it differs from ``make_atari_env`` (in ``gymnasium.vector.AsyncVectorEnv``), ale-py 0.12.1:

    * **No unclipped game score.** ``info`` holds only ``"env_id"``, ``"lives"``,
      ``"frame_number"`` and ``"episode_frame_number"`` (``int32`` arrays, one entry per
      sub-env, no ``"_key"`` masks): no ``"game"``, no ``"life_loss"``, no ``"episode"``.
      With ``clip_rewards=True`` the true score is lost; pass ``clip_rewards=False``, feed
      ``np.sign(rewards)`` to the learner and add up the raw rewards (docs/wrappers.md shows how).
    * **Rewards are** ``int32`` (``float64`` from gymnasium's vector envs).
    * **Life loss** (``"episodic"``): the step after a lost life is an ordinary step (its action
      is played, its reward counts), not an autoreset step; FIRE is not pressed for the new
      life (in Breakout the agent launches the ball itself); a life lost down to 0 lives also
      terminates (``make_atari_env`` leaves that to the game's own end). ``make_atari_env`` instead plays a no-op and FIRE in the following ``reset``.
    * **Resets**: the first stack after a reset is three zero frames and the first frame (four
      copies of it in ``make_atari_env``); 0 to ``noop_max - 1`` no-op frames (1 to
      ``noop_max``), one fewer when FIRE is pressed, and FIRE lasts one frame (a 4-frame step).
    * **Episode cap**: ``max_num_frames_per_episode`` counts the frames played by steps, not
      those of the reset (``make_atari_env`` counts both), so a game may last up to
      ``noop_max`` frames longer.
    * **SAME_STEP**: ``info["final_obs"]`` is one ``uint8`` array of all sub-envs (a row that
      is not done holds its current observation), not an object array with a mask; there is
      no ``"final_info"``.

    Example:
        >>> from wrappers import make_atari_vector_env
        >>> envs = make_atari_vector_env("ALE/Breakout-v5", num_envs=2)
        >>> envs.single_observation_space, envs.single_action_space
        (Box(0, 255, (4, 84, 84), uint8), Discrete(4))
        >>> obs, info = envs.reset(seed=0)
        >>> obs.shape, sorted(info)
        ((2, 4, 84, 84), ['env_id', 'episode_frame_number', 'frame_number', 'lives'])
        >>> obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        >>> rewards.dtype, info["lives"]
        (dtype('int32'), array([5, 5], dtype=int32))
        >>> envs.metadata["autoreset_mode"]
        <AutoresetMode.NEXT_STEP: 'NextStep'>
        >>> envs.close()

    Change logs:
     * v0.1.0 - Initially added.
     * v0.1.0 - Takes one ``AtariOptions`` (the fields are still accepted as keywords); an
       unknown or refused keyword is a ``TypeError`` (was a ``ValueError``).
    """
    caller = "make_atari_vector_env"
    valid = (*FIELD_NAMES, "autoreset_mode", "num_threads", "thread_affinity_offset")
    for name in overrides:
        if name not in FIELD_NAMES:
            raise unexpected_keyword(caller, name, valid, hint=_REFUSED.get(name))
    options = resolve_options(caller, options, overrides)
    check_int(f"{caller}: num_envs", num_envs, minimum=1)
    check_int(f"{caller}: num_threads", num_threads, minimum=0)
    check_int(f"{caller}: thread_affinity_offset", thread_affinity_offset, minimum=-1)
    mode = _autoreset_mode(autoreset_mode)
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ValueError(
            f"{caller}: autoreset_mode={autoreset_mode!r}; AtariVectorEnv supports AutoresetMode.NEXT_STEP and "
            "AutoresetMode.SAME_STEP. For DISABLED, use gymnasium.vector.AsyncVectorEnv of make_atari_env games "
            "with autoreset_mode=AutoresetMode.DISABLED"
        )
    ale_py = import_optional("ale_py")
    vector_env = import_optional("ale_py.vector_env")
    gym.register_envs(ale_py)
    full_id = resolve_ale_id(env_id, caller)
    game = gym.registry[full_id].kwargs.get("game")
    if not isinstance(game, str):
        raise ValueError(f"{caller}: {full_id!r} names no ROM (its registered kwargs have no 'game'); expected an ALE game")
    frames = options.max_num_frames_per_episode
    width, height = options.width_height

    envs = vector_env.AtariVectorEnv(
        game,
        num_envs,
        num_threads=num_threads,
        thread_affinity_offset=thread_affinity_offset,
        max_num_frames_per_episode=NO_FRAME_LIMIT if frames is None else int(frames),
        repeat_action_probability=float(options.repeat_action_probability),
        full_action_space=bool(options.full_action_space),
        autoreset_mode=mode,
        img_height=height,
        img_width=width,
        grayscale=bool(options.grayscale),
        stack_num=int(options.frame_stack),
        frameskip=int(options.frame_skip),
        maxpool=True,
        noop_max=int(options.noop_max),
        # ale-py's episodic_life resets the whole game on each lost life (like Gymnasium's
        # terminal_on_life_loss); life_loss_info ends the episode there and lets the game go on,
        # which is what make_atari_env's "episodic" does.
        episodic_life=False,
        life_loss_info=options.life_loss == "episodic",
        reward_clipping=bool(options.clip_rewards),
        use_fire_reset=bool(options.fire_reset),
    )
    # ale-py 0.12.1 writes autoreset_mode into VectorEnv.metadata, a dict shared by the class and all
    # its instances, so a later env's mode would show up in this one's metadata: give it its own dict.
    envs.metadata = {**envs.metadata, "autoreset_mode": envs.autoreset_mode}
    return envs


def _autoreset_mode(mode: Any) -> AutoresetMode | None:
    """An ``AutoresetMode`` from a member, its value (``"SameStep"``) or name (``"same_step"``); None if none."""
    if isinstance(mode, AutoresetMode):
        return mode
    key = str(mode).replace("_", "").lower()
    return next((m for m in AutoresetMode if m.value.lower() == key), None)
