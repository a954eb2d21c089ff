"""The benchmark harness stores only finished runs (benchmarks/sample_efficiency.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
sample_efficiency = pytest.importorskip("sample_efficiency")


def test_a_run_stopped_by_a_signal_is_not_recorded(tmp_path, monkeypatch):
    # train() returns early with stopped_by set when SIGTERM / SIGINT arrives (the preemption contract).
    monkeypatch.setattr(sample_efficiency, "train",
                        lambda args: {"stopped_by": "SIGTERM", "env_steps": 17_989, "wall_time_s": 1.0})
    monkeypatch.setattr(sample_efficiency, "RAW", tmp_path / "raw")
    with pytest.raises(RuntimeError, match="stopped by SIGTERM at 17989 of 50000 steps"):
        sample_efficiency.run_one(tmp_path, "sqn", "CartPole-v1", 0, 50_000, 10_000, 10, None)
    assert not list(tmp_path.glob("*.json"))


def test_a_stored_run_is_skipped_and_a_different_one_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sample_efficiency, "train", lambda args: calls.append(args))
    record = {"total_steps": 1_000, "eval_every": 500, "eval_episodes": 2, "final_eval": 9.0}
    sample_efficiency.write_json(sample_efficiency.record_path(tmp_path, "sqn", "CartPole-v1", 0), record)
    assert sample_efficiency.run_one(tmp_path, "sqn", "CartPole-v1", 0, 1_000, 500, 2, None) == record
    with pytest.raises(SystemExit, match="another budget or evaluation"):
        sample_efficiency.run_one(tmp_path, "sqn", "CartPole-v1", 0, 2_000, 500, 2, None)
    with pytest.raises(SystemExit, match="another setup"):
        sample_efficiency.run_one(tmp_path, "sqn", "CartPole-v1", 0, 1_000, 500, 2, None, {"n_step": 1})
    assert calls == []


def test_sqn_set_types_values_like_the_config_and_rejects_unknown_fields():
    assert sample_efficiency.parse_sqn_set(["target_entropy_ratio=0.3", "n_step=2", "autotune_alpha=false"]) == {
        "target_entropy_ratio": 0.3, "n_step": 2, "autotune_alpha": False}
    with pytest.raises(SystemExit, match="not_a_field"):
        sample_efficiency.parse_sqn_set(["not_a_field=1"])
    with pytest.raises(SystemExit, match="only bool, int, float and str fields"):
        sample_efficiency.parse_sqn_set(["hidden_sizes=64"])


def test_a_sweep_refuses_a_stored_run_made_with_other_flags(tmp_path, monkeypatch):
    sweep = pytest.importorskip("sweep")
    monkeypatch.setattr(sweep.subprocess, "run", lambda *a, **k: pytest.fail("a stored run must not rerun"))
    record = {"total_steps": 1_000, "eval_every": 500, "eval_episodes": 2, "extra_flags": ["--preset", "minatar"]}
    sweep.write_json(tmp_path / "CartPole-v1__default__seed0.json", record)
    assert sweep.run_one("s", "CartPole-v1", {}, 0, 1_000, ["--preset", "minatar"], 500, 2, tmp_path, tmp_path) == record
    with pytest.raises(SystemExit, match="other settings.*extra_flags"):
        sweep.run_one("s", "CartPole-v1", {}, 0, 1_000, ["--preset", "atari-100k"], 500, 2, tmp_path, tmp_path)
    with pytest.raises(SystemExit, match="other settings.*total_steps"):
        sweep.run_one("s", "CartPole-v1", {}, 0, 2_000, ["--preset", "minatar"], 500, 2, tmp_path, tmp_path)


def test_a_result_file_is_never_half_written(tmp_path, monkeypatch):
    # A write that dies midway (disk full, a kill) must leave the previous file whole: resumable sweeps take an
    # existing result file for a finished run.
    path = tmp_path / "run.json"
    sample_efficiency.write_json(path, {"final_eval": 1.0})
    before = path.read_text()

    def dies_midway(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise OSError("no space left on device")

    monkeypatch.setattr(Path, "write_text", dies_midway)
    with pytest.raises(OSError, match="no space"):
        sample_efficiency.write_json(path, {"final_eval": 2.0, "evals": list(range(100))})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # the partial temp file is removed too
