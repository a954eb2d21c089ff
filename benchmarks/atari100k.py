"""Atari-100k: ``sqn-train --preset atari-100k`` on several games and seeds, next to published baselines.

    python benchmarks/atari100k.py run --name bf16-ratio0.5 --games Boxing Freeway Breakout RoadRunner \\
        --seeds 0 1 2 --jobs 2 --extra="--config.precision bf16 --config.target-entropy-ratio 0.5"
    python benchmarks/atari100k.py evaluate --name bf16-ratio0.5  # 30 greedy games of each final checkpoint
    python benchmarks/atari100k.py report --name bf16-ratio0.5    # table, IQM, plot, RESULT line
    python benchmarks/atari100k.py --quick                      # < 1 minute smoke run (temporary folder)

``run`` plays one ``python -m sqn_agents --preset atari-100k`` process per (game, seed), at most
``--jobs`` at once, one torch thread each (``sweep.py``'s runner). Each finished run leaves one small
JSON file, ``benchmarks/results/atari100k/<name>/ALE-<Game>-v5__default__seed<s>.json`` (evaluation
curve, final score, wall time, flags, commit): commit it as it lands; a run whose file exists is
skipped, so a sweep resumes where it stopped, across sessions. ``--extra`` flags go to every run of the
name (one name = one configuration: spell out in ``--extra`` every value the name depends on, so that a
later change of the preset cannot slip into a stored name).

``evaluate`` plays ``--final-games`` (30) whole greedy games with each finished run's final checkpoint
(in its run folder, which stays on the machine that trained it) and adds them to the run's file. The
games start from the seeds of the run's evaluations, so the first 10 must replay the run's last
evaluation exactly, or the run is refused.

``report`` reads one name's files. The score of a run is the mean unclipped score of its final policy
after 100k agent steps (400k frames): over the 30 ``evaluate`` games when every run has them, else over
the 10 games of its last evaluation. Per game: mean ± std over seeds (population
std), next to SAC-Discrete (Christodoulou 2019, arXiv 1910.07207, Table 1; mean of 5 seeds, no spread),
data-efficient Rainbow (DER; van Hasselt et al. 2019, the values the Atari-100k literature quotes), and
a uniformly random policy played under the same protocol here (10 games). Across games: the
interquartile mean (IQM) of human-normalised scores, ``(score - random) / (human - random)`` with the
random and human scores of the rliable / DQN Zoo tables, pooled over every run of every game, with a
95% stratified-bootstrap interval (Agarwal et al. 2021).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR, machine_info, print_result, write_json
from sweep import run_one

OUT = RESULTS_DIR / "atari100k"
RAW = RESULTS_DIR / "raw" / "atari100k"  # run folders (git-ignored)
STEPS, EVAL_EVERY, EVAL_EPISODES = 100_000, 20_000, 10  # the preset's
FINAL_GAMES = 30  # ``evaluate``: the Atari-100k protocol's games of the final policy (the preset evaluates 10)

# Table 1 of arXiv 1910.07207: SAC-Discrete's score after 100k agent steps.
SAC_DISCRETE_100K = {
    "Alien": 216.9, "Amidar": 7.9, "Assault": 350.0, "Asterix": 272.0, "BattleZone": 4386.7,
    "BeamRider": 432.1, "Breakout": 0.7, "CrazyClimber": 3668.7, "Enduro": 0.8, "Freeway": 4.4,
    "Frostbite": 59.4, "Jamesbond": 68.3, "Kangaroo": 29.3, "MsPacman": 690.9, "Pong": -20.98,
    "Qbert": 280.5, "RoadRunner": 305.3, "Seaquest": 211.6, "SpaceInvaders": 160.8, "UpNDown": 250.7,
}
# Data-efficient Rainbow at 100k steps (van Hasselt et al. 2019): six of its games, the ones this project runs first.
DER_100K = {"Pong": -19.3, "Breakout": 1.9, "Boxing": 0.2, "Freeway": 27.9, "Kangaroo": 779.3, "RoadRunner": 9600.0}
# (random, human) scores of the 26 Atari-100k games: rliable's tables, which are DQN Zoo's atari_data.py.
RANDOM_HUMAN = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0), "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5), "Boxing": (0.1, 12.1), "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8), "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6), "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5), "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MsPacman": (307.3, 6951.6), "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3), "Qbert": (163.9, 13455.0), "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7), "UpNDown": (533.4, 11693.2),
}


# ---------------------------------------------------------------------- aggregate metrics
def human_normalized(game: str, score: float) -> float:
    random, human = RANDOM_HUMAN[game]
    return (score - random) / (human - random)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all values: drop the lowest and highest ``floor(n / 4)``, average the rest
    (``scipy.stats.trim_mean(x, 0.25)``, rliable's ``aggregate_iqm``; written here to keep scipy out)."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    cut = int(0.25 * x.size)
    return float(x[cut:x.size - cut].mean())


def stratified_bootstrap_ci(per_game: list[np.ndarray], stat: Any = iqm, reps: int = 2_000,
                            level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``stat`` when each game's runs are resampled with replacement on their own
    (rliable's stratified bootstrap: the games are fixed, the seeds are the random part)."""
    rng = np.random.default_rng(seed)
    values = [stat(np.concatenate([g[rng.integers(0, g.size, g.size)] for g in per_game])) for _ in range(reps)]
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


# ---------------------------------------------------------------------- runs
def run_all(name: str, games: list[str], seeds: list[int], jobs: int, extra: list[str], out: Path, raw: Path,
            steps: int = STEPS, eval_every: int = EVAL_EVERY, eval_episodes: int = EVAL_EPISODES) -> None:
    from concurrent.futures import ThreadPoolExecutor

    flags = ["--preset", "atari-100k", *extra]
    todo = [(f"ALE/{g}-v5", s) for s in seeds for g in games]  # seed-major: whole seeds land first
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(lambda j: run_one(name, j[0], {}, j[1], steps, flags, eval_every, eval_episodes,
                                               out, raw), todo))
    if any(r is None for r in done):
        raise SystemExit("some runs failed (see above)")


def final_games(path: Path, games: int) -> dict[str, Any]:
    """``games`` whole greedy games of a finished run's final checkpoint, stored in its file as ``final_games``.

    The games start from the seeds of the run's own evaluations (``EVAL_SEED``), so the first
    ``eval_episodes`` of them must replay the run's last evaluation score exactly: that checks the
    checkpoint, the env settings and the code against the run before any new game counts.
    """
    import torch

    from sqn_agents import SQNAgent
    from sqn_agents.loop import evaluate
    from sqn_agents.train import EVAL_SEED, TrainArgs, make_env, resume_args

    torch.set_num_threads(1)
    record = json.loads(path.read_text())
    command = record["command"].split()
    run_dir = Path(command[command.index("--output-dir") + 1])
    if not (run_dir / "checkpoint" / "checkpoint.json").is_file():
        raise FileNotFoundError(f"{path.name}: no checkpoint in {run_dir} (run folders are not committed; play the "
                                "games on the machine that trained the run)")
    args, _ = resume_args(TrainArgs(resume=str(run_dir)), explicit=())  # the run's own flags, from its args.json
    env = make_env(args.env_id, args.atari)
    agent = SQNAgent.load(run_dir / "checkpoint", device="cpu", observation_space=env.observation_space,
                          action_space=env.action_space)
    if agent.env_steps != record["total_steps"]:
        raise ValueError(f"{path.name}: the checkpoint in {run_dir} is at step {agent.env_steps}, "
                         f"not the run's last step {record['total_steps']}")
    t0 = time.perf_counter()
    scores = evaluate(agent, env, games, seed=EVAL_SEED + args.seed)
    env.close()
    replayed = float(np.mean(scores[:record["eval_episodes"]]))
    if not np.isclose(replayed, record["final_eval"]):
        raise ValueError(f"{path.name}: the first {record['eval_episodes']} games score {replayed}, not the run's last "
                         f"evaluation {record['final_eval']}: the checkpoint or the env settings differ from the run's")
    return {"games": games, "first_seed": EVAL_SEED + args.seed, "scores": scores,
            "mean": round(float(np.mean(scores)), 2), "std": round(float(np.std(scores)), 2),
            "wall_time_s": round(time.perf_counter() - t0, 1)}


def play_all(out: Path, games: int, jobs: int) -> None:
    """``final_games`` for every run file of ``out`` that lacks them (or has fewer games), ``jobs`` at a time,
    each in a fresh spawned process (one torch thread); each file is rewritten as its games end."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    todo = [p for p in sorted(out.glob("ALE-*__seed*.json"))
            if json.loads(p.read_text()).get("final_games", {}).get("games") != games]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for path, played in zip(todo, pool.map(final_games, todo, [games] * len(todo)), strict=True):
            record = json.loads(path.read_text())
            write_json(path, {**record, "final_games": played})
            print(f"{path.name}: {games} games {played['mean']} ± {played['std']} "
                  f"(the run's last evaluation, replayed: {record['final_eval']}), {played['wall_time_s']} s", flush=True)


def random_scores(game: str, episodes: int, seed: int) -> list[float]:
    """Unclipped whole-game scores of a uniformly random policy under the preset's env settings."""
    from sqn_agents.train import PRESETS, make_env

    env = make_env(f"ALE/{game}-v5", PRESETS["atari-100k"].atari)
    env.action_space.seed(seed)
    scores: list[float] = []
    env.reset(seed=seed)
    while len(scores) < episodes:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if "game" in info:  # the real game ended (a lost life only ends a training episode)
            scores.append(float(info["game"]["r"]))
        if terminated or truncated:
            env.reset()
    env.close()
    return scores


# ---------------------------------------------------------------------- report
def load(out: Path) -> dict[str, list[dict[str, Any]]]:
    """The finished runs of one name, per game (``Breakout``), sorted by seed."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.glob("ALE-*__seed*.json")):
        r = json.loads(path.read_text())
        runs.setdefault(r["env_id"].removeprefix("ALE/").removesuffix("-v5"), []).append(r)
    return {g: sorted(rs, key=lambda r: r["seed"]) for g, rs in sorted(runs.items())}


def plot(runs: dict[str, list[dict[str, Any]]], randoms: dict[str, float], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cols = min(len(runs), 3)
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    for ax, (game, rs) in zip(axes.flat[:len(runs)], runs.items(), strict=True):
        n = min(len(r["evals"]) for r in rs)
        steps = np.array([e[0] for e in rs[0]["evals"][:n]])
        values = np.array([[e[1] for e in r["evals"][:n]] for r in rs])
        for v in values:
            ax.plot(steps, v, color="tab:orange", alpha=0.3, linewidth=1)
        ax.plot(steps, values.mean(0), "o-", color="tab:orange", linewidth=2,
                label=f"SQN, mean of {len(rs)} seed{'s' * (len(rs) > 1)}")
        if all("final_games" in r for r in rs):
            ax.plot(steps[-1], np.mean([r["final_games"]["mean"] for r in rs]), "*", color="black", markersize=11,
                    label=f"final checkpoint, {rs[0]['final_games']['games']} games (mean of seeds)")
        if game in SAC_DISCRETE_100K:
            ax.axhline(SAC_DISCRETE_100K[game], color="tab:blue", linestyle="--", label="SAC-Discrete at 100k")
        if game in DER_100K:
            ax.axhline(DER_100K[game], color="tab:green", linestyle="--", label="DER at 100k")
        ax.axhline(randoms[game], color="gray", linestyle=":", label="uniform random (measured)")
        ax.set(title=game, xlabel="agent steps (x4 frames)", ylabel=f"greedy score (evaluations of {rs[0]['eval_episodes']} games)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def report(name: str, out: Path, random_episodes: int, save: bool, quick: bool = False) -> dict[str, Any]:
    runs = load(out)
    # A run's score: the mean of its final checkpoint's ``evaluate`` games when every run has them, else its last
    # evaluation (10 games); one rule for the whole table, so that the IQM pools like with like.
    games = {r.get("final_games", {}).get("games") for rs in runs.values() for r in rs}
    per_run_games = games.pop() if len(games) == 1 and None not in games else None
    table: dict[str, dict[str, Any]] = {}
    randoms: dict[str, float] = {}
    for game, rs in runs.items():
        finals = [r["final_games"]["mean"] if per_run_games else r["final_eval"] for r in rs]
        randoms[game] = float(np.mean(random_scores(game, random_episodes, seed=123)))
        row = {
            "seeds": [r["seed"] for r in rs], "sqn_final_per_seed": finals,
            "last_eval_per_seed": [r["final_eval"] for r in rs],
            "sqn_mean": round(statistics.mean(finals), 2), "sqn_std": round(statistics.pstdev(finals), 2),
            "sac_discrete_paper": SAC_DISCRETE_100K.get(game), "der_paper": DER_100K.get(game),
            "random_measured": round(randoms[game], 2),
            "human_normalized_mean": (round(statistics.mean(human_normalized(game, f) for f in finals), 4)
                                      if game in RANDOM_HUMAN else None),
            "env_steps": [r["evals"][-1][0] if r["evals"] else None for r in rs],
            "wall_time_s": [r["wall_time_s"] for r in rs], "commits": sorted({r["commit"] for r in rs}),
            "flags": sorted({" ".join(r["extra_flags"]) for r in rs}),
        }
        row["above_sac_discrete"] = None if row["sac_discrete_paper"] is None else row["sqn_mean"] > row["sac_discrete_paper"]
        row["at_least_der"] = None if row["der_paper"] is None else row["sqn_mean"] >= row["der_paper"]
        table[game] = row
        print(f"{game:>14}: SQN {row['sqn_mean']:.2f} ± {row['sqn_std']:.2f} (seeds {row['seeds']}: {finals}), "
              f"SAC-Discrete {row['sac_discrete_paper']}, DER {row['der_paper']}, random {randoms[game]:.1f}",
              flush=True)
    # The IQM covers the games of the 26-game Atari-100k set only (those have random and human scores).
    per_game = [np.array([human_normalized(g, f) for f in table[g]["sqn_final_per_seed"]]) for g in runs
                if g in RANDOM_HUMAN]
    aggregate: dict[str, Any] = {}
    if per_game:
        pooled = np.concatenate(per_game)
        aggregate = {"games": [g for g in runs if g in RANDOM_HUMAN], "runs": int(pooled.size),
                     "iqm_human_normalized": round(iqm(pooled), 4),
                     "iqm_95ci": [round(x, 4) for x in stratified_bootstrap_ci(per_game)],
                     "mean_human_normalized": round(float(pooled.mean()), 4),
                     "median_of_game_means": round(float(np.median([g.mean() for g in per_game])), 4)}
        print(f"IQM of human-normalised scores over {aggregate['runs']} runs of {len(per_game)} games: "
              f"{aggregate['iqm_human_normalized']} (95% CI {aggregate['iqm_95ci']})", flush=True)
    score = (f"mean of {per_run_games} greedy games of the final checkpoint" if per_run_games else
             "the last greedy evaluation (mean of the run's eval_episodes games)")
    print(f"score of a run: {score}", flush=True)
    result = {"benchmark": "atari100k", "quick": quick, "name": name, "runs_folder": str(out), "score": score,
              "table": table,
              "aggregate": aggregate, "machine": machine_info()}
    if save and table:
        write_json(RESULTS_DIR / f"atari100k_{name}.json", result)
        plot(runs, randoms, RESULTS_DIR / f"atari100k_{name}.png")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["run", "evaluate", "report"], default="report")
    p.add_argument("--name", default="preset", help="one configuration's folder under benchmarks/results/atari100k")
    p.add_argument("--games", nargs="+", default=["Breakout", "Boxing", "Freeway", "RoadRunner"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at once (one core each)")
    p.add_argument("--extra", default="", help="flags for every run of this name, e.g. '--config.precision bf16'")
    p.add_argument("--final-games", type=int, default=FINAL_GAMES, help="evaluate: greedy games per final checkpoint")
    p.add_argument("--quick", action="store_true", help="one 600-step Pong run and its report, into a temp folder")
    a = p.parse_args()
    if a.quick:
        tmp = Path(tempfile.mkdtemp(prefix="sqn-atari100k-"))
        out = tmp / "results"
        run_all("quick", ["Pong"], [0], 1, ["--config.learning-starts", "300"], out, tmp / "raw",
                steps=600, eval_every=600, eval_episodes=1)
        play_all(out, games=2, jobs=1)
        print_result(report("quick", out, random_episodes=2, save=False, quick=True))
        return
    out = OUT / a.name
    if a.command == "run":
        run_all(a.name, a.games, a.seeds, a.jobs, a.extra.split(), out, RAW / a.name)
    if a.command == "evaluate":
        play_all(out, a.final_games, a.jobs)
    print_result(report(a.name, out, random_episodes=10, save=True))


if __name__ == "__main__":
    main()
