"""Replay memory and sampling speed: FrameStackReplayBuffer against the uniform ReplayBuffer.

Fills both buffers with the same Atari-like 4x84x84 uint8 transitions (one stream of episodes
of 100 to 1,000 steps; every frame distinct, reset stacks of four distinct frames, the costliest
episode start) and prints, for each buffer:

* bytes per stored transition, measured: the buffer's array ``nbytes`` after filling divided by
  ``len(buffer)``;
* the median time of ``sample(32)`` and of ``add`` of one row (one env step).

    python benchmarks/replay_memory.py           # 100,000 transitions (needs ~7 GB of RAM)
    python benchmarks/replay_memory.py --quick   # 10,000 transitions, under 20 s

The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator

import numpy as np

from sqn_agents.frame_replay import FrameStackReplayBuffer
from sqn_agents.replay import ReplayBuffer

STACK, FRAME = 4, (84, 84)


def episodes(rng: np.random.Generator, n: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(obs, next_obs, terminated)`` for ``n`` steps, episode by episode (obs are strided views)."""
    pool = rng.integers(0, 256, (512, *FRAME), dtype=np.uint8)
    stamp = 0
    while n > 0:
        length = min(n, int(rng.integers(100, 1001)))
        frames = pool[rng.integers(0, len(pool), length + STACK)]  # a copy: stamped below
        # A unique stamp in every frame, so no two frames are equal by chance.
        frames.reshape(len(frames), -1)[:, :8] = np.arange(stamp, stamp + len(frames)).view(np.uint8).reshape(-1, 8)
        stamp += len(frames)
        s = frames.strides
        stacks = np.lib.stride_tricks.as_strided(frames, (length + 1, STACK, *FRAME), (s[0], *s), writeable=False)
        terminated = np.zeros(length, bool)
        terminated[-1] = True
        yield stacks[:-1], stacks[1:], terminated
        n -= length


def fill(buffer, n: int, seed: int) -> float:
    """Add ``n`` transitions, one episode per ``add`` call; returns the seconds it took."""
    start = time.perf_counter()
    for obs, next_obs, terminated in episodes(np.random.default_rng(seed), n):
        m = len(terminated)
        buffer.add(obs, np.zeros((m, 1), np.int64), np.ones(m, np.float32), next_obs, terminated, np.zeros(m, bool))
    return time.perf_counter() - start


def median_us(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1e3


def one_row_adds(buffer, seed: int) -> Iterator[None]:
    """``add`` of one row at a time, continuing a stream (what an agent does every env step)."""
    while True:
        for obs, next_obs, terminated in episodes(np.random.default_rng(seed), 5_000):
            for i in range(len(terminated)):
                buffer.add(obs[i : i + 1], np.zeros((1, 1), np.int64), np.ones(1, np.float32), next_obs[i : i + 1],
                           terminated[i : i + 1], np.zeros(1, bool))
                yield


def measure(name: str, buffer, n: int, repeats: int, batch: int) -> dict:
    fill_s = fill(buffer, n, seed=0)
    assert len(buffer) == n, (name, len(buffer), n)
    bytes_per = buffer.nbytes / len(buffer)
    sample_us = median_us(lambda: buffer.sample(batch), repeats)
    adder = one_row_adds(buffer, seed=1)
    add_us = median_us(lambda: next(adder), repeats)
    print(f"{name:>12}: {len(buffer):,} transitions, {buffer.nbytes / 1e9:.3f} GB, {bytes_per:,.0f} bytes/transition; "
          f"fill {fill_s:.1f} s; sample({batch}) median {sample_us:.0f} us; add(1 row) median {add_us:.0f} us")
    return {"bytes_per_transition": round(bytes_per, 1), "nbytes": buffer.nbytes, "sample_us": round(sample_us, 1),
            "add_one_row_us": round(add_us, 1), "fill_s": round(fill_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 transitions and fewer timings (under 20 s)")
    parser.add_argument("--transitions", type=int, default=None, help="transitions stored (default 100,000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per median (default 2,000)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    n = args.transitions or (10_000 if args.quick else 100_000)
    repeats = args.repeats or (300 if args.quick else 2_000)
    shape = (STACK, *FRAME)

    print(f"{n:,} transitions of {STACK}x{FRAME[0]}x{FRAME[1]} uint8; medians over {repeats:,} calls")
    frame = measure("frame_stack", FrameStackReplayBuffer(n, shape, np.uint8, seed=0), n, repeats, args.batch)
    uniform = measure("uniform", ReplayBuffer(n, shape, np.uint8, seed=0), n, repeats, args.batch)
    ratio = uniform["bytes_per_transition"] / frame["bytes_per_transition"]
    print(f"memory: {ratio:.1f}x smaller; 1M transitions: {frame['bytes_per_transition'] * 1e6 / 1e9:.2f} GB "
          f"against {uniform['bytes_per_transition'] * 1e6 / 1e9:.2f} GB; "
          f"sample time ratio (frame_stack / uniform): {frame['sample_us'] / uniform['sample_us']:.2f}")
    result = {"benchmark": "replay_memory", "quick": args.quick, "transitions": n, "batch": args.batch, "frame_stack": frame, "uniform": uniform,
              "memory_ratio": round(ratio, 2), "target_bytes": 7_500,
              "meets_target": frame["bytes_per_transition"] <= 7_500}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
