"""Atari-100k: ``sqn-train --preset atari-100k`` on several games and seeds, next to SAC-Discrete.

    python benchmarks/atari100k.py run --games Pong SpaceInvaders --seeds 0 1 2 --jobs 2
    python benchmarks/atari100k.py report --games Pong SpaceInvaders     # table, plot, RESULT line
    python benchmarks/atari100k.py --quick                               # < 1 minute smoke run

``run`` starts one ``sqn-train`` process per (game, seed), at most ``--jobs`` at once, each on
one torch thread, in ``runs/atari100k/<game>__<seed>``; a run whose ``summary.json`` exists is
not run again, so an interrupted sweep continues where it stopped. ``report`` reads the runs:
the score of a run is its last greedy evaluation (10 whole games, unclipped score, after 100k
agent steps = 400k frames); it also plays a uniformly random policy under the same protocol
(10 games) as a floor. The SAC-Discrete column is Table 1 of Christodoulou (2019),
arXiv 1910.07207 (mean over 5 seeds at 100k steps; the paper gives no spread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS_DIR, ROOT, machine_info, print_result, write_json

# Table 1 of arXiv 1910.07207: SAC-Discrete's score after 100k agent steps.
SAC_DISCRETE_100K = {
    "Alien": 216.9, "Amidar": 7.9, "Assault": 350.0, "Asterix": 272.0, "BattleZone": 4386.7,
    "BeamRider": 432.1, "Breakout": 0.7, "CrazyClimber": 3668.7, "Enduro": 0.8, "Freeway": 4.4,
    "Frostbite": 59.4, "Jamesbond": 68.3, "Kangaroo": 29.3, "MsPacman": 690.9, "Pong": -20.98,
    "Qbert": 280.5, "RoadRunner": 305.3, "Seaquest": 211.6, "SpaceInvaders": 160.8, "UpNDown": 250.7,
}


def train_command(game: str, seed: int, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "sqn_agents", "--preset", "atari-100k", "--env-id", f"ALE/{game}-v5",
            "--seed", str(seed), "--output-dir", str(out / f"{game}__{seed}"), "--no-progress",
            "--no-save-replay", *extra]


def run_all(games: list[str], seeds: list[int], out: Path, jobs: int, extra: list[str]) -> None:
    """Run every (game, seed) not yet done, ``jobs`` processes at a time; logs go to <run>.log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    todo = [(g, s) for s in seeds for g in games if not (out / f"{g}__{s}" / "summary.json").exists()]
    out.mkdir(parents=True, exist_ok=True)
    running: list[tuple[str, subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < jobs:
            game, seed = todo.pop(0)
            log = open(out / f"{game}__{seed}.log", "w")
            cmd = train_command(game, seed, out, extra)
            print("start:", " ".join(cmd[1:]), flush=True)
            running.append((f"{game}__{seed}", subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                                 cwd=ROOT, env=env)))
        time.sleep(1.0)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {name}.log)"
                print(f"{name}: {status}", flush=True)


def random_scores(game: str, episodes: int, seed: int) -> list[float]:
    """Unclipped whole-game scores of a uniformly random policy under the preset's env settings."""
    from sqn_agents.train import PRESETS, make_env

    env = make_env(f"ALE/{game}-v5", PRESETS["atari-100k"].atari)
    env.action_space.seed(seed)
    scores: list[float] = []
    obs, _ = env.reset(seed=seed)
    while len(scores) < episodes:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if "game" in info:  # the real game ended (a lost life only ends a training episode)
            scores.append(float(info["game"]["r"]))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return scores


def eval_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    from sqn_agents.train import read_metrics

    evals = read_metrics(run_dir / "metrics.csv").get("eval", [])
    return [int(r["env_step"]) for r in evals], [r["eval_return_mean"] for r in evals]


def plot(curves: dict[str, list[tuple[list[int], list[float]]]], randoms: dict[str, float], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (game, runs) in zip(axes[0], curves.items(), strict=True):
        n = min(len(s) for s, _ in runs)
        steps = np.array(runs[0][0][:n])
        values = np.array([m[:n] for _, m in runs])
        for v in values:
            ax.plot(steps, v, color="tab:orange", alpha=0.3, linewidth=1)
        ax.plot(steps, values.mean(0), "o-", color="tab:orange", linewidth=2, label=f"SQN, mean of {len(runs)} seed{'s' * (len(runs) > 1)}")
        ax.fill_between(steps, values.min(0), values.max(0), color="tab:orange", alpha=0.15, label="min-max")
        if game in SAC_DISCRETE_100K:
            ax.axhline(SAC_DISCRETE_100K[game], color="tab:blue", linestyle="--", label="SAC-Discrete at 100k")
        ax.axhline(randoms[game], color="gray", linestyle=":", label="uniform random")
        ax.set(title=game, xlabel="agent steps (x4 frames)", ylabel="greedy score (10 games)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def report(games: list[str], out: Path, save_as: str | None, quick: bool) -> dict:
    import json

    table, curves, randoms = {}, {}, {}
    for game in games:
        runs = sorted(d for d in out.glob(f"{game}__*") if (d / "summary.json").exists())
        if not runs:
            print(f"{game}: no finished runs in {out}")
            continue
        summaries = [json.loads((d / "summary.json").read_text()) for d in runs]
        finals = [s["final_eval_return"] for s in summaries]
        rand = random_scores(game, episodes=2 if quick else 10, seed=123)
        randoms[game] = float(np.mean(rand))
        curves[game] = [eval_curve(d) for d in runs]
        table[game] = {
            "seeds": [s["seed"] for s in summaries],
            "sqn_final_per_seed": finals,
            "sqn_mean": round(statistics.mean(finals), 2),
            "sqn_std": round(statistics.pstdev(finals), 2),
            "sac_discrete_paper": SAC_DISCRETE_100K.get(game),
            "random_mean": round(randoms[game], 2),
            "env_steps": [s["env_steps"] for s in summaries],
            "wall_time_s": [s["wall_time_s"] for s in summaries],
        }
        row = table[game]
        print(f"{game:>14}: SQN {row['sqn_mean']:.1f} +- {row['sqn_std']:.1f} (seeds {finals}), "
              f"SAC-Discrete {row['sac_discrete_paper']}, random {row['random_mean']:.1f}", flush=True)
    result = {"benchmark": "atari100k", "quick": quick, "machine": machine_info(), "runs": str(out), "table": table}
    if save_as and table:
        write_json(RESULTS_DIR / save_as, result)
        plot(curves, randoms, RESULTS_DIR / Path(save_as).with_suffix(".png").name)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["run", "report"], default="report")
    p.add_argument("--games", nargs="+", default=["Pong", "SpaceInvaders"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    p.add_argument("--out", default=str(ROOT / "runs" / "atari100k"), help="folder of the run folders")
    p.add_argument("--save-as", default="atari100k.json", help="results JSON (and PNG) under benchmarks/results")
    p.add_argument("--quick", action="store_true", help="one 600-step Pong run and its report, into a temp folder")
    a = p.parse_args()
    if a.quick:
        out = Path(tempfile.mkdtemp(prefix="sqn-atari100k-"))
        run_all(["Pong"], [0], out, jobs=1, extra=["--total-steps", "600", "--config.learning-starts", "300",
                                                    "--eval-every", "600", "--eval-episodes", "1"])
        print_result(report(["Pong"], out, save_as=None, quick=True))
        return
    out = Path(a.out)
    if a.command == "run":
        run_all(a.games, a.seeds, out, a.jobs, extra=[])
    print_result(report(a.games, out, a.save_as, quick=False))


if __name__ == "__main__":
    main()
