"""Sample efficiency of SQN against Stable-Baselines3 DQN: CartPole-v1 and MinAtar.

    python benchmarks/sample_efficiency.py cartpole --algos sb3 sqn --seeds 0 1 2 3 4
    python benchmarks/sample_efficiency.py acrobot --algos sb3 sqn --seeds 0 1 2 3 4
    python benchmarks/sample_efficiency.py minatar --games Breakout SpaceInvaders --frames 25000 --seeds 0 1 2
    python benchmarks/sample_efficiency.py minatar --games Asterix Breakout Freeway Seaquest SpaceInvaders \
        --frames 50000 --eval-every 10000 --eval-episodes 10 --jobs 2 --out benchmarks/results/minatar_50k
    python benchmarks/sample_efficiency.py report     # tables and plots from the stored runs
    python benchmarks/sample_efficiency.py --quick    # < 1 minute smoke run (temporary folder)

Protocol (both algorithms): greedy evaluation every ``--eval-every`` env steps and at the end,
``--eval-episodes`` episodes, episode i of an evaluation reset with seed ``EVAL_SEED + seed + i`` (sqn_agents.train, 10,000)
(``sqn_agents.loop.evaluate``'s protocol; SB3 is evaluated by a callback that calls
``model.predict(obs, deterministic=True)``). Reported per run: steps to a greedy mean of at
least the threshold (CartPole: 475) and the area under the evaluation curve divided by the
run length (the mean greedy return over the run; ``benchmarks/cartpole_seeds.py``'s definition).

* SQN: ``sqn_agents.train.train`` (the sqn-train loop) with the ``SQNConfig`` defaults on classic
  control and ``--preset minatar``'s learner on MinAtar (its ``config``; the budget and evaluation
  are this script's flags). ``--sqn-set FIELD=VALUE`` changes one ``SQNConfig`` field of SQN's runs
  (a sweep: one ``--out`` per value). Each run records its setup (``sqn_setup``).
* SB3 DQN on CartPole-v1 and Acrobot-v1: the rl-baselines3-zoo hyperparameters for each env
  (``hyperparams/dqn.yml`` of DLR-RM/rl-baselines3-zoo, commit ce95481b041f; ``SB3_ZOO``).
  With ``train_freq`` 256 SB3 finishes its last rollout, so it runs 50,176 env steps on CartPole;
  the evaluations stop at 50,000. Acrobot-v1 runs for the zoo's 100,000 steps.
* SB3 DQN on MinAtar: the zoo has no MinAtar entry. The network is SQN's MinAtar network
  (3x3 conv with 16 channels, a 128-unit layer; a custom features extractor), the settings both
  algorithms have are SQN's defaults (Adam 1e-3, batch 128, replay 100,000, 1,000 steps before
  learning, one gradient step per env step, Polyak 0.005 every step, clip 10, gamma 0.99), and
  the DQN-only ones SB3's defaults (epsilon 1 -> 0.05 over the first 10% of the run, Huber
  loss); ``sb3_minatar_kwargs``.

Each run is stored as one small JSON file under ``benchmarks/results/sample_efficiency/``
(``--out`` to change); a run whose file is already there with the same budget and evaluation is
skipped, so an interrupted command resumes where it stopped. ``--jobs N`` runs N at a time, each
in its own process (one torch thread each). ``report`` reads them all, prints the tables, writes
``summary.json`` and the PNG learning curves (mean over seeds, min-max band; in ``benchmarks/results/``
for the default ``--out``, inside ``--out`` otherwise). The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import multiprocessing
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    RESULTS_DIR,
    ROOT,
    eval_auc,
    machine_info,
    median,
    print_result,
    sb3_eval_callback,
    steps_to,
    write_json,
)

from sqn_agents.config import SQNConfig
from sqn_agents.train import EVAL_SEED, PRESETS, TrainArgs, make_env, read_metrics, train

DEFAULT_OUT = RESULTS_DIR / "sample_efficiency"
RAW = RESULTS_DIR / "raw"  # run folders of sqn-train (git-ignored)

# rl-baselines3-zoo, hyperparams/dqn.yml, "CartPole-v1" (commit ce95481b041fe5314c1b2f1a53940d169b9253fc):
# n_timesteps 5e4, MlpPolicy; the rest verbatim.
SB3_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
# The same file, "Acrobot-v1": n_timesteps 1e5, MlpPolicy; the rest verbatim (gradient_steps -1: as many as env steps).
SB3_ACROBOT = dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0, gamma=0.99,
                   target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
                   exploration_final_eps=0.1, policy_kwargs=dict(net_arch=[256, 256]))
SB3_ZOO = {"CartPole-v1": SB3_CARTPOLE, "Acrobot-v1": SB3_ACROBOT}
CARTPOLE_STEPS = 50_000
CARTPOLE_THRESHOLD = 475.0
ACROBOT_STEPS = 100_000
ACROBOT_THRESHOLD = -100.0  # gymnasium's reward_threshold for Acrobot-v1


def sb3_minatar_kwargs() -> dict[str, Any]:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class MinAtarCNN(BaseFeaturesExtractor):
        """SQN's SmallCNN torso for channels-last (10, 10, C) boards: conv 3x3x16, ReLU, 128 units, ReLU."""

        def __init__(self, observation_space: Any, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            h, w, c = observation_space.shape
            self.net = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(16 * (h - 2) * (w - 2), features_dim), nn.ReLU())

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.net(obs.float().permute(0, 3, 1, 2))

    return dict(learning_rate=1e-3, batch_size=128, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
                train_freq=1, gradient_steps=1, target_update_interval=1, tau=0.005, max_grad_norm=10.0,
                exploration_fraction=0.1, exploration_initial_eps=1.0, exploration_final_eps=0.05,
                policy_kwargs=dict(features_extractor_class=MinAtarCNN, net_arch=[]))


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "sqn_agents_modified": bool(git("status", "--porcelain", "--untracked-files=no", "--", "sqn_agents"))}


def short_machine() -> dict[str, Any]:
    m = machine_info()
    return {k: m[k] for k in ("cpu", "cpus", "loadavg_at_start", "other_busy_processes", "python", "torch",
                              "gymnasium", "stable_baselines3", "minatar")}


# ---------------------------------------------------------------------- runs
def parse_sqn_set(items: list[str]) -> dict[str, Any]:
    """``["target_entropy_ratio=0.3"]`` -> ``{"target_entropy_ratio": 0.3}``, typed like the SQNConfig default."""
    defaults = SQNConfig()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not hasattr(defaults, key):
            raise SystemExit(f"--sqn-set {item!r}: expected FIELD=VALUE with FIELD an SQNConfig field")
        kind = type(getattr(defaults, key))
        if kind not in (bool, int, float, str):  # tuples, None defaults: sweep.py passes them to the CLI's parser
            raise SystemExit(f"--sqn-set {item!r}: only bool, int, float and str fields; use benchmarks/sweep.py")
        out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    return out


def sqn_setup(env_id: str, sqn_set: dict[str, Any]) -> str:
    """What SQN's run of ``env_id`` starts from, and the fields changed: stored as the run's ``sqn_setup``."""
    base = "--preset minatar" if env_id.startswith("MinAtar/") else "defaults"
    return base + "".join(f", {k}={v}" for k, v in sqn_set.items())


def run_sqn(env_id: str, seed: int, steps: int, eval_every: int, episodes: int,
            sqn_set: dict[str, Any] | None = None) -> dict[str, Any]:
    sqn_set = sqn_set or {}
    tag = "".join(f"__{k}={v}" for k, v in sqn_set.items())
    run_dir = RAW / "sample_efficiency" / f"{env_id.replace('/', '-')}__sqn__seed{seed}__{steps}{tag}"
    setup = sqn_setup(env_id, sqn_set)
    base = PRESETS["minatar"] if env_id.startswith("MinAtar/") else TrainArgs()
    args = dataclasses.replace(base, env_id=env_id, total_steps=steps, seed=seed, device="cpu",
                               eval_every=eval_every, eval_episodes=episodes, progress=False, save_replay=False,
                               output_dir=str(run_dir), config=dataclasses.replace(base.config, **sqn_set))
    summary = train(args)
    if summary.get("stopped_by"):  # SIGTERM / Ctrl-C: train() returns early; a part-run must not be stored
        raise RuntimeError(f"{env_id} seed {seed}: stopped by {summary['stopped_by']} at "
                           f"{summary['env_steps']} of {steps} steps; not recorded")
    evals = read_metrics(run_dir / "metrics.csv").get("eval", [])
    return {"evals": [[int(r["env_step"]), r["eval_return_mean"], r["eval_return_std"]] for r in evals],
            "sqn_setup": setup, "wall_time_s": summary["wall_time_s"], "hyperparameters": args.config.to_dict(),
            "env_steps_run": summary["env_steps"], "gradient_steps": summary["gradient_steps"]}


def run_sb3(env_id: str, seed: int, steps: int, eval_every: int, episodes: int) -> dict[str, Any]:
    from stable_baselines3 import DQN

    kwargs = SB3_ZOO[env_id] if env_id in SB3_ZOO else sb3_minatar_kwargs()
    env, eval_env = make_env(env_id), make_env(env_id)
    model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    callback = sb3_eval_callback(eval_env, eval_every, episodes, EVAL_SEED + seed, steps)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback, progress_bar=False)
    wall = time.perf_counter() - t0
    hp = {k: (v if k != "policy_kwargs" else {kk: getattr(vv, "__name__", vv) for kk, vv in v.items()})
          for k, v in kwargs.items()}
    return {"evals": [list(e) for e in callback.evals], "wall_time_s": round(wall, 1), "hyperparameters": hp,
            "env_steps_run": int(model.num_timesteps), "gradient_steps": int(model._n_updates)}


def record_path(out: Path, algo: str, env_id: str, seed: int) -> Path:
    return out / f"{env_id.replace('/', '-')}__{algo}__seed{seed}.json"


def run_one(out: Path, algo: str, env_id: str, seed: int, steps: int, eval_every: int, episodes: int,
            threshold: float | None, sqn_set: dict[str, Any] | None = None) -> dict[str, Any]:
    path = record_path(out, algo, env_id, seed)
    setup = sqn_setup(env_id, sqn_set or {})
    if path.exists():
        old = json.loads(path.read_text())
        if (old["total_steps"], old["eval_every"], old["eval_episodes"]) != (steps, eval_every, episodes):
            raise SystemExit(f"{path} holds a run with another budget or evaluation "
                             f"({old['total_steps']} steps, eval every {old['eval_every']}, {old['eval_episodes']} "
                             f"episodes); use another --out")
        # Files from before sqn_setup was recorded ran the defaults of their time.
        if algo == "sqn" and old.get("sqn_setup", "defaults") != setup:
            raise SystemExit(f"{path} holds an SQN run of another setup ({old.get('sqn_setup', 'defaults')!r}, "
                             f"not {setup!r}); use another --out")
        print(f"{env_id} {algo} seed {seed}: stored in {path.name}, skipped", flush=True)
        return old
    torch.set_num_threads(1)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    if algo == "sqn":
        res = run_sqn(env_id, seed, steps, eval_every, episodes, sqn_set)
    else:
        res = run_sb3(env_id, seed, steps, eval_every, episodes)
    steps_ = [e[0] for e in res["evals"]]
    means = [e[1] for e in res["evals"]]
    record = {"algo": algo, "env_id": env_id, "seed": seed, "total_steps": steps, "eval_every": eval_every,
              "eval_episodes": episodes, "threshold": threshold,
              "steps_to_threshold": steps_to(steps_, means, threshold) if threshold is not None else None,
              "eval_auc": round(eval_auc(steps_, means), 2), "final_eval": means[-1] if means else None,
              **res, "started": started, "git": git_state(), "machine": short_machine()}
    write_json(path, record)
    print(f"{env_id} {algo} seed {seed}: steps to {threshold} = {record['steps_to_threshold']}, "
          f"AUC = {record['eval_auc']}, final = {record['final_eval']}, wall = {res['wall_time_s']} s", flush=True)
    return record


# ---------------------------------------------------------------------- report
def algo_label(run: dict[str, Any]) -> str:
    return f"SQN ({run.get('sqn_setup', 'defaults')})" if run["algo"] == "sqn" else "SB3 DQN"


ALGO_COLOR = {"sqn": "tab:blue", "sb3": "tab:orange"}


def load_runs(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*__seed*.json"))]


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["env_id"], r["algo"]), []).append(r)
    table: dict[str, dict[str, Any]] = {}
    for (env_id, algo), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        reached = [r["steps_to_threshold"] for r in rs if r["steps_to_threshold"] is not None]
        aucs = [r["eval_auc"] for r in rs]
        table[f"{env_id} {algo}"] = {
            "env_id": env_id, "algo": algo, "seeds": [r["seed"] for r in rs], "total_steps": rs[0]["total_steps"],
            "eval_every": rs[0]["eval_every"], "eval_episodes": rs[0]["eval_episodes"],
            "threshold": rs[0]["threshold"],
            "steps_to_threshold": [r["steps_to_threshold"] for r in rs],
            "reached": f"{len(reached)}/{len(rs)}",
            "steps_to_threshold_median_of_reached": median(reached) if reached else None,
            "eval_auc": aucs, "eval_auc_mean": round(float(np.mean(aucs)), 1),
            "eval_auc_std": round(float(np.std(aucs)), 1),
            "final_eval": [r["final_eval"] for r in rs],
            "final_eval_mean": round(float(np.mean([r["final_eval"] for r in rs])), 1),
            "final_eval_std": round(float(np.std([r["final_eval"] for r in rs])), 1),
            "wall_time_s": [r["wall_time_s"] for r in rs],
            "git": sorted({r["git"]["commit"] + ("+modified" if r["git"]["sqn_agents_modified"] else "") for r in rs}),
        }
    return table


def plot(runs: list[dict[str, Any]], env_ids: list[str], path: Path, threshold: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(env_ids), 3)
    rows = -(-len(env_ids) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(env_ids):]:
        ax.set_visible(False)
    for ax, env_id in zip(axes.flat[:len(env_ids)], env_ids, strict=True):
        for algo in ("sqn", "sb3"):
            rs = [r for r in runs if r["env_id"] == env_id and r["algo"] == algo]
            if not rs:
                continue
            steps = np.array([e[0] for e in rs[0]["evals"]])
            n = min(len(r["evals"]) for r in rs)
            curves = np.array([[e[1] for e in r["evals"][:n]] for r in rs])
            steps = steps[:n]
            mean = curves.mean(axis=0)
            ax.plot(steps, mean, "o-", markersize=3, color=ALGO_COLOR[algo],
                    label=f"{algo_label(rs[0])}, mean of {len(rs)} seeds")
            ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=ALGO_COLOR[algo], alpha=0.2,
                            label="min-max over seeds")
        if threshold is not None:
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_title(f"{env_id}: greedy evaluation")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("mean evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(out: Path, plots_dir: Path) -> dict[str, Any]:
    runs = load_runs(out)
    table = aggregate(runs)
    plots = []
    for env_id, threshold in (("CartPole-v1", CARTPOLE_THRESHOLD), ("Acrobot-v1", ACROBOT_THRESHOLD)):
        these = [r for r in runs if r["env_id"] == env_id]
        if these:
            png = plots_dir / f"sample_efficiency_{env_id.split('-')[0].lower()}.png"
            plot(these, [env_id], png, threshold)
            plots.append(str(png))
    minatar_ids = sorted({r["env_id"] for r in runs if r["env_id"].startswith("MinAtar/")})
    if minatar_ids:
        plot(runs, minatar_ids, plots_dir / "sample_efficiency_minatar.png")
        plots.append(str(plots_dir / "sample_efficiency_minatar.png"))
    for key, row in table.items():
        thr = f"steps to {row['threshold']:g}: {row['steps_to_threshold']} ({row['reached']}), " if row["threshold"] else ""
        print(f"{key:<32} seeds {row['seeds']}: {thr}AUC mean {row['eval_auc_mean']} ± {row['eval_auc_std']} "
              f"{row['eval_auc']}, final {row['final_eval']}, wall {row['wall_time_s']} s")
    summary = {"runs_folder": str(out), "table": table, "plots": plots}
    write_json(out / "summary.json", summary)
    return summary


# ---------------------------------------------------------------------- main
def _init_worker(raw: str) -> None:
    global RAW
    RAW = Path(raw)
    warnings.filterwarnings("ignore", message=".*Overriding environment MinAtar")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", default="report", choices=("cartpole", "acrobot", "minatar", "report"))
    p.add_argument("--algos", nargs="+", default=["sb3", "sqn"], choices=("sb3", "sqn"))
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0-4 (CartPole), 0-2 (MinAtar)")
    p.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders"])
    p.add_argument("--frames", type=int, default=25_000, help="MinAtar env steps per run")
    p.add_argument("--eval-every", type=int, default=2_500)
    p.add_argument("--eval-episodes", type=int, default=None, help="default 10 (CartPole), 5 (MinAtar)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each (one per core)")
    p.add_argument("--sqn-set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="SQNConfig fields to change in SQN's runs (use a separate --out)")
    p.add_argument("--quick", action="store_true",
                   help="both parts at tiny budgets in a temporary folder (skips what is not installed)")
    a = p.parse_args()
    torch.set_num_threads(1)
    global RAW
    # sqn_agents.train.make_env re-registers the MinAtar ids on every call; gymnasium warns each time.
    warnings.filterwarnings("ignore", message=".*Overriding environment MinAtar")

    if a.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {a.jobs}")
    result: dict[str, Any] = {"benchmark": "sample_efficiency", "quick": a.quick, "part": a.part}
    plots_dir = RESULTS_DIR if a.out.resolve() == DEFAULT_OUT.resolve() else a.out
    have_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    have_minatar = importlib.util.find_spec("minatar") is not None
    algos = [x for x in a.algos if x != "sb3" or have_sb3]
    sqn_set = parse_sqn_set(a.sqn_set)
    if a.quick:
        a.out = Path(tempfile.mkdtemp(prefix="sqn-sample-eff-"))
        plots_dir, RAW = a.out, a.out / "raw"
        for algo in algos:
            run_one(a.out, algo, "CartPole-v1", 0, 1_500, 750, 2, CARTPOLE_THRESHOLD)
        if have_minatar:
            for algo in algos:
                run_one(a.out, algo, f"MinAtar/{a.games[0]}-v1", 0, 1_200, 600, 2, None)
        result["skipped"] = ([] if have_sb3 else ["sb3: stable_baselines3 is not installed"]) + (
            [] if have_minatar else ["minatar: not installed"])
    else:
        # (algo, env_id, seed, steps, eval_every, episodes, threshold), seed-major so that a stopped
        # command leaves whole seeds behind.
        tasks: list[tuple[Any, ...]] = []
        if a.part in ("cartpole", "acrobot"):
            env_id, steps, thr = (("CartPole-v1", CARTPOLE_STEPS, CARTPOLE_THRESHOLD) if a.part == "cartpole"
                                  else ("Acrobot-v1", ACROBOT_STEPS, ACROBOT_THRESHOLD))
            for seed in a.seeds if a.seeds is not None else [0, 1, 2, 3, 4]:
                tasks += [(algo, env_id, seed, steps, a.eval_every, a.eval_episodes or 10, thr) for algo in algos]
        elif a.part == "minatar":
            if not have_minatar:
                raise SystemExit("MinAtar is not installed: pip install minatar")
            for seed in a.seeds if a.seeds is not None else [0, 1, 2]:
                tasks += [(algo, f"MinAtar/{game}-v1", seed, a.frames, a.eval_every, a.eval_episodes or 5, None)
                          for game in a.games for algo in algos]
        if a.jobs == 1:
            for task in tasks:
                run_one(a.out, *task, sqn_set)
        else:
            # A fresh process per run (spawn, maxtasksperchild=1): no state carried between runs.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(a.jobs, initializer=_init_worker, initargs=(str(RAW),), maxtasksperchild=1) as pool:
                for res in [pool.apply_async(run_one, (a.out, *task, sqn_set)) for task in tasks]:
                    res.get()
    summary = report(a.out, plots_dir)
    result.update({"machine": machine_info(), "table": summary["table"], "plots": summary["plots"],
                   "runs_folder": str(a.out)})
    print_result(result)


if __name__ == "__main__":
    main()
