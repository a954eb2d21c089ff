"""sqn-train's resume rules, in-process: which flags the command line set, how they meet args.json,
the metrics record cut at the checkpoint's step, and the video trigger that counts whole games."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest

from sqn_agents.loop import evaluate, play_episodes
from sqn_agents.train import (
    METRIC_FIELDS,
    RecordGames,
    RunLog,
    TrainArgs,
    _args_to_dict,
    explicit_flags,
    first_of_each_evaluation,
    flag_paths,
    parse_args,
    resume_args,
    truncate_metrics,
)


def tyro_flags() -> set[str]:
    """Every --flag tyro's parser for TrainArgs accepts."""
    import tyro.extras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        parser = tyro.extras.get_parser(TrainArgs)
    flags: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            flags.update(o for o in action.option_strings if o.startswith("--") and o != "--help")
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(parser)
    return flags


def test_every_flag_tyro_accepts_is_known_and_maps_to_its_field():
    spellings = flag_paths()
    flags = tyro_flags()
    assert len(flags) > 40
    for flag in flags:
        path = spellings[flag[2:]]
        assert explicit_flags([flag]) == {path}
        assert explicit_flags([flag.replace("-", "_").replace("__", "--", 1)]) == {path}  # tyro takes both
    assert {"total_steps", "threads", "flush_denormal", "device", "progress", "config.learning_rate",
            "atari.noop_max"} <= set(spellings.values())


def test_explicit_flags_reads_names_not_values():
    argv = ["--total-steps", "50000", "--no-progress", "--config.learning_rate=3e-4", "--config.hidden-sizes",
            "64", "64", "--config.no-autotune-alpha", "--output-dir", "runs/x", "--not-a-flag"]
    assert explicit_flags(argv) == {"total_steps", "progress", "config.learning_rate", "config.hidden_sizes",
                                    "config.autotune_alpha", "output_dir"}
    assert explicit_flags([]) == frozenset()
    args = parse_args(argv[:-1])  # what tyro makes of the same flags
    assert (args.total_steps, args.progress, args.config.learning_rate) == (50_000, False, 3e-4)


@pytest.fixture
def saved_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    args = TrainArgs(total_steps=12_000, checkpoint_every=3000, device="auto", threads=2, progress=False,
                     flush_denormal=False, output_dir=str(run))
    (run / "args.json").write_text(json.dumps(_args_to_dict(args)))
    return run, args


def test_resume_keeps_the_saved_flags_unless_given(saved_run):
    run, saved = saved_run
    argv = ["--resume", str(run)]
    resumed, changes = resume_args(parse_args(argv), explicit_flags(argv))
    assert changes == {}
    assert resumed == dataclasses.replace(saved, resume=str(run))  # its own total_steps, threads, progress, ...

    argv = ["--resume", str(run), "--device", "cpu", "--seed", "7", "--eval-every", "5", "--total-steps", "20000",
            "--threads", "1", "--flush-denormal", "--progress", "--checkpoint-every", "3000"]
    resumed, changes = resume_args(parse_args(argv), explicit_flags(argv))
    assert changes == {"device": ("auto", "cpu"), "seed": (0, 7), "eval_every": (2500, 5),
                       "total_steps": (12_000, 20_000), "threads": (2, 1), "flush_denormal": (False, True),
                       "progress": (False, True)}  # checkpoint_every was given with its saved value
    assert (resumed.device, resumed.seed, resumed.eval_every, resumed.total_steps) == ("cpu", 7, 5, 20_000)
    assert (resumed.threads, resumed.flush_denormal, resumed.progress) == (1, True, True)


def test_resume_refuses_to_change_what_the_checkpoint_fixed(saved_run):
    run, _ = saved_run
    for argv, flag in [(["--config.learning-rate", "0.1"], "--config.learning-rate"),
                       (["--env-id", "Acrobot-v1"], "--env-id"), (["--atari.noop-max", "3"], "--atari.noop-max")]:
        with pytest.raises(ValueError, match=flag):
            resume_args(parse_args(["--resume", str(run), *argv]), explicit_flags(argv))
    argv = ["--config.learning-rate", "0.001"]  # the saved value: allowed
    assert resume_args(parse_args(["--resume", str(run), *argv]), explicit_flags(argv))[1] == {}
    with pytest.raises(ValueError, match="no args.json"):
        resume_args(TrainArgs(resume=str(run / "nothing")), ())


def test_resume_from_python_takes_the_fields_that_differ_from_the_defaults():
    from sqn_agents.train import _differences_from_defaults

    assert _differences_from_defaults(TrainArgs(resume="r", device="cpu")) == {"resume", "device"}
    assert _differences_from_defaults(TrainArgs()) == frozenset()


def write_rows(path, steps):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        for s in steps:
            writer.writerow({"kind": "learn", "env_step": s, "wall_time": s / 100, "q_loss": 1.0})


def test_truncate_metrics_drops_the_rows_past_the_step(tmp_path):
    path = tmp_path / "metrics.csv"
    write_rows(path, [100, 200, 300, 400, 500])
    assert truncate_metrics(path, 300) == 2
    with open(path, newline="") as f:
        assert [int(r["env_step"]) for r in csv.DictReader(f)] == [100, 200, 300]
    path.write_text("kind,env_step,wall_time,other\nlearn,1,0.1,3\n")
    with pytest.raises(ValueError, match="other"):
        truncate_metrics(path, 0)
    assert path.read_text() == "kind,env_step,wall_time,other\nlearn,1,0.1,3\n"  # untouched


def test_a_resumed_run_log_has_each_step_once_in_csv_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = RunLog(tmp_path)
    for s in (100, 200, 300, 400, 500):
        log.row("learn", s, s / 100, q_loss=float(s))
    log.close()
    # A resumed run starts later, in a new process. TensorBoard reads event files in name order and the names
    # begin with the creation second (then a per-process counter compared as text), so a second writer made
    # within the same second in this process could sort first and its purge would be read before the rows it
    # purges. Start it in the next second, as a real resume would.
    time.sleep(max(0.0, 1.05 - (time.time() % 1.0)))
    log = RunLog(tmp_path, resume_step=300)  # the checkpoint was at 300; 400 and 500 come again
    for s in (400, 500, 600):
        log.row("learn", s, s / 100, q_loss=-float(s))
    log.close()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["env_step"]), float(r["q_loss"])) for r in rows] == [
        (100, 100.0), (200, 200.0), (300, 300.0), (400, -400.0), (500, -500.0), (600, -600.0)]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("learn/q_loss")] == [
        (100, 100.0), (200, 200.0), (300, 300.0), (400, -400.0), (500, -500.0), (600, -600.0)]


class LivesEnv(gym.Env):
    """A game of 3 lives, 4 steps each, in the shape of wrappers.make_atari_env with life_loss='episodic':
    ``terminated`` with ``info["life_loss"]`` at each lost life, ``info["game"]`` when the game ends; a
    ``reset()`` after a lost life continues the game. Renders its step count."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = "rgb_array"
        self.lives, self.t, self.score = 3, 0, 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.lives == 0 or seed is not None:
            self.lives, self.score = 3, 0.0
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        self.score += 1.0
        info = {}
        if self.t == 4:
            self.lives -= 1
            info["life_loss"] = True
            if self.lives == 0:
                info["game"] = {"r": self.score, "l": 12}
        return np.zeros(1, np.float32), 0.5, self.t == 4, False, info

    def render(self):
        return np.full((8, 8, 3), self.t, np.uint8)


def test_video_records_the_first_whole_game_of_each_evaluation(tmp_path):
    videos: list[tuple[str, int]] = []

    class Recorder(RecordGames):
        def stop_recording(self):
            videos.append((self._video_name, len(self.recorded_frames)))
            self.recorded_frames, self.recording = [], False

    env = Recorder(LivesEnv(), str(tmp_path / "games"), name_prefix="eval", episode_trigger=first_of_each_evaluation(2),
                   disable_logger=True)
    for _ in range(2):  # two evaluations of two games each
        assert play_episodes(lambda obs: 0, env, episodes=2, seed=0) == [12.0, 12.0]
    env.close()
    # games 0 and 2 (the first of each evaluation), each whole: 3 lives x 4 steps + the frames of 3 resets
    assert videos == [("eval-episode-0", 15), ("eval-episode-2", 15)]

    plain: list[int] = []  # gymnasium's RecordVideo with the same trigger counts lives, not games

    class PlainRecorder(gym.wrappers.RecordVideo):
        def stop_recording(self):
            plain.append(len(self.recorded_frames))
            self.recorded_frames, self.recording = [], False

    env = PlainRecorder(LivesEnv(), str(tmp_path / "plain"), episode_trigger=first_of_each_evaluation(2),
                        disable_logger=True)
    play_episodes(lambda obs: 0, env, episodes=2, seed=0)
    env.close()
    assert plain and max(plain) == 5  # single lives


def test_evaluate_plays_greedy_whole_games():
    from sqn_agents import SQNAgent, SQNConfig

    env = LivesEnv()
    agent = SQNAgent(env.observation_space, env.action_space, SQNConfig(hidden_sizes=(4,)), device="cpu")
    assert evaluate(agent, env, episodes=3, seed=5) == [12.0, 12.0, 12.0]  # the game score, not 0.5 x 4
    assert agent.training  # back in training mode
