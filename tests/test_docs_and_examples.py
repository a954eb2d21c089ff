"""The README's custom loop, docs/multidiscrete.md's first example and the examples run as written
(with smaller step counts)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_loop() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    loops = [b for b in blocks if "agent.observe(" in b and "agent.learn()" in b]
    assert loops, "the README lost its custom-loop example"
    return loops[0]


def test_readme_custom_loop_runs(tmp_path, monkeypatch):
    code = readme_loop()
    assert "range(100_000)" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("range(100_000)", "range(1_500)"), "README.md", "exec"), namespace)
    assert (tmp_path / "runs/cartpole/agent/checkpoint.json").is_file()
    assert namespace["agent"].env_steps == 1_500


@pytest.mark.slow
def test_cartpole_custom_loop_example_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/cartpole_custom_loop.py"), "--steps", "2000", "--out", str(tmp_path / "a")],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "greedy evaluation of the reloaded agent" in out


def test_sqn_train_writes_the_run_folder(tmp_path):
    from sqn_agents.train import main

    run = tmp_path / "run"
    main(["--total-steps", "1200", "--eval-every", "600", "--eval-episodes", "2", "--no-progress",
          "--output-dir", str(run), "--config.learning-starts", "500", "--config.hidden-sizes", "32"])
    for name in ("metrics.csv", "learning_curve.png", "summary.json", "args.json", "checkpoint/checkpoint.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("kind,env_step,wall_time,episode_return")
    assert "eval," in (run / "metrics.csv").read_text()
    import torch

    assert torch.tensor([1e-40]).mul(1.0).item() != 0.0  # flush-to-zero was turned off again after the run


def test_sqn_train_resume_continues_the_run(tmp_path):
    from sqn_agents import SQNAgent
    from sqn_agents.train import main, read_metrics

    run = tmp_path / "run"
    common = ["--eval-every", "0", "--no-progress", "--log-every", "200"]
    main(["--total-steps", "800", "--output-dir", str(run), "--config.learning-starts", "300",
          "--config.hidden-sizes", "16", *common])
    first = read_metrics(run / "metrics.csv")
    main(["--resume", str(run), "--total-steps", "1400", *common])
    rows = read_metrics(run / "metrics.csv")
    assert len(rows["learn"]) > len(first["learn"])  # appended, not overwritten
    assert max(r["env_step"] for r in rows["learn"]) > 800
    agent = SQNAgent.load(run / "checkpoint", device="cpu")
    assert agent.env_steps == 1400
    assert agent.config.hidden_sizes == (16,)  # the run's own config, from args.json


@pytest.mark.slow
def test_atari_custom_loop_example_runs():
    pytest.importorskip("ale_py")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/atari_custom_loop.py"), "--game", "Pong", "--steps", "400"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "replay FrameStackReplayBuffer" in out  # frame stacks get the frame-deduplicated replay
    assert "400 agent steps (1600 frames)" in out


@pytest.mark.slow
def test_sqn_train_video_records_evaluation_episodes(tmp_path):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    from sqn_agents.train import main

    run = tmp_path / "run"
    main(["--total-steps", "600", "--eval-every", "300", "--eval-episodes", "2", "--no-progress", "--video",
          "--output-dir", str(run), "--config.learning-starts", "200", "--config.hidden-sizes", "16"])
    videos = sorted(p.name for p in (run / "videos").glob("*.mp4"))
    assert videos == ["eval-episode-0.mp4", "eval-episode-2.mp4"]  # the first episode of each evaluation


def test_atari_100k_preset_sets_the_protocol_and_flags_override_it():
    from sqn_agents.train import parse_args

    args = parse_args(["--preset", "atari-100k", "--env-id", "ALE/Breakout-v5", "--config.batch-size", "32"])
    assert (args.preset, args.env_id, args.total_steps, args.eval_episodes) == ("atari-100k", "ALE/Breakout-v5",
                                                                                100_000, 10)
    assert args.atari.repeat_action_probability == 0.0 and args.atari.noop_max == 30
    assert args.atari.max_num_frames_per_episode == 108_000 and args.atari.life_loss == "episodic"
    cfg = args.config
    assert (cfg.batch_size, cfg.learning_rate, cfg.learning_starts, cfg.train_freq) == (32, 3e-4, 20_000, 4)
    # the measured learner: target entropy 0.5 of the maximum, no Munchausen term (BENCHMARKS.md, "Atari-100k")
    assert (cfg.target_entropy_ratio, cfg.munchausen_scale) == (0.5, 0.0)
    assert parse_args(["--preset=atari-100k", "--atari.repeat-action-probability", "0.25"]).atari \
        .repeat_action_probability == 0.25
    plain = parse_args([])
    assert (plain.preset, plain.total_steps, plain.atari.repeat_action_probability) == ("none", 50_000, 0.25)
    with pytest.raises(SystemExit):  # tyro names the allowed presets
        parse_args(["--preset", "atari-1M"])


def test_atari_options_reach_the_ale():
    pytest.importorskip("ale_py")
    from sqn_agents.train import make_env
    from wrappers import AtariOptions

    env = make_env("ALE/Pong-v5", AtariOptions(repeat_action_probability=0.0, max_num_frames_per_episode=4_000))
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0
    assert ale.getInt("max_num_frames_per_episode") == 4_000
    env.close()


def test_multidiscrete_doc_snippet_runs():
    text = (ROOT / "docs/multidiscrete.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "MultiDiscrete([3, 3, 2]" in b]
    assert len(blocks) == 1, "docs/multidiscrete.md lost its first example"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/multidiscrete.md", "exec"), namespace)  # every name it uses is defined in it
    assert namespace["space"].contains(namespace["action"])


def test_the_minatar_preset_sets_the_protocol_and_keeps_the_learner_defaults_but_three():
    import dataclasses

    from sqn_agents import SQNConfig
    from sqn_agents.train import parse_args

    args = parse_args(["--preset", "minatar", "--env-id", "MinAtar/Asterix-v1"])
    assert (args.preset, args.env_id, args.total_steps, args.eval_every, args.eval_episodes) == (
        "minatar", "MinAtar/Asterix-v1", 1_000_000, 50_000, 10)
    # the defaults, except the swept target entropy, one-step returns and no Munchausen term (BENCHMARKS.md)
    assert args.config == dataclasses.replace(SQNConfig(), n_step=1, munchausen_scale=0.0, target_entropy_ratio=0.5)
    assert parse_args(["--preset=minatar", "--total-steps", "2000"]).total_steps == 2000
    flags = ["--preset", "minatar", "--config.munchausen-scale", "0.9", "--config.n-step", "3",
             "--config.target-entropy-ratio", "0.8"]
    assert parse_args(flags).config == SQNConfig()


def test_new_games_doc_taxi_snippet_runs():
    text = (ROOT / "docs/new_games.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "Taxi-v4" in b]
    assert len(blocks) == 1, "docs/new_games.md lost its Taxi example"
    namespace: dict = {}
    exec(compile(blocks[0], "docs/new_games.md", "exec"), namespace)
    assert namespace["agent"].gradient_steps > 0


def test_board_game_example_runs_without_illegal_moves():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/board_game_masked.py"), "--steps", "1200", "--eval-every", "600",
         "--eval-games", "10", "--final-games", "20"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert re.search(r"greedy play over 20 fresh games: win [0-9.]+ .* illegal moves 0", out), out
    assert out.count("illegal moves 0") == 3, out
