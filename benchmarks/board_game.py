"""Connect Four with legal-action masks: the win rate of ``examples/board_game_masked.py`` over training.

    python examples/board_game_masked.py --seed S --json benchmarks/results/board_game/connect_four_seedS.json
    python benchmarks/board_game.py        # plot and table of every such run, next to two baselines
    python benchmarks/board_game.py --quick

The baselines are measured here, over the same 1000 fresh games as the example's final evaluation:
uniformly random legal moves, and "stack one column" (always the leftmost legal column that holds
the agent's last stone, else the leftmost legal one), the trivial strategy an untrained greedy
network tends to play, which already beats the random opponent most of the time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _common import RESULTS_DIR, ROOT, machine_info, print_result

sys.path.insert(0, str(ROOT / "examples"))
from connect_four import ConnectFourEnv  # noqa: E402

OUT = RESULTS_DIR / "board_game"


def baseline(policy: str, games: int, seed: int) -> dict[str, float]:
    """Outcome rates of a fixed policy against the random opponent (``seed`` as the example's final evaluation)."""
    env, rng = ConnectFourEnv(), np.random.default_rng(seed)
    outcomes = []
    for i in range(games):
        obs, _ = env.reset(seed=seed + i)
        last = None
        while True:
            legal = np.flatnonzero(obs["action_mask"])
            if policy == "random":
                action = int(rng.choice(legal))
            else:  # stack: keep playing the column of the last stone while it is legal
                action = last if last in legal else int(legal[0])
            last = action
            obs, _, terminated, _, info = env.step(action)
            if terminated:
                outcomes.append(info["outcome"])
                break
    return {k: outcomes.count(k) / games for k in ("win", "draw", "loss")}


def plot(runs: list[dict], baselines: dict[str, dict[str, float]], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for run in runs:
        steps = [p["step"] for p in run["curve"]]
        ax.plot(steps, [p["win"] for p in run["curve"]], "o-", label=f"SQN win rate, seed {run['seed']}")
        ax.plot(steps, [p["loss"] for p in run["curve"]], "x--", alpha=0.6, label=f"SQN loss rate, seed {run['seed']}")
    ax.axhline(baselines["random"]["win"], color="gray", linestyle=":", label="random legal moves (win)")
    ax.axhline(baselines["stack"]["win"], color="tab:green", linestyle=":", label="stack one column (win)")
    ax.set_xlabel("agent moves (training steps)")
    ax.set_ylabel(f"rate over {runs[0]['eval_games']} greedy games")
    ax.set_ylim(0, 1.02)
    ax.set_title("Connect Four vs a random opponent, masked SQN")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 baseline games, no plot")
    args = parser.parse_args()
    games = 50 if args.quick else 1_000
    baselines = {policy: baseline(policy, games, seed=50_000) for policy in ("random", "stack")}
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("connect_four_seed*.json"))]
    rows = []
    for run in runs:
        best = max(run["curve"], key=lambda p: p["win"])
        rows.append({"seed": run["seed"], "final": run["final"], "final_games": run["final_games"],
                     "best_eval": best, "illegal_moves": sum(p["illegal_moves"] for p in run["curve"])
                     + run["final"]["illegal_moves"], "seconds": run["seconds"], "command": run["command"]})
        print(f"seed {run['seed']}: final win {run['final']['win']:.3f} draw {run['final']['draw']:.3f} "
              f"loss {run['final']['loss']:.3f} over {run['final_games']} games; illegal moves {rows[-1]['illegal_moves']}")
    for policy, rates in baselines.items():
        print(f"{policy}: win {rates['win']:.3f} draw {rates['draw']:.3f} loss {rates['loss']:.3f} over {games} games")
    if runs and not args.quick:
        plot(runs, baselines, OUT / "connect_four_win_rate.png")
    print_result({"benchmark": "board_game", "quick": args.quick, "baselines": baselines, "baseline_games": games,
                  "runs": rows, "machine": machine_info()})


if __name__ == "__main__":
    main()
