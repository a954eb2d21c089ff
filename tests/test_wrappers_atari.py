"""The Atari pipeline and its pieces: pixels against an independent route, life loss, fire reset,
reward clipping, the unclipped game score, truncation, errors, check_env and vector envs.

Games run from the ROMs that ale-py ships (no network). Everything is seeded.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, RecordEpisodeStatistics

from wrappers import (
    GAME_INFO_KEY,
    ClipRewardEnv,
    EpisodicLifeEnv,
    FireResetEnv,
    make_atari_env,
    wrap_atari,
)

ale_py = pytest.importorskip("ale_py")
gym.register_envs(ale_py)

BREAKOUT_FIRE = 1


# ---------------------------------------------------------------------- a scripted stand-in for ALE
class ScriptedLivesEnv(gym.Env):
    """A game whose life count follows a script; it records every action and reset it gets.

    ``lives[t]`` is the life count after ``t`` steps of the current game; the game is
    terminated after ``terminate_at`` steps and truncated after ``truncate_at`` steps.
    The observation is the step count of the game, so a test can see what was played.
    """

    observation_space = Box(0, 10_000, (1,), np.int64)

    def __init__(
        self,
        lives: list[int],
        terminate_at: int | None = None,
        truncate_at: int | None = None,
        rewards: list[float] | None = None,
        meanings: tuple[str, ...] = ("NOOP", "FIRE", "RIGHT"),
    ) -> None:
        self.script, self.terminate_at, self.truncate_at = lives, terminate_at, truncate_at
        self.rewards = rewards or []
        self.meanings = list(meanings)
        self.action_space = Discrete(len(meanings))
        self.actions: list[int] = []
        self.resets = 0
        self.t = 0

    def get_action_meanings(self) -> list[str]:
        return self.meanings

    def _lives(self) -> int:
        return self.script[min(self.t, len(self.script) - 1)]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.resets += 1
        self.t = 0
        return np.array([self.t]), {"lives": self._lives()}

    def step(self, action):
        self.actions.append(int(action))
        reward = self.rewards[self.t] if self.t < len(self.rewards) else 0.0
        self.t += 1
        terminated = self.t == self.terminate_at
        truncated = self.t == self.truncate_at
        return np.array([self.t]), reward, terminated, truncated, {"lives": self._lives()}


def wrapper_chain(env: gym.Env) -> list[type]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(type(env))
        env = env.env
    return chain


# ---------------------------------------------------------------------- pixels: an independent route
def reference_frame(frames: list[np.ndarray]) -> np.ndarray:
    """Grayscale by cv2 from the RGB screen, max over the last two frames, resized with INTER_AREA."""
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[-2:]]
    return cv2.resize(np.maximum(gray[0], gray[1]), (84, 84), interpolation=cv2.INTER_AREA)


def test_observations_match_the_raw_screen_processed_by_hand():
    """The stacked observation equals the raw RGB screens, grayscaled, max-pooled and resized by hand."""
    env = make_atari_env("ALE/Breakout-v5", noop_max=0)  # sticky actions on: both ALEs share the seed
    raw = gym.make("ALE/Breakout-v5", frameskip=1, obs_type="rgb", repeat_action_probability=0.25)
    obs, _ = env.reset(seed=3)
    raw.reset(seed=3)

    def raw_agent_step(action: int) -> tuple[np.ndarray, float]:
        frames, total = [], 0.0
        for _ in range(4):
            frame, reward, *_ = raw.step(action)
            frames.append(frame)
            total += float(reward)
        return reference_frame(frames), total

    first, _ = raw_agent_step(BREAKOUT_FIRE)  # the reset presses FIRE
    expected = [first] * 4  # the stack starts as four copies of the reset frame
    np.testing.assert_array_equal(obs, np.stack(expected))
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(12):
        action = int(rng.integers(4))
        obs, reward, terminated, truncated, _ = env.step(action)
        frame, raw_reward = raw_agent_step(action)
        changed += not np.array_equal(frame, expected[-1])
        expected = expected[1:] + [frame]
        assert obs.dtype == np.uint8 and obs.shape == (4, 84, 84)
        np.testing.assert_array_equal(obs, np.stack(expected))
        assert reward == np.sign(raw_reward)
        assert not (terminated or truncated)
    assert changed >= 6, "the screen barely changed: the comparison would prove little"


def test_max_pooling_uses_the_last_two_frames_of_the_skip():
    """On a flickering game (Asteroids draws sprites on alternate frames) the pooled frame is not frame 4 alone."""
    env = make_atari_env("ALE/Asteroids-v5", noop_max=0, repeat_action_probability=0.0, fire_reset=False)
    raw = gym.make("ALE/Asteroids-v5", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=0)
    raw.reset(seed=0)
    pooled_differs_from_last = 0
    for _ in range(10):
        obs, *_ = env.step(0)
        frames = [raw.step(0)[0] for _ in range(4)]
        np.testing.assert_array_equal(obs[-1], reference_frame(frames))
        last_only = cv2.resize(cv2.cvtColor(frames[-1], cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA)
        pooled_differs_from_last += not np.array_equal(obs[-1], last_only)
    assert pooled_differs_from_last == 10


def test_noop_starts_play_1_to_noop_max_noops_chosen_by_the_seed():
    env = make_atari_env("Breakout", fire_reset=False, life_loss="none")
    frames = [env.reset(seed=seed)[1]["episode_frame_number"] for seed in range(5)]
    assert all(1 <= f <= 30 for f in frames), frames
    assert len(set(frames)) > 2, frames
    assert frames == [env.reset(seed=seed)[1]["episode_frame_number"] for seed in range(5)]
    no_noops = make_atari_env("Breakout", fire_reset=False, life_loss="none", noop_max=0)
    assert no_noops.reset(seed=0)[1]["episode_frame_number"] == 0


# ---------------------------------------------------------------------- defaults and options
def test_default_pipeline_and_base_env_settings():
    env = make_atari_env("Breakout")
    assert wrapper_chain(env)[:6] == [
        FrameStackObservation, ClipRewardEnv, FireResetEnv, EpisodicLifeEnv, RecordEpisodeStatistics,
        AtariPreprocessing,
    ]
    assert env.observation_space == Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == Discrete(4)
    ale = env.unwrapped.ale
    assert env.unwrapped.spec.id == "ALE/Breakout-v5"
    assert env.unwrapped._frameskip == 1
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert ale.getInt("max_num_frames_per_episode") == 108_000
    preprocessing = env.get_wrapper_attr("noop_max"), env.get_wrapper_attr("frame_skip")
    assert preprocessing == (30, 4)
    assert env.get_wrapper_attr("mode") == "episodic"


def test_options_change_the_pipeline():
    env = make_atari_env(
        "ALE/Pong-v5", grayscale=False, frame_stack=2, screen_size=(64, 48), clip_rewards=False,
        life_loss="none", fire_reset=False, full_action_space=True, repeat_action_probability=0.0,
    )
    assert env.observation_space == Box(0, 255, (2, 48, 64, 3), np.uint8)
    assert env.action_space == Discrete(18)
    assert not {ClipRewardEnv, EpisodicLifeEnv, FireResetEnv} & set(wrapper_chain(env))
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 48, 64, 3)
    assert FireResetEnv not in wrapper_chain(make_atari_env("Freeway"))  # no FIRE: no fire reset
    assert make_atari_env("BreakoutNoFrameskip-v4").unwrapped.spec.id == "BreakoutNoFrameskip-v4"


def test_the_env_spec_recreates_the_pipeline():
    """Each wrapper records its constructor arguments, so gym.make(env.spec) builds the same env."""
    env = make_atari_env("Breakout", life_loss="signal", frame_stack=2, noop_max=5)
    copy = gym.make(env.spec)
    assert wrapper_chain(copy) == wrapper_chain(env)
    assert copy.get_wrapper_attr("mode") == "signal" and copy.get_wrapper_attr("noop_max") == 5
    np.testing.assert_array_equal(env.reset(seed=1)[0], copy.reset(seed=1)[0])
    for action in [1, 2, 3, 0, 2]:
        np.testing.assert_array_equal(env.step(action)[0], copy.step(action)[0])


# ---------------------------------------------------------------------- fire reset
def test_fire_reset_presses_fire_once_after_reset():
    base = ScriptedLivesEnv([3], meanings=("NOOP", "RIGHT", "FIRE"))
    env = FireResetEnv(base)
    obs, info = env.reset(seed=0)
    assert base.actions == [2] and base.resets == 1  # FIRE found by its meaning, not assumed to be 1
    assert obs[0] == 1 and info["lives"] == 3


def test_fire_reset_resets_again_if_the_fire_step_ends_the_game():
    base = ScriptedLivesEnv([3], terminate_at=1)
    obs, _ = FireResetEnv(base).reset(seed=0)
    assert base.resets == 2 and obs[0] == 0


def test_fire_reset_on_a_game_without_fire_is_an_error():
    with pytest.raises(ValueError, match=r"ALE/Freeway-v5 has no FIRE action \(its actions: NOOP, UP, DOWN\)"):
        FireResetEnv(gym.make("ALE/Freeway-v5", frameskip=1))
    with pytest.raises(TypeError, match="no get_action_meanings"):  # not an ALE env: a wrong type
        FireResetEnv(gym.make("CartPole-v1"))


def test_fire_reset_on_breakout_plays_the_fire_step():
    env = FireResetEnv(gym.make("ALE/Breakout-v5", repeat_action_probability=0.0))
    _, info = env.reset(seed=0)
    assert info["episode_frame_number"] == 4
    assert "seeds" in info  # the reset's info is kept


# ---------------------------------------------------------------------- life loss (scripted)
def test_episodic_life_ends_the_episode_on_a_life_loss_and_keeps_the_game():
    base = ScriptedLivesEnv([3, 3, 2, 2, 1, 1, 0], terminate_at=6)
    env = EpisodicLifeEnv(base, mode="episodic")
    _, info = env.reset(seed=0)
    assert info == {"lives": 3, "life_loss": False}
    assert env.step(2)[2:] == (False, False, {"lives": 3, "life_loss": False})
    assert env.step(2)[2:] == (True, False, {"lives": 2, "life_loss": True})
    obs, info = env.reset()  # not a reset of the game: one NOOP step
    assert base.resets == 1 and base.actions == [2, 2, 0] and obs[0] == 3
    assert info == {"lives": 2, "life_loss": False}
    assert env.step(2)[2:] == (True, False, {"lives": 1, "life_loss": True})
    env.reset()
    # The last life: lives reach 0 as the game ends; the game's own terminal ends the episode.
    assert env.step(2)[2:] == (True, False, {"lives": 0, "life_loss": True})
    obs, info = env.reset()  # the game is over: a real reset
    assert base.resets == 2 and obs[0] == 0 and info["lives"] == 3


def test_episodic_life_zero_lives_before_game_over_does_not_end_the_episode_early():
    base = ScriptedLivesEnv([1, 1, 0, 0, 0], terminate_at=4)  # 0 lives shown 2 steps before the end
    env = EpisodicLifeEnv(base)
    env.reset(seed=0)
    results = [env.step(0)[2:4] + (env.lives,) for _ in range(4)]
    assert results == [(False, False, 1), (False, False, 0), (False, False, 0), (True, False, 0)]
    env.reset()
    assert base.resets == 2


def test_episodic_life_truncated_game_is_really_reset():
    base = ScriptedLivesEnv([3], truncate_at=2)
    env = EpisodicLifeEnv(base)
    env.reset(seed=0)
    env.step(0)
    assert env.step(0)[2:4] == (False, True)
    env.reset()
    assert base.resets == 2


def test_episodic_life_reset_with_a_seed_is_a_real_reset():
    base = ScriptedLivesEnv([3, 2, 2])
    env = EpisodicLifeEnv(base)
    env.reset(seed=0)
    assert env.step(0)[2] is True
    env.reset(seed=1)
    assert base.resets == 2 and env.lives == 3


def test_episodic_life_noop_step_that_ends_the_game_falls_back_to_a_reset():
    base = ScriptedLivesEnv([3, 2, 2], terminate_at=2)
    env = EpisodicLifeEnv(base)
    env.reset(seed=0)
    assert env.step(0)[2] is True
    obs, info = env.reset()
    assert base.resets == 2 and obs[0] == 0 and info["lives"] == 3


def test_signal_mode_reports_life_loss_without_ending_the_episode():
    base = ScriptedLivesEnv([2, 1, 1, 0], terminate_at=3)
    env = EpisodicLifeEnv(base, mode="signal")
    env.reset(seed=0)
    steps = [env.step(0)[2:] for _ in range(3)]
    assert steps == [
        (False, False, {"lives": 1, "life_loss": True}),
        (False, False, {"lives": 1, "life_loss": False}),
        (True, False, {"lives": 0, "life_loss": True}),
    ]
    env.reset()
    assert base.resets == 2


def test_episodic_life_errors():
    with pytest.raises(ValueError, match=r"mode='always' is not a life-loss mode; expected one of \('episodic', 'signal'\)"):
        EpisodicLifeEnv(ScriptedLivesEnv([1]), mode="always")
    with pytest.raises(ValueError, match=r"reset\(\) info has no 'lives' key"):
        EpisodicLifeEnv(gym.make("CartPole-v1")).reset(seed=0)


# ---------------------------------------------------------------------- life loss (Breakout)
def play(env: gym.Env, rng: np.random.Generator) -> tuple[list[dict], int]:
    """Random actions until the episode ends; returns the step infos and the number of steps."""
    infos, done = [], False
    while not done:
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        infos.append(info)
        done = terminated or truncated
    return infos, len(infos)


def test_breakout_episodic_mode_one_episode_per_life_then_a_real_reset():
    env = make_atari_env("Breakout", repeat_action_probability=0.0)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    lives = [info["lives"]]
    for episode in range(5):
        infos, _ = play(env, rng)
        assert infos[-1]["life_loss"] and infos[-1]["lives"] == 4 - episode
        assert (GAME_INFO_KEY in infos[-1]) == (episode == 4)  # the score comes when the game ends
        assert not any(i["life_loss"] for i in infos[:-1])
        _, info = env.reset()
        lives.append(info["lives"])
    assert lives == [5, 4, 3, 2, 1, 5]
    assert info["episode_frame_number"] <= 30 + 4  # a new game: no-ops and FIRE only


def test_breakout_signal_mode_one_episode_per_game():
    env = make_atari_env("Breakout", life_loss="signal", repeat_action_probability=0.0)
    env.reset(seed=0)
    infos, steps = play(env, np.random.default_rng(0))
    assert [i["lives"] for i in infos if i["life_loss"]] == [4, 3, 2, 1, 0]
    assert infos[-1][GAME_INFO_KEY]["l"] == steps + 1  # + the FIRE step of the reset


# ---------------------------------------------------------------------- rewards and the game score
def test_clip_reward_env_clips_to_the_sign():
    base = ScriptedLivesEnv([1], rewards=[5.0, -3.0, 0.0, 0.5, -0.2, 1.0])
    env = ClipRewardEnv(base)
    env.reset(seed=0)
    rewards = [env.step(0)[1] for _ in range(6)]
    assert rewards == [1.0, -1.0, 0.0, 1.0, -1.0, 1.0]
    assert all(type(r) is float for r in rewards)


def test_info_carries_the_unclipped_game_score():
    """Two identical pipelines, one clipping: the clipped rewards are the signs, the game score the true sum."""
    options = dict(life_loss="signal", max_num_frames_per_episode=1_600)  # truncated after 400 agent steps
    clipped = make_atari_env("SpaceInvaders", **options)
    unclipped = make_atari_env("SpaceInvaders", clip_rewards=False, **options)
    clipped.reset(seed=0)
    unclipped.reset(seed=0)
    rng = np.random.default_rng(0)
    raw_rewards, done = [], False
    while not done:
        action = int(rng.integers(6))
        _, reward, terminated, truncated, info = clipped.step(action)
        _, raw_reward, *_ = unclipped.step(action)
        assert reward == np.sign(raw_reward)
        raw_rewards.append(raw_reward)
        done = terminated or truncated
    assert max(raw_rewards) > 1, "no reward above 1: clipping was not exercised"
    assert info[GAME_INFO_KEY]["r"] == pytest.approx(sum(raw_rewards))
    assert info[GAME_INFO_KEY]["l"] == len(raw_rewards) + 1  # + the FIRE step of the reset


# ---------------------------------------------------------------------- truncation at the frame limit
@pytest.mark.parametrize("life_loss", ["episodic", "signal"])
def test_truncation_at_the_frame_limit(life_loss):
    env = make_atari_env("Breakout", max_num_frames_per_episode=60, noop_max=0, life_loss=life_loss)
    env.reset(seed=0)
    steps = []
    for _ in range(20):
        _, _, terminated, truncated, info = env.step(0)
        steps.append((terminated, truncated))
        if terminated or truncated:
            break
    # 60 frames: the FIRE step of the reset (4 frames) and 14 agent steps of 4 frames
    assert steps == [(False, False)] * 13 + [(False, True)]
    assert info["episode_frame_number"] == 60
    assert info[GAME_INFO_KEY]["l"] == 15
    _, info = env.reset()
    assert info["episode_frame_number"] == 4  # the game was really reset


# ---------------------------------------------------------------------- errors
def test_non_ale_and_unknown_ids_are_refused():
    with pytest.raises(ValueError, match=r"'CartPole-v1' is not an ALE env \(its entry point is"):
        make_atari_env("CartPole-v1")
    with pytest.raises(ValueError, match=r"'NoSuchGame' is neither a registered env id nor an Atari game name"):
        make_atari_env("NoSuchGame")
    with pytest.raises(TypeError, match="CartPoleEnv is not an ALE env"):  # an env object of the wrong type
        wrap_atari(gym.make("CartPole-v1"))


def test_a_base_env_with_frame_skip_is_refused():
    with pytest.raises(ValueError, match=r"frameskip=4 times; expected frameskip=1, e\.g\. gym\.make\(\"ALE/Breakout-v5\", frameskip=1\)"):
        wrap_atari(gym.make("ALE/Breakout-v5"))
    with pytest.raises(ValueError, match="frameskip=4 for the base env; expected frameskip=1"):
        make_atari_env("Breakout", frameskip=4)
    assert make_atari_env("Breakout", frameskip=1).unwrapped._frameskip == 1


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (dict(noop_max=-1), r"noop_max=-1; expected an integer >= 0"),
        (dict(frame_skip=0), r"frame_skip=0; expected an integer >= 1"),
        (dict(frame_stack=0), r"frame_stack=0; expected an integer >= 1"),
        (dict(screen_size=0), r"screen_size=0; expected a positive int"),
        (dict(life_loss="sometimes"), r"life_loss='sometimes'; expected one of \('episodic', 'signal', 'none'\)"),
        (dict(repeat_action_probability=1.5), r"repeat_action_probability=1.5; expected a probability in \[0, 1\]"),
        (dict(max_num_frames_per_episode=0), r"max_num_frames_per_episode=0; expected an integer >= 1"),
    ],
)
def test_bad_options_are_refused(option, message):
    with pytest.raises(ValueError, match=message):
        make_atari_env("Breakout", **option)


# Wrong types are a TypeError (Gymnasium's convention; these were ValueErrors before AtariOptions).
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (dict(frame_stack=2.0), r"frame_stack=2.0 is a float; expected an integer >= 1"),
        (dict(obs_type="ram"), r"unexpected keyword argument 'obs_type': the grayscale option chooses"),
    ],
)
def test_options_of_the_wrong_type_are_refused(option, message):
    with pytest.raises(TypeError, match=message):
        make_atari_env("Breakout", **option)


@pytest.mark.parametrize("module", ["ale_py", "cv2"])
def test_a_missing_optional_dependency_names_the_extra(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(gym.error.DependencyNotInstalled, match=rf'{module} is not installed.*pip install "sqn-agents\[atari\]"'):
        make_atari_env("Breakout")


# ---------------------------------------------------------------------- Gymnasium checks and vector envs
def test_check_env_passes_on_make_atari_env():
    env = make_atari_env("ALE/Breakout-v5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)  # rendering is ALE's, untouched by the wrappers
    # check_env always notes that the env is wrapped; nothing else may be reported.
    others = [str(w.message) for w in caught if "is different from the unwrapped version" not in str(w.message)]
    assert others == []


@pytest.mark.parametrize("vector_env", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_vector_envs_of_the_pipeline_run(vector_env):
    envs = vector_env([functools.partial(make_atari_env, "Breakout", life_loss="signal")] * 2)
    try:
        envs.action_space.seed(0)
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        for _ in range(5):
            obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        assert obs.shape == (2, 4, 84, 84) and rewards.shape == (2,)
        assert infos["lives"].tolist() == [5, 5] and infos["life_loss"].dtype == bool
        assert envs.single_observation_space == Box(0, 255, (4, 84, 84), np.uint8)
    finally:
        envs.close()


# ---------------------------------------------------------------------- the example
def test_random_play_example_prints_game_scores():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "examples/atari_random_play.py"), "--games", "2"],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    games = [line for line in out.splitlines() if line.startswith("game ")]
    assert len(games) == 2 and all("(5 episodes" in line for line in games), out
