"""Native MultiDiscrete SQN against flattening the action space, and native SQN on a large nvec.

Small nvec, same task, seeds and step budget for both sides:

* ``native``: ``SQNAgent`` on the ``MultiDiscrete`` space (one Q head per component);
* ``flat``: ``wrappers.FlattenMultiDiscreteAction`` turns it into ``Discrete(prod(nvec))`` and the
  same ``SQNAgent`` learns one Q value per joint action. The entropy targets agree:
  ``ratio * log(prod n_d) = sum_d ratio * log(n_d)``.

Tasks (``tests/envs.py``): ``match`` with nvec (3, 4, 5) (60 joint actions; reward = fraction of
components matched) and ``joint`` with nvec (2, 3, 4) (24 joint actions; reward only when all
components match, where a joint Q table has the advantage).

Large nvec: ``MatchTargetsEnv`` with 8 components of 5 choices (390,625 joint actions; the
wrapper refuses it and the refusal is recorded), learned natively with the default network
and with a smaller one.

Every run uses ``SQNConfig(replay="uniform", learning_starts=500)`` and the defaults otherwise.

    python benchmarks/multidiscrete_vs_flat.py            # the docs/multidiscrete.md tables
    python benchmarks/multidiscrete_vs_flat.py --quick    # < 1 minute: 1 seed, 1,000 steps each

The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse

from _common import machine_info, print_result
from _multidiscrete import MatchTargetsEnv, run, summarise

from sqn_agents import SQNConfig
from wrappers import FlattenMultiDiscreteAction

SMALL = {
    "match": (lambda: MatchTargetsEnv((3, 4, 5), reward="fraction"), 2_500, 8 * (1 / 3 + 1 / 4 + 1 / 5) / 3,
              "MatchTargetsEnv nvec=(3,4,5), reward = fraction matched (60 joint actions)"),
    "joint": (lambda: MatchTargetsEnv((2, 3, 4), reward="all"), 4_000, 8 / 24,
              "MatchTargetsEnv nvec=(2,3,4), reward 1 only if all match (24 joint actions)"),
}
LARGE_NVEC = (5,) * 8
LARGE_CONFIGS = {"default (256, 256)": (256, 256), "hidden_sizes (64, 64)": (64, 64)}


def table(rows: list[tuple[str, dict]]) -> None:
    print("| system | final | AUC | final per seed | wall s (all seeds) |")
    print("|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['final_mean']:.2f} ± {s['final_std']:.2f} | {s['auc_mean']:.2f} ± {s['auc_std']:.2f} | "
              f"{', '.join(f'{f:.2f}' for f in s['finals'])} | {s['wall_s']:.0f} |")
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--large-steps", type=int, default=5_000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="1 seed, 1,000 steps per run, to check the script runs")
    a = p.parse_args()
    seeds = a.seeds[:1] if a.quick else a.seeds
    info = machine_info()
    results: dict = {"small": {}, "large": {}}
    raw: dict = {"small": {}, "large": {}}

    def go(label: str, make, steps: int, config: SQNConfig, wrap=None) -> dict:
        runs = []
        for seed in seeds:
            r = run(make, config, seed, steps, a.eval_every, a.eval_episodes, wrap=wrap)
            runs.append(r)
            print(f"  {label:32s} seed {seed}: final {r['final']:.2f}  auc {r['auc']:.2f}  ({r['wall_s']:.0f} s)", flush=True)
        return {"summary": summarise(runs), "runs": runs}

    config = SQNConfig(replay="uniform", learning_starts=500)
    for task, (make, steps, _, _) in SMALL.items():
        steps = 1_000 if a.quick else steps
        for system, wrap in (("native", None), ("flat", FlattenMultiDiscreteAction)):
            out = go(f"{task} {system}", make, steps, config, wrap)
            results["small"].setdefault(task, {})[system] = out["summary"]
            raw["small"].setdefault(task, {})[system] = out["runs"]

    def make_large():
        return MatchTargetsEnv(LARGE_NVEC, reward="fraction")

    try:
        FlattenMultiDiscreteAction(make_large())
        refusal = None
    except ValueError as err:
        refusal = str(err)
    large_steps = 1_000 if a.quick else a.large_steps
    for name, hidden in LARGE_CONFIGS.items():
        out = go(f"large native {name}", make_large, large_steps, SQNConfig(replay="uniform", learning_starts=500,
                                                                            hidden_sizes=hidden))
        results["large"][name] = out["summary"]
        raw["large"][name] = out["runs"]

    print()
    print(f"seeds {seeds}; greedy return over {a.eval_episodes} fixed evaluation episodes every {a.eval_every} steps; "
          "returns lie in [0, 8]; mean ± std over seeds\n")
    for task, (_, steps, rand, describe) in SMALL.items():
        print(f"{task}: {describe}; {1_000 if a.quick else steps:,} steps; random {rand:.2f}")
        table([(system, results["small"][task][system]) for system in ("native", "flat")])
    print(f"large: MatchTargetsEnv nvec=(5,)*8 (390,625 joint actions), native only; {large_steps:,} steps; "
          f"random {8 / 5:.2f}")
    print(f"flattening refused: {refusal}" if refusal else "flattening accepted (unexpected)")
    table(list(results["large"].items()))
    print_result({"benchmark": "multidiscrete_vs_flat", "quick": a.quick, "seeds": seeds, "results": results,
                  "flatten_refusal": refusal, "runs": raw, "machine": info})


if __name__ == "__main__":
    main()
