"""Every benchmark script's --quick mode runs and ends with a parseable ``RESULT {json}`` line.

The parts that need the optional peers (stable-baselines3, tianshou, minatar: the ``bench``
extra, which CI installs) are skipped when those are not installed, so this also passes with
only the ``dev`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

# (id, script and arguments, modules the case needs)
CASES = [
    ("cartpole_seeds", ["cartpole_seeds.py", "--quick"], []),
    ("overhead", ["overhead.py", "--quick"], []),
    ("throughput_sqn_only", ["throughput_peers.py", "--quick", "--systems", "sqn-train", "sqn-loop"], []),
    ("throughput_peers", ["throughput_peers.py", "--quick", "--systems", "sqn-train", "sb3-dqn", "tianshou-dsac"],
     ["stable_baselines3", "tianshou"]),
    ("throughput_atari", ["throughput_peers.py", "--quick", "--skip-cartpole", "--atari"],
     ["stable_baselines3", "ale_py"]),
    ("sample_efficiency_sqn", ["sample_efficiency.py", "--quick", "--algos", "sqn"], []),
    ("sample_efficiency_sb3", ["sample_efficiency.py", "--quick", "--algos", "sb3"], ["stable_baselines3", "minatar"]),
    ("atari_loop_throughput", ["atari_loop_throughput.py", "--quick"], ["ale_py"]),
    ("atari100k", ["atari100k.py", "--quick"], ["ale_py"]),
    ("replay_memory", ["replay_memory.py", "--quick"], []),
    ("board_game", ["board_game.py", "--quick"], []),
    ("toy_text", ["toy_text.py", "--quick"], []),
    ("atari_env_throughput", ["atari_env_throughput.py", "--quick"], ["ale_py"]),
    ("atari_overhead", ["atari_overhead.py", "--quick"], ["ale_py"]),
    ("checkpoint_cost", ["checkpoint_cost.py", "--quick"], []),
    ("distributed", ["distributed.py", "--quick"], ["ray"]),
    ("precision", ["precision.py", "--quick"], []),
    ("gpu_check", ["gpu_check.py", "--quick"], []),
    ("learner_ab", ["learner_ab.py", "--quick"], []),
]


def run_quick(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], capture_output=True, text=True,
                          cwd=BENCH.parent, env=env, timeout=300)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{args} printed no RESULT line:\n{proc.stdout[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("args,needs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_quick_mode_prints_result(args: list[str], needs: list[str]) -> None:
    for module in needs:
        pytest.importorskip(module)
    result = run_quick(args)
    assert result["benchmark"]
    if args[0] != "cartpole_seeds.py":
        assert result["quick"] is True
    if args[0] == "throughput_peers.py":
        for part in ("cartpole", "atari"):
            if part in result and "steps_per_s_median" in result[part]:
                assert all(v > 0 for v in result[part]["steps_per_s_median"].values())
    if args[0] == "overhead.py":
        assert result["ratios"]["learn: agent.learn/bare"] > 0
    if args[0] == "replay_memory.py":
        assert result["meets_target"] and result["frame_stack"]["bytes_per_transition"] <= 7_500
    if args[0] == "atari_overhead.py":
        assert result["ratios"]["update: agent/bare"] > 0 and result["batch_size"] == 64
    if args[0] == "precision.py":
        for network in ("mlp", "nature_cnn"):
            step = result["results"][network]["gradient step"]
            assert step["fp32"]["ratio_to_fp32"] == 1.0 and step["bf16"]["median_us"] > 0
    if args[0] == "learner_ab.py":
        assert result["gradient_steps"] > 0 and result["gradient_step_median_us"] > 0
    if args[0] == "gpu_check.py":
        assert result["cuda"] == torch.cuda.is_available() and (result.get("skipped") or result["update"])
    if args[0] == "atari100k.py":
        row = result["table"]["Pong"]
        assert row["env_steps"] == [600] and -21 <= row["sqn_mean"] <= 21 and row["sac_discrete_paper"] == -20.98
        assert row["der_paper"] == -19.3 and result["aggregate"]["runs"] == 1
        # evaluate's games scored the run; the first one replayed its last evaluation (1 game)
        assert result["score"].startswith("mean of 2 greedy games") and len(row["last_eval_per_seed"]) == 1
    if args[0] == "checkpoint_cost.py":
        assert result["transitions"] == 10_000 and result["checkpoint_bytes"] > 84 * 84 * 10_000
        assert result["save_s_median"] > 0 and result["load_s"] > 0
    if args[0] == "sample_efficiency.py":
        assert result["table"], "no runs in the quick sample-efficiency table"
