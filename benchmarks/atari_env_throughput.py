"""Steps per second of the wrapped Atari env (make_atari_env) against the raw ALE env.

    python benchmarks/atari_env_throughput.py            # Breakout, 7 repeats of 5,000 steps each (under a minute)
    python benchmarks/atari_env_throughput.py --quick    # 3 repeats of 1,000 steps (a few seconds)

Both envs emulate 4 frames per step with the same sticky actions (0.25) and play the same
seeded random actions, resetting when an episode ends:

* wrapped: ``make_atari_env(game)`` with its defaults (frameskip=1 underneath, 4-frame skip
  with max-pooling, 84x84 grayscale, no-op starts, fire reset, episodic life, clipping, 4-frame stack);
* raw: ``gym.make(game, frameskip=4)`` returning the full grayscale screen (``obs_type="grayscale"``),
  and, for reference, the v5 default RGB screen.

The envs run one after the other within each repeat, in an order that alternates between
repeats, so that drift of a shared machine affects both alike. Medians over the repeats are
printed, with the ratio wrapped/raw; the last line is ``RESULT {json}``. Frames per second
(from ALE's frame counter) are reported too: the wrapped env also plays frames on reset
(no-ops, FIRE, the no-op after a lost life), so steps/s alone slightly flatters the raw env.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing it
    sys.path.insert(1, str(ROOT))

from wrappers import make_atari_env  # noqa: E402


def make_envs(game: str) -> dict[str, gym.Env]:
    import ale_py

    gym.register_envs(ale_py)
    return {
        "wrapped": make_atari_env(game),
        "raw_grayscale": gym.make(game, frameskip=4, repeat_action_probability=0.25, obs_type="grayscale"),
        "raw_rgb": gym.make(game, frameskip=4, repeat_action_probability=0.25),
    }


def run(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """Steps ``env`` through ``actions`` (resetting at episode ends); returns (steps/s, frames/s)."""
    ale = env.unwrapped.ale
    env.reset(seed=seed)
    frames_start = ale.getFrameNumber()  # ALE's frame counter over all games, resets included
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    return len(actions) / elapsed, (ale.getFrameNumber() - frames_start) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="ALE/Breakout-v5")
    parser.add_argument("--steps", type=int, default=5_000, help="env steps per env per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3 repeats of 1,000 steps")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 1_000, 3

    envs = make_envs(args.game)
    n_actions = int(envs["wrapped"].action_space.n)
    rng = np.random.default_rng(args.seed)
    for env in envs.values():  # warm-up: first resets load the ROM, first steps fill caches
        run(env, rng.integers(n_actions, size=200), seed=args.seed)

    results: dict[str, dict[str, list[float]]] = {name: {"steps": [], "frames": []} for name in envs}
    names = list(envs)
    for repeat in range(args.repeats):
        actions = rng.integers(n_actions, size=args.steps)  # the same actions for every env in a repeat
        for name in names if repeat % 2 == 0 else names[::-1]:
            steps_per_s, frames_per_s = run(envs[name], actions, seed=args.seed + repeat)
            results[name]["steps"].append(steps_per_s)
            results[name]["frames"].append(frames_per_s)
        print(f"repeat {repeat + 1}/{args.repeats}: "
              + ", ".join(f"{name} {results[name]['steps'][-1]:,.0f} steps/s" for name in names), flush=True)

    median = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    ratio = median["wrapped"]["steps"] / median["raw_grayscale"]["steps"]
    ratio_frames = median["wrapped"]["frames"] / median["raw_grayscale"]["frames"]
    ratio_rgb = median["wrapped"]["steps"] / median["raw_rgb"]["steps"]
    print(f"\n{args.game}, {args.repeats} repeats x {args.steps:,} steps, medians:")
    for name in names:
        print(f"  {name:14s} {median[name]['steps']:8,.0f} steps/s  {median[name]['frames']:8,.0f} frames/s")
    print(f"  wrapped / raw_grayscale: {ratio:.2f} (steps/s), {ratio_frames:.2f} (frames/s); "
          f"wrapped / raw_rgb: {ratio_rgb:.2f} (steps/s)")
    result = {
        "benchmark": "atari_env_throughput",
        "quick": args.quick,
        "game": args.game,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "steps_per_s_median": {name: round(m["steps"], 1) for name, m in median.items()},
        "frames_per_s_median": {name: round(m["frames"], 1) for name, m in median.items()},
        "steps_per_s_all": {name: [round(x, 1) for x in r["steps"]] for name, r in results.items()},
        "ratio_wrapped_to_raw_grayscale": round(ratio, 3),
        "ratio_wrapped_to_raw_grayscale_frames": round(ratio_frames, 3),
        "ratio_wrapped_to_raw_rgb": round(ratio_rgb, 3),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "versions": {pkg: version(pkg) for pkg in ("gymnasium", "ale-py", "numpy", "opencv-python-headless")},
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
