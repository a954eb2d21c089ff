"""CartPole-v1 over several seeds with ``sqn-train``'s own loop: steps to a greedy evaluation
mean of 475, wall time and the area under the evaluation curve.

    python benchmarks/cartpole_seeds.py --seeds 0 1 2 3 4            # the BENCHMARKS.md table
    python benchmarks/cartpole_seeds.py --quick                        # < 1 minute smoke run
    python benchmarks/cartpole_seeds.py --seeds 0 1 --set target_entropy_ratio=0.5

Seeds run one after another in this process (one torch thread each), so wall times are
comparable. The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np

from sqn_agents.config import SQNConfig
from sqn_agents.train import TrainArgs, read_metrics, train


def parse_overrides(items: list[str]) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(SQNConfig)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: unknown SQNConfig field {key!r}")
        out[key] = json.loads(value) if value[:1] in "0123456789-[tfn" else value
        if key == "hidden_sizes":
            out[key] = tuple(out[key])
    return out


def eval_auc(metrics_csv: Path, total_steps: int) -> float:
    """Mean greedy evaluation return over the run (area under the evaluation curve / steps)."""
    evals = read_metrics(metrics_csv).get("eval", [])
    if not evals:
        return float("nan")
    steps = np.array([0.0] + [r["env_step"] for r in evals])
    means = np.array([evals[0]["eval_return_mean"]] + [r["eval_return_mean"] for r in evals])
    return float(np.trapezoid(means, steps) / steps[-1])


def wall_to_threshold(metrics_csv: Path, threshold: float = 475.0) -> float | None:
    """Wall-clock seconds from the start of the run to the first evaluation at or above the threshold."""
    for row in read_metrics(metrics_csv).get("eval", []):
        if row["eval_return_mean"] >= threshold:
            return row["wall_time"]
    return None


def plot_seeds(run_dirs: list[Path], out_png: Path) -> None:
    """Greedy evaluation curves of several seeds: the mean, the min-max band and each seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [read_metrics(d / "metrics.csv")["eval"] for d in run_dirs]
    steps = np.array([r["env_step"] for r in curves[0]])
    n = min(len(c) for c in curves)
    values = np.array([[r["eval_return_mean"] for r in c[:n]] for c in curves])
    fig, ax = plt.subplots(figsize=(7, 4))
    for v in values:
        ax.plot(steps[:n], v, color="tab:orange", alpha=0.25, linewidth=1)
    ax.plot(steps[:n], values.mean(0), color="tab:orange", linewidth=2, label=f"mean of {len(values)} seeds")
    ax.fill_between(steps[:n], values.min(0), values.max(0), color="tab:orange", alpha=0.15, label="min-max")
    ax.axhline(475, color="gray", linestyle="--", linewidth=1, label="475")
    ax.set(xlabel="environment steps", ylabel="greedy evaluation return (10 episodes)",
           title="SQN on CartPole-v1 (sqn-train defaults)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--total-steps", type=int, default=50_000)
    p.add_argument("--eval-every", type=int, default=2_500)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="SQNConfig overrides")
    p.add_argument("--quick", action="store_true", help="2 seeds x 4k steps, to check the script runs")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    p.add_argument("--plot", default=None, help="write the evaluation curves of all seeds to this PNG")
    a = p.parse_args()
    if a.quick:
        a.seeds, a.total_steps, a.eval_every, a.eval_episodes = a.seeds[:2], 4_000, 2_000, 3
    config = SQNConfig(**parse_overrides(a.set))
    out = Path(a.out or tempfile.mkdtemp(prefix="sqn-cartpole-"))
    rows = []
    for seed in a.seeds:
        args = TrainArgs(total_steps=a.total_steps, seed=seed, device="cpu", eval_every=a.eval_every,
                         eval_episodes=a.eval_episodes, progress=False, save_replay=False,
                         output_dir=str(out / f"seed{seed}"), config=config)
        s = train(args)
        s["eval_auc"] = eval_auc(out / f"seed{seed}" / "metrics.csv", a.total_steps)
        s["wall_to_475_s"] = wall_to_threshold(out / f"seed{seed}" / "metrics.csv")
        rows.append(s)
        print(f"seed {seed}: steps to 475 = {s['steps_to_threshold']}, final eval = {s['final_eval_return']:.1f}, "
              f"AUC = {s['eval_auc']:.1f}, wall = {s['wall_time_s']} s, {s['steps_per_second']} steps/s", flush=True)
    reached = [r["steps_to_threshold"] for r in rows if r["steps_to_threshold"] is not None]
    result = {
        "benchmark": "cartpole_seeds",
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "config_overrides": a.set,
        "total_steps": a.total_steps,
        "seeds": a.seeds,
        "reached_475": f"{len(reached)}/{len(rows)}",
        "steps_to_475_median": statistics.median(reached) if reached else None,
        "steps_to_475": [r["steps_to_threshold"] for r in rows],
        "final_eval": [round(r["final_eval_return"], 1) for r in rows],
        "eval_auc_mean": round(statistics.mean(r["eval_auc"] for r in rows), 1),
        "wall_time_s": [r["wall_time_s"] for r in rows],
        "wall_to_475_s": [r["wall_to_475_s"] for r in rows],
        "steps_per_second_median": statistics.median(r["steps_per_second"] for r in rows),
        "runs": str(out),
    }
    if a.plot:
        plot_seeds([out / f"seed{seed}" for seed in a.seeds], Path(a.plot))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
