"""Hyperparameter sweeps of ``sqn-train``: a grid of SQNConfig values x seeds x envs, resumable.

    python benchmarks/sweep.py run --name acrobot --envs Acrobot-v1 --steps 50000 --seeds 0 1 \
        --grid n_step=1,3 target_entropy_ratio=0.1,0.3 --jobs 2
    python benchmarks/sweep.py report --name acrobot          # table of every finished run
    python benchmarks/sweep.py plot --name acrobot --points n_step=1 n_step=3 --png acrobot.png \
        --baseline "SB3 DQN=benchmarks/results/sample_efficiency/Acrobot-v1__sb3__seed*.json"
    python benchmarks/sweep.py --quick                          # < 1 minute smoke run (temporary folder)

Each run is one ``python -m sqn_agents`` subprocess (one torch thread) with ``--config.<field> <value>``
for its grid point and ``--extra`` flags shared by all (e.g. ``--extra="--preset minatar"``). A finished
run leaves ``benchmarks/results/sweeps/<name>/<env>__<point>__seed<s>.json`` (evaluations, area under the
evaluation curve, final greedy mean, wall time, the flags, the commit); runs whose file exists are skipped,
so an interrupted sweep resumes where it stopped. ``--jobs`` runs that many at once (one per core).

Reported per grid point: final greedy mean (the last evaluation) and the evaluation AUC (trapezoid
area under the greedy-evaluation curve divided by the run length), mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, ROOT, eval_auc, machine_info, print_result, write_json

from sqn_agents.train import read_metrics

SWEEPS = RESULTS_DIR / "sweeps"
RAW = RESULTS_DIR / "raw" / "sweeps"  # run folders (git-ignored)


def grid_points(grid: list[str]) -> list[dict[str, str]]:
    """``["a=1,2", "b=x"]`` -> ``[{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]``."""
    axes = []
    for item in grid:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid {item!r}: expected field=value[,value...]")
        axes.append([(key, v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def point_tag(point: dict[str, str]) -> str:
    return "-".join(f"{k}={v}" for k, v in point.items()) or "default"


def run_one(name: str, env_id: str, point: dict[str, str], seed: int, steps: int, extra: list[str],
            eval_every: int, eval_episodes: int, out: Path, raw: Path) -> dict[str, Any] | None:
    stem = f"{env_id.replace('/', '-')}__{point_tag(point)}__seed{seed}"
    path = out / f"{stem}.json"
    if path.exists():  # a finished run: reuse it, but only for the same run (resuming must not mix setups)
        stored = json.loads(path.read_text())
        asked = {"total_steps": steps, "eval_every": eval_every, "eval_episodes": eval_episodes, "extra_flags": extra}
        differ = {k: (stored.get(k), v) for k, v in asked.items() if stored.get(k) != v}
        if differ:
            raise SystemExit(f"{path} is a finished run with other settings (stored, asked): {differ}; "
                             "use another --name, or delete the file to rerun it")
        return stored
    run_dir = raw / stem
    flags = ["--env-id", env_id, "--seed", str(seed), "--total-steps", str(steps), "--output-dir", str(run_dir),
             "--eval-every", str(eval_every), "--eval-episodes", str(eval_episodes), "--no-progress",
             "--no-save-replay", "--device", "cpu", *extra]
    for key, value in point.items():
        flags += [f"--config.{key.replace('_', '-')}", *value.split(" ")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sqn_agents", *flags], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"FAILED {stem}:\n{proc.stderr[-2000:]}", flush=True)
        return None
    evals = read_metrics(run_dir / "metrics.csv").get("eval", [])
    e_steps = [int(r["env_step"]) for r in evals]
    means = [r["eval_return_mean"] for r in evals]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    record = {"sweep": name, "env_id": env_id, "point": point, "seed": seed, "total_steps": steps,
              "extra_flags": extra, "eval_every": eval_every, "eval_episodes": eval_episodes,
              "evals": [[s, m, r["eval_return_std"]] for s, m, r in zip(e_steps, means, evals, strict=True)],
              "eval_auc": round(eval_auc(e_steps, means), 2), "final_eval": means[-1] if means else None,
              "wall_time_s": round(wall, 1), "commit": commit, "command": "python -m sqn_agents " + " ".join(flags)}
    write_json(path, record)
    print(f"{stem}: final {record['final_eval']}, AUC {record['eval_auc']}, {wall:.0f} s", flush=True)
    return record


def report(out: Path) -> list[dict[str, Any]]:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*__seed*.json"))]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["env_id"], point_tag(r["point"])), []).append(r)

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"

    table = []
    print("\n| env | point | seeds | final greedy mean | eval AUC | per-seed final |\n|---|---|---|---|---|---|")
    for (env_id, tag), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        finals = [r["final_eval"] for r in rs]
        aucs = [r["eval_auc"] for r in rs]
        row = {"env_id": env_id, "point": tag, "seeds": [r["seed"] for r in rs], "final": finals, "auc": aucs}
        table.append(row)
        print(f"| {env_id} | {tag} | {len(rs)} | {ms(finals)} | {ms(aucs)} | {', '.join(f'{f:.1f}' for f in finals)} |")
    return table


def plot(out: Path, points: list[str], baselines: list[str], png: Path) -> None:
    """Mean greedy-evaluation curve (band: min to max over seeds) of each grid point, and of baseline runs:
    ``label=glob`` of JSON files holding ``evals`` as [[step, mean, std], ...] (sweep or sample_efficiency files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    curves: dict[str, list[list[list[float]]]] = {}
    for r in (json.loads(f.read_text()) for f in sorted(out.glob("*__seed*.json"))):
        tag = point_tag(r["point"])
        if not points or tag in points:
            curves.setdefault(f"SQN {tag}", []).append(r["evals"])
    for item in baselines:
        label, _, pattern = item.partition("=")
        files = sorted(ROOT.glob(pattern))
        if not files:
            raise SystemExit(f"--baseline {item!r}: no file matches {pattern}")
        curves[label] = [json.loads(f.read_text())["evals"] for f in files]
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, runs in curves.items():
        steps = [e[0] for e in runs[0]]
        if any([e[0] for e in run] != steps for run in runs):
            raise SystemExit(f"{label}: the seeds were evaluated at different steps")
        means = np.array([[e[1] for e in run] for run in runs])
        ax.plot(steps, means.mean(0), label=f"{label} ({len(runs)} seeds)")
        ax.fill_between(steps, means.min(0), means.max(0), alpha=0.15)
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy evaluation mean")
    ax.set_title(out.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", default="report", choices=("run", "report", "plot"))
    p.add_argument("--name", default="default")
    p.add_argument("--envs", nargs="+", default=["CartPole-v1"])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--grid", nargs="*", default=[], help="field=v1,v2 ... (a value with spaces: 'hidden_sizes=64 64')")
    p.add_argument("--extra", default="", help="flags passed to every run, e.g. '--preset minatar'")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--points", nargs="*", default=[], help="plot: the grid points to draw (default: all)")
    p.add_argument("--baseline", nargs="*", default=[], help="plot: 'label=glob' of baseline JSON files")
    p.add_argument("--png", help="plot: the image to write")
    a = p.parse_args()
    out, raw = SWEEPS / a.name, RAW / a.name
    if a.quick:
        tmp = Path(tempfile.mkdtemp(prefix="sqn-sweep-"))
        out, raw = tmp / "results", tmp / "raw"
        a.part, a.envs, a.steps, a.seeds, a.grid = "run", ["CartPole-v1"], 1_500, [0], ["n_step=1,3"]
        a.extra, a.eval_every, a.eval_episodes = "--config.learning-starts 500", 750, 2
    if a.part == "plot":
        if not a.png:
            raise SystemExit("plot needs --png")
        plot(out, a.points, a.baseline, Path(a.png))
        return
    if a.part == "run":
        jobs = [(env, point, seed) for seed in a.seeds for env in a.envs for point in grid_points(a.grid)]
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            done = list(pool.map(lambda j: run_one(a.name, j[0], j[1], j[2], a.steps, a.extra.split(),
                                                   a.eval_every, a.eval_episodes, out, raw), jobs))
        if any(r is None for r in done):
            raise SystemExit("some runs failed (see above)")
    table = report(out)
    print_result({"benchmark": "sweep", "name": a.name, "quick": a.quick, "table": table, "machine": machine_info()})


if __name__ == "__main__":
    main()
