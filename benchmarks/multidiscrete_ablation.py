"""Ablation of the two MultiDiscrete choices of SQN: the TD target and the temperature.

Variants (one factor at a time around the defaults):

* ``independent+shared`` (the defaults): per-dimension targets ``y_d = r + gamma V_d(s')``, one alpha;
* ``mean+shared``: the branching target ``y = r + gamma mean_d V_d(s')`` (Tavakoli et al. 2018);
* ``independent+per_dim``: one alpha per dimension, each tracking ``ratio * log(n_d)``;
* ``mean+per_dim`` (with ``--all-variants``): both changes.

Tasks (``tests/envs.py``): ``match`` (components independent, unequal nvec), ``joint``
(reward only when the whole joint action is right) and ``reach`` (a sequential task where
the bootstrap matters). Every run uses ``SQNConfig(replay="uniform", learning_starts=500)``
plus the variant's two fields; everything else is the default. Seeds run one after another
on one torch thread.

    python benchmarks/multidiscrete_ablation.py                 # the docs/multidiscrete.md tables
    python benchmarks/multidiscrete_ablation.py --quick         # < 1 minute: 1 seed, 1,000 steps per task

The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse

from _common import machine_info, print_result
from _multidiscrete import TASKS, run, summarise

from sqn_agents import SQNConfig

VARIANTS = {
    "independent+shared": {"multidiscrete_target": "independent", "shared_alpha": True},
    "mean+shared": {"multidiscrete_target": "mean", "shared_alpha": True},
    "independent+per_dim": {"multidiscrete_target": "independent", "shared_alpha": False},
    "mean+per_dim": {"multidiscrete_target": "mean", "shared_alpha": False},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS)[:3], choices=list(VARIANTS))
    p.add_argument("--all-variants", action="store_true", help="also run mean+per_dim")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="1 seed, 1,000 steps per task, to check the script runs")
    a = p.parse_args()
    variants = list(VARIANTS) if a.all_variants else a.variants
    seeds = a.seeds[:1] if a.quick else a.seeds
    info = machine_info()

    results: dict[str, dict[str, dict]] = {}
    raw: dict[str, dict[str, list]] = {}
    for task_name in a.tasks:
        task = TASKS[task_name]
        steps = task.quick_steps if a.quick else task.steps
        results[task_name], raw[task_name] = {}, {}
        for variant in variants:
            config = SQNConfig(replay="uniform", learning_starts=500, **VARIANTS[variant])
            runs = []
            for seed in seeds:  # variants of one seed use the same env and network seeds
                r = run(task.make, config, seed, steps, a.eval_every, a.eval_episodes)
                runs.append(r)
                print(f"  {task_name:6s} {variant:20s} seed {seed}: final {r['final']:.2f}  auc {r['auc']:.2f}  "
                      f"alpha {r['final_alpha']}  ({r['wall_s']:.0f} s)", flush=True)
            results[task_name][variant] = summarise(runs)
            raw[task_name][variant] = runs

    print()
    print(f"seeds {seeds}; greedy return over {a.eval_episodes} fixed evaluation episodes every {a.eval_every} steps")
    print("final = return at the last evaluation; AUC = area under the evaluation curve / steps (trapezoid); mean ± std over seeds\n")
    for task_name, by_variant in results.items():
        task = TASKS[task_name]
        steps = task.quick_steps if a.quick else task.steps
        print(f"{task_name}: {task.describe}; {steps:,} steps; optimum {task.optimum}, random {task.random:.2f}")
        print("| variant | final | AUC | final per seed |")
        print("|---|---|---|---|")
        for variant, s in by_variant.items():
            print(f"| {variant} | {s['final_mean']:.2f} ± {s['final_std']:.2f} | {s['auc_mean']:.2f} ± {s['auc_std']:.2f} "
                  f"| {', '.join(f'{f:.2f}' for f in s['finals'])} |")
        print()
    print_result({"benchmark": "multidiscrete_ablation", "quick": a.quick, "seeds": seeds, "variants": variants,
                  "tasks": {t: TASKS[t].describe for t in a.tasks}, "results": results, "runs": raw, "machine": info})


if __name__ == "__main__":
    main()
