"""AtariOptions: validation of every field, the keyword-override path, unknown keywords, wrap_atari
with every option (the ALE game settings checked against the env), and sqn-train's --atari.* flags."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete
from gymnasium.wrappers import FrameStackObservation

import wrappers.atari
from wrappers import (
    AtariOptions,
    ClipRewardEnv,
    EpisodicLifeEnv,
    FireResetEnv,
    make_atari_env,
    wrap_atari,
)
from wrappers.atari_options import FIELD_NAMES

ale_py = pytest.importorskip("ale_py")
gym.register_envs(ale_py)

ROOT = Path(__file__).resolve().parents[1]

# A value other than the default for every field, all valid together.
NON_DEFAULT = dict(
    noop_max=0, frame_skip=3, screen_size=(64, 48), grayscale=False, fire_reset=False, life_loss="none",
    clip_rewards=False, frame_stack=2, repeat_action_probability=0.0, full_action_space=True,
    max_num_frames_per_episode=None,
)


def wrapper_chain(env: gym.Env) -> list[type]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(type(env))
        env = env.env
    return chain


# ---------------------------------------------------------------------- the dataclass
def test_the_fields_and_their_defaults():
    assert FIELD_NAMES == tuple(NON_DEFAULT)
    assert dataclasses.asdict(AtariOptions()) == dict(
        noop_max=30, frame_skip=4, screen_size=84, grayscale=True, fire_reset=True, life_loss="episodic",
        clip_rewards=True, frame_stack=4, repeat_action_probability=0.25, full_action_space=False,
        max_num_frames_per_episode=108_000,
    )
    assert set(NON_DEFAULT.items()).isdisjoint(dataclasses.asdict(AtariOptions()).items())


def test_frozen_hashable_and_valid_with_every_field_changed():
    options = AtariOptions(**NON_DEFAULT)
    assert dataclasses.asdict(options) == NON_DEFAULT
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.noop_max = 1  # type: ignore[misc]
    assert hash(options) == hash(AtariOptions(**NON_DEFAULT))


def test_screen_size_from_json_is_a_tuple_again():
    """sqn-train writes args.json with dataclasses.asdict and reads it back with AtariOptions(**...)."""
    options = AtariOptions(screen_size=(96, 72), max_num_frames_per_episode=None)
    restored = AtariOptions(**json.loads(json.dumps(dataclasses.asdict(options))))
    assert restored == options and restored.screen_size == (96, 72)
    assert AtariOptions(screen_size=(96, 72)).width_height == (96, 72)
    assert AtariOptions(screen_size=84).width_height == (84, 84)
    assert type(AtariOptions(screen_size=np.int64(84)).screen_size) is int


@pytest.mark.parametrize(("field", "value", "message"), [
    ("noop_max", 1.5, r"AtariOptions\.noop_max=1\.5 is a float; expected an integer >= 0"),
    ("noop_max", True, r"AtariOptions\.noop_max=True is a bool; expected an integer >= 0"),
    ("frame_skip", "4", r"AtariOptions\.frame_skip='4' is a str; expected an integer >= 1"),
    ("screen_size", 84.0, r"AtariOptions\.screen_size=84\.0 is a float; expected a positive int"),
    ("screen_size", (84, "84"), r"AtariOptions\.screen_size=\(84, '84'\) holds a str"),
    ("screen_size", "84", r"AtariOptions\.screen_size='84' is a str"),
    ("grayscale", 1, r"AtariOptions\.grayscale=1 is a int; expected a bool"),
    ("fire_reset", "no", r"AtariOptions\.fire_reset='no' is a str; expected a bool"),
    ("life_loss", None, r"AtariOptions\.life_loss=None is a NoneType; expected one of \('episodic', 'signal', 'none'\)"),
    ("clip_rewards", None, r"AtariOptions\.clip_rewards=None is a NoneType; expected a bool"),
    ("frame_stack", 4.0, r"AtariOptions\.frame_stack=4\.0 is a float; expected an integer >= 1"),
    ("repeat_action_probability", "0.25", r"AtariOptions\.repeat_action_probability='0\.25' is a str; expected a probability"),
    ("repeat_action_probability", False, r"AtariOptions\.repeat_action_probability=False is a bool"),
    ("full_action_space", 0, r"AtariOptions\.full_action_space=0 is a int; expected a bool"),
    ("max_num_frames_per_episode", 1e5, r"AtariOptions\.max_num_frames_per_episode=100000\.0 is a float; "
                                         r"expected an integer >= 1 or None"),
])
def test_a_wrong_type_is_a_type_error_naming_the_field(field, value, message):
    with pytest.raises(TypeError, match=message):
        AtariOptions(**{field: value})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("noop_max", -1, r"AtariOptions\.noop_max=-1; expected an integer >= 0"),
    ("frame_skip", 0, r"AtariOptions\.frame_skip=0; expected an integer >= 1"),
    ("screen_size", 0, r"AtariOptions\.screen_size=0; expected a positive int"),
    ("screen_size", (84,), r"AtariOptions\.screen_size=\(84,\) has 1 entries"),
    ("screen_size", (84, 0), r"AtariOptions\.screen_size=\(84, 0\); expected a positive int"),
    ("life_loss", "sometimes", r"AtariOptions\.life_loss='sometimes'; expected one of \('episodic', 'signal', 'none'\)"),
    ("frame_stack", 0, r"AtariOptions\.frame_stack=0; expected an integer >= 1"),
    ("repeat_action_probability", 1.5, r"AtariOptions\.repeat_action_probability=1\.5; expected a probability in \[0, 1\]"),
    ("repeat_action_probability", -0.1, r"repeat_action_probability=-0\.1; expected a probability"),
    ("repeat_action_probability", float("nan"), r"repeat_action_probability=nan; expected a probability"),
    ("max_num_frames_per_episode", 0, r"AtariOptions\.max_num_frames_per_episode=0; expected an integer >= 1 or None"),
])
def test_a_wrong_value_is_a_value_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        AtariOptions(**{field: value})


def test_every_field_is_validated():
    """Each field has a wrong-type case above (a field added without a check would be missed here)."""
    typed = {"noop_max", "frame_skip", "screen_size", "grayscale", "fire_reset", "life_loss", "clip_rewards",
             "frame_stack", "repeat_action_probability", "full_action_space", "max_num_frames_per_episode"}
    assert typed == set(FIELD_NAMES)
    for field in FIELD_NAMES:
        with pytest.raises(TypeError, match=f"AtariOptions.{field}="):
            AtariOptions(**{field: object()})


# ---------------------------------------------------------------------- overrides and unknown keywords
@pytest.fixture
def wrapped_with(monkeypatch):
    """The options each wrap_atari call inside make_atari_env receives."""
    seen: list[AtariOptions] = []
    real = wrappers.atari.wrap_atari

    def spy(env, options=None, **overrides):
        seen.append(options)
        return real(env, options, **overrides)

    monkeypatch.setattr(wrappers.atari, "wrap_atari", spy)
    return seen


@pytest.mark.parametrize("field", FIELD_NAMES)
def test_every_field_is_a_keyword_override_of_make_atari_env(wrapped_with, field):
    base = AtariOptions(noop_max=7)
    make_atari_env("Pong", base, **{field: NON_DEFAULT[field]}).close()
    assert wrapped_with[-1] == dataclasses.replace(base, **{field: NON_DEFAULT[field]})
    assert base == AtariOptions(noop_max=7)


def test_overrides_are_validated_like_the_fields():
    with pytest.raises(ValueError, match=r"AtariOptions\.frame_stack=0"):
        make_atari_env("Pong", AtariOptions(), frame_stack=0)
    with pytest.raises(TypeError, match=r"AtariOptions\.grayscale='no'"):
        wrap_atari(gym.make("ALE/Pong-v5", frameskip=1), grayscale="no")


def test_options_of_the_wrong_type_are_refused():
    with pytest.raises(TypeError, match=r"make_atari_env: options=\{'noop_max': 0\} is a dict; expected an AtariOptions"):
        make_atari_env("Pong", {"noop_max": 0})
    with pytest.raises(TypeError, match=r"wrap_atari: options='episodic' is a str; expected an AtariOptions"):
        wrap_atari(gym.make("ALE/Pong-v5", frameskip=1), "episodic")


def test_an_unknown_keyword_is_a_type_error_naming_the_valid_ones():
    fields = ", ".join(FIELD_NAMES)
    with pytest.raises(TypeError, match=rf"wrap_atari\(\) got an unexpected keyword argument 'sticky'; "
                                        rf"expected one of: {fields}$"):
        wrap_atari(gym.make("ALE/Pong-v5", frameskip=1), sticky=0.5)
    # make_atari_env passes the ALE env's own arguments on to gym.make, and names them too
    with pytest.raises(TypeError, match=rf"make_atari_env\(\) got an unexpected keyword argument 'sticky'; "
                                        rf"expected one of: {fields}, mode, difficulty, .*render_mode"):
        make_atari_env("Pong", sticky=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'game': the env_id chooses the game"):
        make_atari_env("Pong", game="breakout")


def test_make_atari_env_passes_the_ale_arguments_on():
    env = make_atari_env("Breakout", AtariOptions(noop_max=0, fire_reset=False), mode=4, difficulty=1,
                         max_episode_steps=12)
    assert env.unwrapped._game_mode == 4 and env.unwrapped._game_difficulty == 1
    env.reset(seed=0)
    # gym.make's TimeLimit wraps the base env, whose steps are frames: 12 frames are 3 agent steps
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


# ---------------------------------------------------------------------- wrap_atari with every option
def test_wrap_atari_takes_every_option_and_plays_the_game_of_make_atari_env():
    options = AtariOptions(**NON_DEFAULT)
    base = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=True,
                    max_num_frames_per_episode=None)
    env = wrap_atari(base, options)
    assert env.observation_space == Box(0, 255, (2, 48, 64, 3), np.uint8)
    assert env.action_space == Discrete(18)
    assert not {ClipRewardEnv, EpisodicLifeEnv, FireResetEnv} & set(wrapper_chain(env))
    assert (env.get_wrapper_attr("noop_max"), env.get_wrapper_attr("frame_skip")) == (0, 3)
    made = make_atari_env("Breakout", options)
    assert made.observation_space == env.observation_space and made.action_space == env.action_space
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, made.reset(seed=0)[0])
    for action in [1, 1, 4, 3, 11, 0, 2]:
        obs, reward, *_ = env.step(action)
        made_obs, made_reward, *_ = made.step(action)
        np.testing.assert_array_equal(obs, made_obs)
        assert reward == made_reward


def test_wrap_atari_keeps_the_pipeline_options_when_every_one_is_given_as_a_keyword():
    env = wrap_atari(gym.make("ALE/Breakout-v5", frameskip=1), noop_max=5, frame_skip=2, screen_size=60,
                     grayscale=True, fire_reset=True, life_loss="signal", clip_rewards=True, frame_stack=3,
                     repeat_action_probability=0.25, full_action_space=False, max_num_frames_per_episode=108_000)
    assert wrapper_chain(env)[:4] == [FrameStackObservation, ClipRewardEnv, FireResetEnv, EpisodicLifeEnv]
    assert env.observation_space == Box(0, 255, (3, 60, 60), np.uint8)
    assert env.get_wrapper_attr("mode") == "signal"
    assert (env.get_wrapper_attr("noop_max"), env.get_wrapper_attr("frame_skip")) == (5, 2)


@pytest.mark.parametrize(("make_kwargs", "options", "created"), [
    ({"repeat_action_probability": 0.0}, {}, "repeat_action_probability=0.0"),
    ({}, {"repeat_action_probability": 0.1}, "repeat_action_probability=0.25"),
    ({"full_action_space": True}, {}, "full_action_space=True"),
    ({}, {"full_action_space": True}, "full_action_space=False"),
    ({"max_num_frames_per_episode": 500}, {}, "max_num_frames_per_episode=500"),
    ({"max_num_frames_per_episode": None}, {}, "max_num_frames_per_episode=None"),
])
def test_wrap_atari_refuses_game_settings_the_env_was_not_created_with(make_kwargs, options, created):
    base = gym.make("ALE/Breakout-v5", frameskip=1, **make_kwargs)
    with pytest.raises(ValueError, match=rf"wrap_atari: the ALE env ALE/Breakout-v5 was created with {created}, "
                                         r"not the options' .*fixed when the env is created: create it with gym\.make"):
        wrap_atari(base, **options)


def test_wrap_atari_reads_the_probability_that_ale_stores_as_float32():
    base = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.3)
    assert base.unwrapped.ale.getFloat("repeat_action_probability") != 0.3  # 0.30000001192...
    wrap_atari(base, repeat_action_probability=0.3)


def test_wrap_atari_on_a_v4_env_needs_its_settings():
    # BreakoutNoFrameskip-v4 has no sticky actions; the defaults ask for 0.25
    with pytest.raises(ValueError, match="created with repeat_action_probability=0.0, not the options' "
                                         "repeat_action_probability=0.25"):
        wrap_atari(gym.make("BreakoutNoFrameskip-v4"))
    env = wrap_atari(gym.make("BreakoutNoFrameskip-v4"), repeat_action_probability=0.0)
    assert env.observation_space == Box(0, 255, (4, 84, 84), np.uint8)


def test_wrap_atari_does_not_check_the_action_set_where_minimal_is_full():
    """Some games' minimal action set is all 18 actions: either value of full_action_space is that game."""
    base = gym.make("ALE/Venture-v5", frameskip=1)
    assert base.action_space == Discrete(18)
    assert wrap_atari(base, full_action_space=True).action_space == Discrete(18)


# ---------------------------------------------------------------------- sqn-train
def test_train_flags_reach_the_env():
    from sqn_agents.train import TrainArgs, make_env, parse_args

    args = parse_args(["--env-id", "ALE/Pong-v5", "--atari.frame-stack", "2", "--atari.screen-size", "64", "48",
                       "--atari.repeat-action-probability", "0", "--atari.max-num-frames-per-episode", "None",
                       "--atari.no-clip-rewards", "--atari.life-loss", "signal", "--atari.full-action-space",
                       "--atari.noop-max", "3", "--atari.frame-skip", "2", "--atari.no-grayscale",
                       "--atari.no-fire-reset"])
    assert isinstance(args.atari, AtariOptions)
    assert args.atari == AtariOptions(frame_stack=2, screen_size=(64, 48), repeat_action_probability=0.0,
                                      max_num_frames_per_episode=None, clip_rewards=False, life_loss="signal",
                                      full_action_space=True, noop_max=3, frame_skip=2, grayscale=False,
                                      fire_reset=False)
    env = make_env(args.env_id, args.atari)
    assert env.observation_space == Box(0, 255, (2, 48, 64, 3), np.uint8)
    assert env.action_space == Discrete(18)
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0 and ale.getInt("max_num_frames_per_episode") == 0
    assert not {ClipRewardEnv, FireResetEnv} & set(wrapper_chain(env))
    assert env.get_wrapper_attr("mode") == "signal"
    assert (env.get_wrapper_attr("noop_max"), env.get_wrapper_attr("frame_skip")) == (3, 2)
    env.close()
    assert TrainArgs().atari == AtariOptions()


def test_train_rejects_bad_atari_flags(capsys):
    from sqn_agents.train import parse_args

    with pytest.raises(SystemExit):  # tyro prints AtariOptions' message and exits
        parse_args(["--atari.frame-stack", "0"])
    assert "AtariOptions.frame_stack=0; expected an integer >= 1" in capsys.readouterr().err


def test_the_atari_100k_preset_is_the_protocol():
    from sqn_agents.train import PRESETS

    assert PRESETS["atari-100k"].atari == AtariOptions(
        repeat_action_probability=0.0, noop_max=30, max_num_frames_per_episode=108_000, life_loss="episodic",
        clip_rewards=True, full_action_space=False, frame_skip=4, frame_stack=4, screen_size=84, grayscale=True,
        fire_reset=True,
    )


def test_importing_sqn_train_loads_neither_ale_py_nor_cv2():
    code = ("import json, sys\nimport sqn_agents.train\n"
            "print(json.dumps({m: m in sys.modules for m in ('wrappers', 'ale_py', 'cv2')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"wrappers": True, "ale_py": False, "cv2": False}
