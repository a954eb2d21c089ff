"""What a checkpoint of an Atari-100k run costs: ``agent.save(include_replay=True)`` with a full
100,000-transition frame-stack replay (the Atari-100k preset's learner), and ``SQNAgent.load``.

The replay is filled with synthetic 4x84x84 uint8 episodes (every frame distinct, as in
``replay_memory.py``), so the checkpoint holds as many bytes as a real run's. The save is
timed ``--repeats`` times into the same directory, as ``sqn-train`` does (each save writes
fresh files, fsyncs them, commits the manifest and deletes the previous files).

    python benchmarks/checkpoint_cost.py           # 100,000 transitions, ~0.7 GB per checkpoint
    python benchmarks/checkpoint_cost.py --quick   # 10,000 transitions

The last line is ``RESULT {json}`` (full runs also write it to
``benchmarks/results/checkpoint_cost.json``); ``share_at_10_min`` is the median save time over the
600 s between two of ``sqn-train``'s default wall-clock checkpoints (``--checkpoint-minutes 10``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _common import RESULTS_DIR, machine_info, print_result, write_json
from replay_memory import episodes

from sqn_agents import SQNAgent
from sqn_agents.train import PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 transitions, 2 saves")
    parser.add_argument("--transitions", type=int, default=None, help="transitions in the replay (default 100,000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed saves (default 3)")
    parser.add_argument("--dir", default=None, help="where to write the checkpoint (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    machine = machine_info()
    n = args.transitions or (10_000 if args.quick else 100_000)
    repeats = args.repeats or (2 if args.quick else 3)

    config = PRESETS["atari-100k"].config
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = SQNAgent(obs_space, gym.spaces.Discrete(6), config, device="cpu", seed=0)
    t = time.perf_counter()
    for obs, next_obs, terminated in episodes(np.random.default_rng(0), n):
        m = len(terminated)
        agent.replay.add(obs, np.zeros((m, 1), np.int64), np.ones(m, np.float32), next_obs, terminated,
                         np.zeros(m, bool))
    fill_s = time.perf_counter() - t
    print(f"replay {type(agent.replay).__name__}: {len(agent.replay):,} transitions, "
          f"{agent.replay.nbytes / 1e9:.3f} GB in memory (filled in {fill_s:.0f} s)")

    root = Path(tempfile.mkdtemp(prefix="sqn-ckpt-", dir=args.dir))
    try:
        path = root / "checkpoint"
        saves = []
        for i in range(repeats):
            t = time.perf_counter()
            agent.save(path, include_replay=True)
            saves.append(time.perf_counter() - t)
            print(f"save {i + 1}: {saves[-1]:.2f} s")
        size = sum(f.stat().st_size for f in path.iterdir())
        t = time.perf_counter()
        loaded = SQNAgent.load(path, device="cpu")
        load_s = time.perf_counter() - t
        assert len(loaded.replay) == len(agent.replay)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    save_s = statistics.median(saves)
    print(f"checkpoint {size / 1e9:.3f} GB on disk; save median {save_s:.2f} s ({size / 1e6 / save_s:.0f} MB/s), "
          f"load {load_s:.2f} s; every 10 minutes: {100 * save_s / 600:.2f}% of the run")
    result = {"benchmark": "checkpoint_cost", "quick": args.quick, "transitions": n,
              "replay_nbytes": agent.replay.nbytes, "checkpoint_bytes": size,
              "save_s": [round(s, 3) for s in saves], "save_s_median": round(save_s, 3),
              "load_s": round(load_s, 3), "share_at_10_min": round(save_s / 600, 5), "machine": machine}
    print_result(result)
    if not args.quick and args.transitions is None:
        write_json(RESULTS_DIR / "checkpoint_cost.json", result)


if __name__ == "__main__":
    main()
