"""The Atari-100k report's aggregate metrics (benchmarks/atari100k.py) against values computed by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
atari100k = pytest.importorskip("atari100k")


def test_human_normalized_maps_random_to_0_and_human_to_1():
    assert atari100k.human_normalized("Breakout", 1.7) == 0.0
    assert atari100k.human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert atari100k.human_normalized("Pong", -20.7 + 0.5 * 35.3) == pytest.approx(0.5)


def test_iqm_drops_a_quarter_at_each_end():
    # 8 values: drop the 2 lowest and the 2 highest, average 3, 4, 5, 6.
    assert atari100k.iqm(np.array([100.0, 1, 5, 3, -50, 4, 6, 9])) == pytest.approx(4.5)
    # 6 values: floor(1.5) = 1 from each end -> mean of the middle 4.
    assert atari100k.iqm(np.array([0.0, 1, 2, 3, 4, 1000])) == pytest.approx(2.5)
    # Fewer than 4 values: nothing is cut.
    assert atari100k.iqm(np.array([1.0, 2, 6])) == pytest.approx(3.0)


def test_iqm_matches_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(size=(7, 5))
    assert atari100k.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25, axis=None))


def test_stratified_bootstrap_resamples_within_games():
    # One seed per game: every resample is the data itself, so the interval is a point.
    games = [np.array([0.1]), np.array([0.5]), np.array([0.9]), np.array([2.0])]
    lo, hi = atari100k.stratified_bootstrap_ci(games, reps=50)
    assert lo == hi == pytest.approx(atari100k.iqm(np.array([0.1, 0.5, 0.9, 2.0])))
    # Spread within games: the interval brackets the point estimate and stays within the data's range.
    games = [np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0, 5.0])]
    lo, hi = atari100k.stratified_bootstrap_ci(games, reps=500)
    assert 0.0 <= lo < atari100k.iqm(np.concatenate(games)) < hi <= 5.0


def _run_file(folder: Path, game: str, seed: int, last_eval: float, final_games: list[float] | None) -> None:
    record = {"env_id": f"ALE/{game}-v5", "seed": seed, "total_steps": 100_000, "eval_episodes": 10,
              "evals": [[100_000, last_eval, 0.0]], "final_eval": last_eval, "wall_time_s": 1.0,
              "commit": "abc1234", "extra_flags": [], "command": "python -m sqn_agents --output-dir /nowhere"}
    if final_games is not None:
        record["final_games"] = {"games": len(final_games), "mean": float(np.mean(final_games))}
    atari100k.write_json(folder / f"ALE-{game}-v5__default__seed{seed}.json", record)


def test_report_scores_by_the_final_games_only_when_every_run_has_them(tmp_path, monkeypatch):
    monkeypatch.setattr(atari100k, "random_scores", lambda game, episodes, seed: [1.7])  # Breakout's rliable random
    _run_file(tmp_path, "Breakout", 0, last_eval=10.0, final_games=[4.0, 8.0, 12.0])  # mean 8.0
    _run_file(tmp_path, "Breakout", 1, last_eval=20.0, final_games=None)
    row = atari100k.report("t", tmp_path, random_episodes=1, save=False)["table"]["Breakout"]
    assert row["sqn_final_per_seed"] == [10.0, 20.0]  # one run lacks them: every run is scored by its last evaluation
    _run_file(tmp_path, "Breakout", 1, last_eval=20.0, final_games=[15.0, 16.0, 17.0])
    result = atari100k.report("t", tmp_path, random_episodes=1, save=False)
    row = result["table"]["Breakout"]
    assert row["sqn_final_per_seed"] == [8.0, 16.0] and row["last_eval_per_seed"] == [10.0, 20.0]
    assert row["sqn_mean"] == 12.0 and result["score"].startswith("mean of 3 greedy games")
    # IQM of two runs is their mean: ((8 - 1.7) + (16 - 1.7)) / 2 / (30.5 - 1.7)
    assert result["aggregate"]["iqm_human_normalized"] == pytest.approx(round(10.3 / 28.8, 4))


def test_final_games_refuses_a_run_whose_checkpoint_is_not_here(tmp_path):
    _run_file(tmp_path, "Breakout", 0, last_eval=10.0, final_games=None)
    with pytest.raises(FileNotFoundError, match="no checkpoint in /nowhere"):
        atari100k.final_games(tmp_path / "ALE-Breakout-v5__default__seed0.json", games=30)
