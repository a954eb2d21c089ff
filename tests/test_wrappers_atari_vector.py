"""make_atari_vector_env: ale-py's AtariVectorEnv set up like make_atari_env, and SQNAgent on it."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

import ale_py.vector_env  # noqa: E402
from gymnasium.spaces import Discrete  # noqa: E402
from gymnasium.vector import AutoresetMode  # noqa: E402

import wrappers.atari_vector  # noqa: E402
from sqn_agents import SQNAgent, SQNConfig  # noqa: E402
from wrappers import AtariOptions, make_atari_env, make_atari_vector_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def recorded(monkeypatch):
    """The (game, num_envs, kwargs) of every AtariVectorEnv that make_atari_vector_env builds."""
    calls: list[tuple[str, int, dict]] = []
    real = ale_py.vector_env.AtariVectorEnv

    def recording(game, num_envs, **kwargs):
        calls.append((game, num_envs, kwargs))
        return real(game, num_envs, **kwargs)

    monkeypatch.setattr(ale_py.vector_env, "AtariVectorEnv", recording)
    return calls


# ---------------------------------------------------------------------- spaces and steps
@pytest.mark.parametrize("options", [{}, {"grayscale": False}, {"screen_size": (96, 72), "frame_stack": 2}])
def test_spaces_match_make_atari_env(options):
    single = make_atari_env("Breakout", **options)
    envs = make_atari_vector_env("Breakout", 3, **options)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space == Discrete(4)
    assert envs.observation_space.shape == (3, *single.observation_space.shape)
    assert envs.observation_space.dtype == np.uint8
    envs.close()


def test_default_spaces_and_a_few_steps():
    envs = make_atari_vector_env("ALE/Breakout-v5", 2)
    assert envs.single_observation_space.shape == (4, 84, 84)
    assert envs.observation_space.shape == (2, 4, 84, 84)
    envs.action_space.seed(0)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    for _ in range(10):
        obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert rewards.shape == terminated.shape == truncated.shape == (2,)
        assert set(np.unique(rewards)) <= {-1, 0, 1}  # clipped
    assert sorted(info) == ["env_id", "episode_frame_number", "frame_number", "lives"]
    assert info["lives"].tolist() == [5, 5]
    envs.close()


def test_takes_the_options_of_make_atari_env():
    """Both take one AtariOptions (or its fields as keywords) and restate none of its fields."""
    fields = {f.name for f in dataclasses.fields(AtariOptions)}
    for function in (make_atari_env, make_atari_vector_env):
        params = inspect.signature(function).parameters
        assert params["options"].default is None, function
        assert not fields & set(params), function
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), function


@pytest.mark.parametrize("env_id,game", [("ALE/Breakout-v5", "breakout"), ("Breakout", "breakout"),
                                         ("BreakoutNoFrameskip-v4", "breakout"), ("MsPacman", "ms_pacman")])
def test_id_forms(recorded, env_id, game):
    make_atari_vector_env(env_id, 1).close()
    assert recorded[-1][0] == game
    # a -v4 id's registered settings (no sticky actions) are overridden, as in make_atari_env
    assert recorded[-1][2]["repeat_action_probability"] == 0.25


# ---------------------------------------------------------------------- option mapping
def test_defaults_map_to_make_atari_env_settings(recorded):
    make_atari_vector_env("Breakout", 2).close()
    game, num_envs, kwargs = recorded[-1]
    assert (game, num_envs) == ("breakout", 2)
    assert kwargs == {
        "num_threads": 0, "thread_affinity_offset": -1, "max_num_frames_per_episode": 108_000,
        "repeat_action_probability": 0.25, "full_action_space": False, "autoreset_mode": AutoresetMode.NEXT_STEP,
        "img_height": 84, "img_width": 84, "grayscale": True, "stack_num": 4, "frameskip": 4, "maxpool": True,
        "noop_max": 30, "episodic_life": False, "life_loss_info": True, "reward_clipping": True,
        "use_fire_reset": True,
    }


@pytest.mark.parametrize("options,expected", [
    ({"life_loss": "episodic"}, {"episodic_life": False, "life_loss_info": True}),
    ({"life_loss": "signal"}, {"episodic_life": False, "life_loss_info": False}),
    ({"life_loss": "none"}, {"episodic_life": False, "life_loss_info": False}),
    ({"repeat_action_probability": 0.0}, {"repeat_action_probability": 0.0}),
    ({"screen_size": (96, 72)}, {"img_width": 96, "img_height": 72}),
    ({"max_num_frames_per_episode": None}, {"max_num_frames_per_episode": 2**31 - 1}),
    ({"noop_max": 0, "frame_skip": 3, "frame_stack": 2, "fire_reset": False, "clip_rewards": False,
      "full_action_space": True, "grayscale": False},
     {"noop_max": 0, "frameskip": 3, "stack_num": 2, "use_fire_reset": False, "reward_clipping": False,
      "full_action_space": True, "grayscale": False}),
    ({"autoreset_mode": "same_step", "num_threads": 1}, {"autoreset_mode": AutoresetMode.SAME_STEP, "num_threads": 1}),
])
def test_options_are_passed_through(recorded, options, expected):
    make_atari_vector_env("Breakout", 1, **options).close()
    kwargs = recorded[-1][2]
    assert {k: kwargs[k] for k in expected} == expected


def test_sticky_actions_are_honoured():
    """With repeat_action_probability=1 every action repeats the previous one, so the actions do not matter."""
    def frames(p: float, actions: np.ndarray) -> np.ndarray:
        envs = make_atari_vector_env("Breakout", 1, repeat_action_probability=p, noop_max=0)
        envs.reset(seed=0)
        out = [envs.step(np.array([a]))[0] for a in actions]
        envs.close()
        return np.stack(out)

    left, right = np.full(30, 3), np.full(30, 2)  # Breakout: 2 RIGHT, 3 LEFT
    assert np.array_equal(frames(1.0, left), frames(1.0, right))
    assert not np.array_equal(frames(0.0, left), frames(0.0, right))


@pytest.mark.parametrize("life_loss", ["episodic", "none"])
def test_life_loss_ends_the_episode_and_the_game_goes_on(life_loss):
    """FIRE only: the ball is launched and the paddle never moves, so lives are lost quickly."""
    envs = make_atari_vector_env("Breakout", 1, life_loss=life_loss, repeat_action_probability=0.0)
    obs, info = envs.reset(seed=0)
    lives, frame = int(info["lives"][0]), int(info["episode_frame_number"][0])
    for _ in range(200):
        obs, reward, terminated, truncated, info = envs.step(np.array([1]))
        if int(info["lives"][0]) < lives:
            break
    assert int(info["lives"][0]) == lives - 1
    assert bool(terminated[0]) == (life_loss == "episodic")
    obs, reward, terminated, truncated, info = envs.step(np.array([1]))
    # the game goes on: the same life count and a growing frame counter, not a reset
    assert int(info["lives"][0]) == lives - 1 and int(info["episode_frame_number"][0]) > frame
    envs.close()


def test_frames_and_rewards_match_make_atari_env_without_reset_randomness():
    options = {"noop_max": 0, "fire_reset": False, "repeat_action_probability": 0.0, "life_loss": "none",
               "clip_rewards": False}
    single = make_atari_env("Breakout", **options)
    envs = make_atari_vector_env("Breakout", 1, **options)
    obs1, _ = single.reset(seed=0)
    obs2, _ = envs.reset(seed=0)
    assert np.array_equal(obs1[-1], obs2[0, -1])  # the stacks differ before the first steps: 3 zero frames here
    rng = np.random.default_rng(0)
    for step in range(120):
        action = int(rng.integers(4))
        obs1, r1, te1, tr1, _ = single.step(action)
        obs2, r2, te2, tr2, _ = envs.step(np.array([action]))
        assert np.array_equal(obs1[-1], obs2[0, -1]) and r1 == r2[0] and te1 == te2[0] and tr1 == tr2[0]
        if step >= 3:  # 4 steps after the reset, the whole stacks agree
            assert np.array_equal(obs1, obs2[0])
        if te1 or tr1:
            break
    envs.close()


def test_each_env_keeps_its_own_autoreset_mode():
    """ale-py writes the mode into a metadata dict shared by all instances; ours get their own."""
    a = make_atari_vector_env("Breakout", 1)
    b = make_atari_vector_env("Breakout", 1, autoreset_mode=AutoresetMode.SAME_STEP)
    assert a.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert b.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    a.close()
    b.close()


@pytest.mark.slow
@pytest.mark.parametrize("game", ["Breakout", "Pong", "SpaceInvaders", "Qbert"])
def test_the_docs_game_end_rule_finds_exactly_the_real_resets(game):
    """docs/wrappers.md counts a game as over when a sub-env is truncated or terminates with 0 lives.

    Checked against what the env does: with NEXT_STEP autoreset, the step after a real game end
    is a reset, whose game frame counter falls back (a lost life keeps the counter going).
    """
    envs = make_atari_vector_env(game, 4, num_threads=1)
    envs.action_space.seed(0)
    _, info = envs.reset(seed=0)
    frames, said_over = info["episode_frame_number"].copy(), np.zeros(4, bool)
    games = 0
    for _ in range(6_000):
        _, _, terminated, truncated, info = envs.step(envs.action_space.sample())
        really_reset = info["episode_frame_number"] < frames
        np.testing.assert_array_equal(really_reset, said_over)
        said_over = truncated | (terminated & (info["lives"] == 0))
        frames = info["episode_frame_number"].copy()
        games += int(really_reset.sum())
    envs.close()
    assert games >= 20, f"only {games} games ended: the check would prove little"


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("option,value,hint", [
    ("render_mode", "rgb_array", "make_atari_env"),
    ("mode", 1, "AsyncVectorEnv"),
    ("difficulty", 1, "AsyncVectorEnv"),
    ("obs_type", "ram", "grayscale"),
    ("frameskip", 4, "frame_skip"),
    ("episodic_life", True, "life_loss='episodic'"),
    ("life_loss_info", True, "life_loss='episodic'"),
    ("stack_num", 4, "frame_stack"),
    ("reward_clipping", False, "clip_rewards"),
    ("use_fire_reset", False, "fire_reset"),
    ("img_height", 84, "screen_size"),
    ("maxpool", False, "max-pooled"),
    ("batch_size", 1, "env_id"),
    ("continuous", True, "Discrete"),
    ("sticky", 0.5, "expected one of: noop_max, frame_skip"),
])
def test_unsupported_options_are_refused(option, value, hint):
    # a keyword make_atari_vector_env does not take is a TypeError (a ValueError before AtariOptions)
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{option}'") as e:
        make_atari_vector_env("Breakout", 2, **{option: value})
    assert hint in str(e.value)


@pytest.mark.parametrize("options,match", [
    ({"noop_max": -1}, "noop_max"),
    ({"frame_skip": 0}, "frame_skip"),
    ({"frame_stack": 0}, "frame_stack"),
    ({"screen_size": (84,)}, "screen_size"),
    ({"life_loss": "sometimes"}, "life_loss"),
    ({"repeat_action_probability": 1.5}, "repeat_action_probability"),
    ({"max_num_frames_per_episode": 0}, "max_num_frames_per_episode"),
    ({"autoreset_mode": AutoresetMode.DISABLED}, "DISABLED"),
    ({"autoreset_mode": "sometimes"}, "autoreset_mode"),
])
def test_bad_values_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        make_atari_vector_env("Breakout", 2, **options)


@pytest.mark.parametrize("env_id,error", [("CartPole-v1", ValueError), ("NoSuchGame", ValueError), (3, TypeError)])
def test_non_atari_ids_are_refused(env_id, error):
    with pytest.raises(error, match="make_atari_vector_env"):
        make_atari_vector_env(env_id, 2)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"num_envs": 0}, ValueError, "num_envs=0; expected an integer >= 1"),
    ({"num_envs": 2.0}, TypeError, "num_envs=2.0 is a float"),
    ({"num_threads": -1}, ValueError, "num_threads=-1; expected an integer >= 0"),
    ({"thread_affinity_offset": -2}, ValueError, "thread_affinity_offset=-2; expected an integer >= -1"),
    ({"thread_affinity_offset": "0"}, TypeError, "thread_affinity_offset='0' is a str"),
])
def test_vector_env_arguments_are_checked(kwargs, error, match):
    kwargs = {"num_envs": 2, **kwargs}
    with pytest.raises(error, match=match):
        make_atari_vector_env("Breakout", **kwargs)


def test_options_and_overrides(recorded):
    options = AtariOptions(frame_stack=2, noop_max=5)
    make_atari_vector_env("Breakout", 1, options, noop_max=0, screen_size=(96, 72)).close()
    kwargs = recorded[-1][2]
    assert (kwargs["stack_num"], kwargs["noop_max"], kwargs["img_width"], kwargs["img_height"]) == (2, 0, 96, 72)
    assert options == AtariOptions(frame_stack=2, noop_max=5)  # the options object is left as it was
    with pytest.raises(TypeError, match="options=.* is a dict; expected an AtariOptions or None"):
        make_atari_vector_env("Breakout", 1, {"noop_max": 0})


# ---------------------------------------------------------------------- with the agent
@pytest.mark.parametrize("autoreset_mode,steps", [(AutoresetMode.NEXT_STEP, 100), (AutoresetMode.SAME_STEP, 50)])
def test_sqn_agent_batched_loop(autoreset_mode, steps):
    # 100 frames per game: every sub-env is truncated every 25 steps, so the autoreset path runs
    envs = make_atari_vector_env("Breakout", 2, autoreset_mode=autoreset_mode, max_num_frames_per_episode=100)
    agent = SQNAgent(envs.single_observation_space, envs.single_action_space,
                     SQNConfig(learning_starts=50, batch_size=8, buffer_size=500), seed=0,
                     autoreset_mode=envs.metadata.get("autoreset_mode", "next_step"))
    obs, _ = envs.reset(seed=0)
    dones, metrics = 0, {}
    for _ in range(steps):
        actions = agent.act(obs)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        agent.observe(obs, actions, rewards, next_obs, terminated, truncated, info=info)
        metrics = agent.learn() or metrics
        dones += int((terminated | truncated).sum())
        obs = next_obs
    assert dones >= 2
    assert "q_loss" in metrics and np.isfinite(metrics["q_loss"])
    stored = 2 * steps - (dones if autoreset_mode == AutoresetMode.NEXT_STEP else 0)  # NEXT_STEP: reset steps dropped
    assert agent.env_steps == stored
    envs.close()


# ---------------------------------------------------------------------- docs and independence
def test_docstring_example_runs():
    result = doctest.testmod(wrappers.atari_vector, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_building_one_imports_neither_torch_nor_sqn_agents():
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from wrappers import make_atari_vector_env\n"
        "envs = make_atari_vector_env('Breakout', 2)\n"
        "envs.reset(seed=0)\n"
        "envs.step(np.array([1, 1]))\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'sqn_agents', 'ale_py')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"torch": False, "sqn_agents": False, "ale_py": True}
