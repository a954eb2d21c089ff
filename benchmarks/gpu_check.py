"""The first GPU run, prepared: fits in 5 minutes on one CUDA device, and exits cleanly without one.

    python benchmarks/gpu_check.py                 # all three parts; RESULT line, and gpu_check.json in --out
    python benchmarks/gpu_check.py --quick         # a few steps of each part (also what CI runs, without CUDA)

1. The tests that need CUDA (``tests/test_host_syncs.py``: no host reads per gradient step on
   CUDA, the pinned staging buffers; ``tests/test_precision.py``: bf16 against fp32 on CUDA;
   ``tests/test_checkpoint.py``: a CUDA checkpoint on the CPU; ``tests/test_replay_on_device.py``:
   a replay on CUDA samples the host replay's batches), with pytest.
2. The update against bare torch on CUDA: ``learner.gradient_step()`` (replay sampling on the host,
   copies through pinned buffers, the whole step) against the twin networks' step written in
   plain torch on a fixed batch already on the device (``overhead.twin_step``), for the MLP
   (CartPole shapes, batch 128) and the Nature CNN (Atari shapes, batch 64), in fp32 and bf16.
   Each side runs ``--steps`` steps back to back and is timed to the device's completion
   (``torch.cuda.synchronize`` once, at the end), so the figure is throughput; "host" is the time
   the Python loop took before that synchronize (how far the host ran ahead of the device).
   Then the sampled update with ``replay_on_device`` off (frames sampled on the host, copied through
   pinned buffers) and on (frames stored and gathered on the GPU), fp32, timed the same way.
3. A short Atari run: ``sqn-train --preset atari-100k`` on Pong for ``--atari-steps`` steps with
   the first update at step 1,000, on CUDA (needs ale-py; skipped without it), its steps/s.

The last line is ``RESULT {json}``; the same JSON goes to ``<--out>/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from _common import ROOT, machine_info, print_result
from overhead import twin_step
from precision import NETWORKS, learner_for


def run_tests(timeout: float) -> dict[str, Any]:
    files = ["tests/test_host_syncs.py", "tests/test_precision.py", "tests/test_checkpoint.py",
             "tests/test_replay_on_device.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "not slow", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    tail = proc.stdout.strip().splitlines()[-15:]
    return {"returncode": proc.returncode, "cuda_tests_skipped": "needs CUDA" in proc.stdout, "tail": tail}


def bare_twin(learner: Any) -> SimpleNamespace:
    """Copies of the learner's torsos (float input) with their own Adam, for ``overhead.twin_step``."""
    nets = [copy.deepcopy(n.body) for n in learner.q_nets]
    targets = [copy.deepcopy(n.body).requires_grad_(False) for n in learner.target_nets]
    params = [p for n in nets for p in n.parameters()]
    return SimpleNamespace(nets=nets, targets=targets, params=params,
                           target_params=[p for n in targets for p in n.parameters()],
                           opt=torch.optim.Adam(params, lr=learner.config.learning_rate, fused=True))


def timed_steps(step: Any, steps: int) -> dict[str, float]:
    for _ in range(5):  # warm-up: kernels chosen, allocator warm
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    host = time.perf_counter() - t0
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    return {"ms_per_step": round(1e3 * total / steps, 3), "host_ms_per_step": round(1e3 * host / steps, 3)}


def update_against_bare(steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for network in NETWORKS:
        config = NETWORKS[network][2]
        for precision in ("fp32", "bf16"):
            cuda = learner_for(network, precision, compiled=False, fill=max(4 * config.batch_size, 1_000),
                               device="cuda")
            twin = bare_twin(cuda)
            b = cuda.replay.sample(config.batch_size)
            dev = torch.device("cuda")
            obs, next_obs = (torch.as_tensor(x, device=dev).float() for x in (b.obs, b.next_obs))
            if obs.dim() == 4:
                obs, next_obs = obs / 255.0, next_obs / 255.0
            batch = (obs, torch.as_tensor(b.actions, device=dev), torch.as_tensor(b.rewards, device=dev), next_obs,
                     torch.as_tensor(b.terminated, device=dev))

            def bare_step(twin=twin, batch=batch, bf16=precision == "bf16", gamma=config.gamma, tau=config.tau) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    twin_step(twin, batch, gamma, 0.1, tau)

            agent, bare = timed_steps(cuda.gradient_step, steps), timed_steps(bare_step, steps)
            out[f"{network} {precision}"] = {"learner": agent, "bare": bare,
                                             "ratio": round(agent["ms_per_step"] / bare["ms_per_step"], 3)}
    return out


def replay_on_device_update(steps: int) -> dict[str, Any]:
    """``learner.gradient_step()`` with the replay in host memory against the replay on the GPU (fp32)."""
    out: dict[str, Any] = {}
    for network in NETWORKS:
        fill = max(4 * NETWORKS[network][2].batch_size, 1_000)
        row = {}
        for on in (False, True):
            learner = learner_for(network, "fp32", compiled=False, fill=fill, device="cuda", replay_on_device=on)
            row["on" if on else "off"] = timed_steps(learner.gradient_step, steps)
        row["ratio_on_off"] = round(row["on"]["ms_per_step"] / row["off"]["ms_per_step"], 3)
        out[network] = row
    return out


def atari_run(steps: int, out_dir: Path, timeout: float) -> dict[str, Any]:
    try:
        import ale_py  # noqa: F401
    except ImportError:
        return {"skipped": "ale-py is not installed"}
    run_dir = out_dir / "atari_run"
    cmd = [sys.executable, "-m", "sqn_agents", "--preset", "atari-100k", "--env-id", "ALE/Pong-v5",
           "--total-steps", str(steps), "--config.learning-starts", "1000", "--eval-every", "0", "--device", "cuda",
           "--no-progress", "--no-save-replay", "--output-dir", str(run_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    result: dict[str, Any] = {"returncode": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
                              "command": " ".join(cmd[1:])}
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr.strip().splitlines()[-10:]
    elif (run_dir / "summary.json").exists():
        result["steps_per_second"] = json.loads((run_dir / "summary.json").read_text()).get("steps_per_second")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="timed gradient steps per variant")
    p.add_argument("--atari-steps", type=int, default=6_000)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu_check")))
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--quick", action="store_true", help="20 timed steps, a 1,500-step Atari run")
    a = p.parse_args()
    if a.quick:
        a.steps, a.atari_steps = 20, 1_500
    result: dict[str, Any] = {"benchmark": "gpu_check", "quick": a.quick, "cuda": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check (skipped)")
        print_result({**result, "skipped": True})
        return
    a.out.mkdir(parents=True, exist_ok=True)
    result["device_name"] = torch.cuda.get_device_name()
    result["machine"] = machine_info()
    t0 = time.perf_counter()
    if not a.skip_tests:
        result["tests"] = run_tests(timeout=150)
        print("tests:", *result["tests"]["tail"][-3:], sep="\n  ")
    result["update"] = update_against_bare(a.steps)
    for name, row in result["update"].items():
        print(f"update {name:<18} learner {row['learner']['ms_per_step']:.2f} ms/step "
              f"(host {row['learner']['host_ms_per_step']:.2f}), bare {row['bare']['ms_per_step']:.2f}, "
              f"ratio {row['ratio']}")
    result["replay_on_device"] = replay_on_device_update(a.steps)
    for name, row in result["replay_on_device"].items():
        print(f"replay_on_device {name:<12} off {row['off']['ms_per_step']:.2f} ms/step, "
              f"on {row['on']['ms_per_step']:.2f} (ratio {row['ratio_on_off']})")
    result["atari_run"] = atari_run(a.atari_steps, a.out, timeout=max(30.0, 280 - (time.perf_counter() - t0)))
    print("atari run:", result["atari_run"])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (a.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    print_result(result)


if __name__ == "__main__":
    main()
