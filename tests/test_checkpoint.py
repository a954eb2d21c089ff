"""Checkpoints: exact round trips, atomic saves (SIGKILL mid-save), and loading that checks what it loads.

Every refused checkpoint must raise ``CheckpointError`` from inside ``sqn_agents`` with a message
that names what is wrong and where, never an exception from deep inside torch or safetensors.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_state import (
    assert_same_state,
    group_path,
    read_group,
    read_manifest,
    replace_file_rehashed,
    replace_group_rehashed,
    snapshot,
    write_manifest,
)

from sqn_agents import SQNAgent, SQNConfig
from sqn_agents.checkpoint import FORMAT_VERSION, MANIFEST, CheckpointError

torch.set_num_threads(1)

CONFIG = SQNConfig(hidden_sizes=(32,), batch_size=16, buffer_size=500, learning_starts=32, replay="uniform")


def trained_agent(config: SQNConfig = CONFIG, steps: int = 80, seed: int = 0) -> SQNAgent:
    """A CartPole agent with a non-empty replay, Adam moments, a tuned alpha and non-zero counters."""
    env = gym.make("CartPole-v1")
    agent = SQNAgent(env.observation_space, env.action_space, config, seed=seed, device="cpu")
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        agent.learn()
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    assert agent.gradient_steps > 0 and len(agent.replay) == steps
    return agent


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(agent, directory) of a trained agent saved with its replay; tests copy the directory before editing it."""
    agent = trained_agent()
    directory = tmp_path_factory.mktemp("ckpt") / "agent"
    agent.save(directory, include_replay=True)
    return agent, directory


@pytest.fixture
def ckpt(saved, tmp_path) -> Path:
    """A private, editable copy of the saved checkpoint."""
    copy = tmp_path / "copy"
    shutil.copytree(saved[1], copy)
    return copy


def load_error(path, match: str, **kwargs) -> CheckpointError:
    """Load must fail with a CheckpointError matching ``match``, raised by sqn_agents with no chained torch error."""
    with pytest.raises(CheckpointError, match=match) as info:
        SQNAgent.load(path, device="cpu", **kwargs)
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), "leaks an inner traceback"
    raised_in = str(info.traceback[-1].path)
    assert f"{os.sep}sqn_agents{os.sep}" in raised_in, f"raised from {raised_in}, not from sqn_agents"
    return err


# ---------------------------------------------------------------------- round trip
def test_round_trip_restores_everything(saved):
    agent, directory = saved
    loaded = SQNAgent.load(directory, device="cpu")
    assert_same_state(snapshot(agent), snapshot(loaded))
    assert loaded.config == agent.config and loaded.autoreset_mode == agent.autoreset_mode
    assert torch.equal(loaded.alpha, agent.alpha) and not torch.equal(agent.alpha, torch.tensor([0.1]))
    obs = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    # sampled actions too (same generator state), then state still identical
    fresh = SQNAgent.load(directory, device="cpu")
    np.testing.assert_array_equal(fresh.act(obs), loaded.act(obs))
    np.testing.assert_array_equal(fresh.act(obs), loaded.act(obs))
    assert_same_state(snapshot(fresh), snapshot(loaded))


def test_round_trip_without_replay_keeps_counters_and_networks(tmp_path):
    agent = trained_agent()
    agent.save(tmp_path / "a")
    assert not list(tmp_path.joinpath("a").glob("replay-*"))
    loaded = SQNAgent.load(tmp_path / "a", device="cpu")
    want, got = snapshot(agent), snapshot(loaded)
    assert got["replay_len"] == 0
    for key in ("q_nets", "target_nets", "log_alpha", "q_optimizer", "alpha_optimizer", "generator", "counters"):
        assert_same_state(want[key], got[key], key)


def test_saving_again_replaces_the_files_and_keeps_foreign_ones(tmp_path):
    agent = trained_agent(steps=40)
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "notes.safetensors").write_bytes(b"the user's own file")
    (directory / "metrics.csv").write_text("step,return\n")
    agent.save(directory, include_replay=True)
    first = read_manifest(directory)["files"]
    agent.save(directory)  # no replay this time: its old file must go
    files = {p.name for p in directory.iterdir()}
    assert files == {MANIFEST, "notes.safetensors", "metrics.csv", *(e["file"] for e in read_manifest(directory)["files"].values())}
    assert not files & {e["file"] for e in first.values()}
    assert (directory / "notes.safetensors").read_bytes() == b"the user's own file"
    SQNAgent.load(directory, device="cpu")


def test_the_manifest_path_itself_is_accepted(saved):
    agent, directory = saved
    assert_same_state(snapshot(agent), snapshot(SQNAgent.load(directory / MANIFEST, device="cpu")))


def test_loading_leaves_the_global_torch_rng_alone(saved):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    SQNAgent.load(saved[1], device="cpu")
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------- atomicity
def test_a_save_that_dies_before_its_commit_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    agent = trained_agent(steps=40)
    directory = tmp_path / "run"
    agent.save(directory, include_replay=True)
    before = snapshot(SQNAgent.load(directory, device="cpu"))

    agent.env_steps += 1000  # a later state that must not become visible
    with monkeypatch.context() as m:
        def die(*args, **kwargs):
            raise KeyboardInterrupt("killed just before os.replace")
        m.setattr(os, "replace", die)
        with pytest.raises(KeyboardInterrupt):
            agent.save(directory, include_replay=True)
    assert len(list(directory.glob("*.safetensors"))) == 6  # the new files exist, unreferenced
    assert list(directory.glob(f".{MANIFEST}.tmp-*"))
    assert_same_state(before, snapshot(SQNAgent.load(directory, device="cpu")))

    agent.save(directory, include_replay=True)  # the next save cleans up the leftovers
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [MANIFEST, *(e["file"] for e in read_manifest(directory)["files"].values())]
    )
    assert SQNAgent.load(directory, device="cpu").env_steps == agent.env_steps


_SAVER = textwrap.dedent(
    """
    import sys
    import gymnasium as gym, numpy as np, torch
    torch.set_num_threads(1)
    from sqn_agents import SQNAgent, SQNConfig

    path, i = sys.argv[1], int(sys.argv[2])
    space = gym.spaces.Box(-1, 1, (64,), np.float32)
    config = SQNConfig(hidden_sizes=(64,), batch_size=8, buffer_size=20_000, replay="uniform")
    agent = SQNAgent(space, gym.spaces.Discrete(4), config, seed=0, device="cpu")
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((20_000, 64)).astype(np.float32)
    agent.replay.add(obs, np.zeros((20_000, 1)), np.zeros(20_000), obs, np.zeros(20_000, bool), np.zeros(20_000, bool))
    while True:  # stamp save number i into every file of the checkpoint, save, repeat
        agent.updates = i                                  # manifest
        with torch.no_grad():
            agent.log_alpha.fill_(float(i))                # model file
        agent.generator.manual_seed(i)                     # state file
        agent.replay.rewards[0] = i                        # replay file (~10 MB)
        agent.save(path, include_replay=True)
        print(i, flush=True)
        i += 1
    """
)


def test_sigkill_at_random_moments_during_saves_never_breaks_the_checkpoint(tmp_path):
    directory, rng = tmp_path / "run", random.Random(20240501)
    expected_obs = np.random.default_rng(0).standard_normal((20_000, 64)).astype(np.float32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    next_i, interrupted = 0, 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(directory), str(next_i)], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            first = proc.stdout.readline()  # one complete save of this process
            assert first.strip() == str(next_i), f"the saver did not start: {first!r}"
            second = proc.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.15))  # a random moment within the next few saves (~30-60 ms each)
            proc.send_signal(signal.SIGKILL)
            rest = proc.communicate(timeout=30)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        last_done = int([first, second, *rest.split()][-1])

        manifest = read_manifest(directory)
        named = {e["file"] for e in manifest["files"].values()}
        interrupted += any(p.name not in named and p.name != MANIFEST for p in directory.iterdir())

        agent = SQNAgent.load(directory, device="cpu")
        i = agent.updates
        assert i >= last_done  # at least the last save that reported completion (maybe a later one)
        assert agent.log_alpha.item() == float(i)  # every file comes from the same save
        assert torch.equal(agent.generator.get_state(), torch.Generator().manual_seed(i).get_state())
        assert agent.replay.rewards[0] == i and len(agent.replay) == 20_000
        np.testing.assert_array_equal(agent.replay.obs, expected_obs)
        next_i = i + 1
    # The kills must have hit saves in progress, not only the gaps between them
    # (files written but not yet committed, or old files not yet deleted).
    assert interrupted >= 1


# ---------------------------------------------------------------------- refusing bad checkpoints
def test_wrong_format_version_is_refused(ckpt):
    manifest = read_manifest(ckpt)
    manifest["format_version"] = FORMAT_VERSION + 1
    write_manifest(ckpt, manifest)
    err = load_error(ckpt, "format_version")
    assert str(ckpt / MANIFEST) in str(err) and f"{FORMAT_VERSION + 1}" in str(err)


class _CreatesMarker:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["pickle", "pickle-protocol-0", "torch.save"])
def test_a_pickle_offered_as_a_checkpoint_is_refused_without_unpickling(tmp_path, writer):
    marker = tmp_path / "marker"
    payload = _CreatesMarker(marker)
    pickle.loads(pickle.dumps(payload))  # the payload works: unpickling it does create the file
    assert marker.exists()
    marker.unlink()

    path = tmp_path / "agent.pt"
    if writer == "torch.save":
        torch.save({"agent": payload}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=0 if writer == "pickle-protocol-0" else pickle.HIGHEST_PROTOCOL)
    err = load_error(path, "is a (single )?file")
    assert str(path) in str(err) and "directory written by SQNAgent.save()" in str(err)
    if writer != "pickle-protocol-0":
        assert "never unpickles" in str(err)
    assert not marker.exists()


def test_a_pickle_disguised_as_a_tensor_file_with_valid_hashes_is_refused(ckpt, tmp_path):
    marker = tmp_path / "marker"
    replace_file_rehashed(ckpt, "model", pickle.dumps(_CreatesMarker(marker)))
    err = load_error(ckpt, "not a readable safetensors file")
    assert str(group_path(ckpt, "model")) in str(err)
    assert not marker.exists()


def test_missing_path_and_missing_manifest(tmp_path):
    load_error(tmp_path / "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    err = load_error(tmp_path / "empty", f"{MANIFEST} is missing")
    assert str(tmp_path / "empty") in str(err)


@pytest.mark.parametrize("group", ["model", "state", "replay"])
def test_missing_tensor_file(ckpt, group):
    path = group_path(ckpt, group)
    path.unlink()
    err = load_error(ckpt, "is missing")
    assert str(path) in str(err)


@pytest.mark.parametrize("group", ["model", "state", "replay"])
def test_truncated_tensor_file(ckpt, group):
    path = group_path(ckpt, group)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = load_error(ckpt, "truncated or corrupt")
    assert str(path) in str(err) and f"{len(data) // 2} bytes, manifest says {len(data)}" in str(err)


@pytest.mark.parametrize("group", ["model", "state", "replay"])
def test_flipped_byte_in_tensor_file(ckpt, group):
    path = group_path(ckpt, group)
    data = bytearray(path.read_bytes())
    data[len(data) - 3] ^= 0x01  # deep in the tensor data: parses fine, only the hash can tell
    path.write_bytes(bytes(data))
    err = load_error(ckpt, "SHA-256 does not match")
    assert str(path) in str(err)


def test_truncated_or_edited_manifest(ckpt):
    text = (ckpt / MANIFEST).read_text()
    (ckpt / MANIFEST).write_text(text[: len(text) // 2])
    load_error(ckpt, "not valid JSON")
    (ckpt / MANIFEST).write_text(text.replace('"updates": ', '"updates": 1', 1))  # a plausible edit
    err = load_error(ckpt, "manifest_sha256")
    assert str(ckpt / MANIFEST) in str(err)


def test_a_manifest_naming_files_outside_the_checkpoint_is_refused(ckpt):
    manifest = read_manifest(ckpt)
    manifest["files"]["model"]["file"] = "../../etc/passwd"
    write_manifest(ckpt, manifest)
    load_error(ckpt, r"'\.\./\.\./etc/passwd' of 'model' is not a checkpoint file name")


def test_tensors_of_another_network_size_are_refused_even_with_valid_hashes(ckpt, tmp_path):
    other = SQNAgent(gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2),
                     SQNConfig(hidden_sizes=(64,), replay="uniform"), seed=0, device="cpu")
    other.save(tmp_path / "other")
    replace_file_rehashed(ckpt, "model", group_path(tmp_path / "other", "model").read_bytes())
    err = load_error(ckpt, "has shape")
    assert "(q_nets) tensor '0.body.net.1.weight' has shape (64, 4), the network expects (32, 4)" in str(err)
    assert str(ckpt) in str(err)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.update({"q_nets.0.extra": torch.zeros(2)}), r"\(q_nets\) has unexpected tensors \['0.extra'\]"),
        (lambda t: t.pop("target_nets.1.body.net.3.bias"), r"\(target_nets\) lacks tensors \['1.body.net.3.bias'\]"),
        (lambda t: t.update({"q_nets.0.body.net.1.weight": t["q_nets.0.body.net.1.weight"].double()}),
         "tensor '0.body.net.1.weight' has dtype torch.float64, expected torch.float32"),
        (lambda t: t["q_nets.1.body.net.3.bias"].fill_(float("nan")), "tensor '1.body.net.3.bias' contains NaN or infinity"),
        (lambda t: t.pop("log_alpha"), "the model file lacks tensor 'log_alpha'"),
        (lambda t: t.update({"log_alpha": torch.zeros(3)}), r"'log_alpha' has shape \(3,\), the network expects \(1,\)"),
    ],
    ids=["extra", "missing", "dtype", "nan", "no-alpha", "alpha-shape"],
)
def test_forged_model_tensors_are_refused(ckpt, edit, match):
    tensors = read_group(ckpt, "model")
    edit(tensors)
    replace_group_rehashed(ckpt, "model", tensors)
    assert str(ckpt) in str(load_error(ckpt, match))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.update({"q_optimizer.0.exp_avg": torch.zeros(3)}),
         r"optimizer tensor 'q_optimizer.0.exp_avg' has shape \(3,\), expected \(32, 4\)"),
        (lambda t: t.pop("q_optimizer.2.exp_avg_sq"), r"q_optimizer parameter 2 has \['exp_avg', 'step'\]"),
        (lambda t: t["q_optimizer.0.exp_avg_sq"].fill_(-1.0), "'q_optimizer.0.exp_avg_sq' holds negative values"),
        (lambda t: t.update({"q_optimizer.99.step": torch.tensor(1.0)}), "unexpected optimizer tensor 'q_optimizer.99.step'"),
        (lambda t: t.pop("torch_generator"), "the state file lacks tensor 'torch_generator'"),
        (lambda t: t.update({"torch_generator": torch.zeros(3, dtype=torch.uint8)}), "inconsistent RNG or replay state"),
    ],
    ids=["moment-shape", "moment-missing", "negative-v", "unknown-param", "no-generator", "bad-generator"],
)
def test_forged_optimizer_and_rng_state_is_refused(ckpt, edit, match):
    tensors = read_group(ckpt, "state")
    edit(tensors)
    replace_group_rehashed(ckpt, "state", tensors)
    load_error(ckpt, match)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.update({"obs": torch.zeros(80, 5)}),
         r"replay array 'obs' has shape \(80, 5\) and dtype float32, expected shape \(n, 4\)"),
        (lambda t: t.update({"actions": t["actions"].float()}), "replay array 'actions' .* expected .* of dtype int64"),
        (lambda t: t.update({"pos": torch.tensor(10_000)}), "replay position 10000 is outside the buffer of capacity 500"),
        (lambda t: t["actions"].__setitem__(0, 7), "replay holds action indices outside the action space Discrete"),
        (lambda t: t["next_obs"].__setitem__((3, 1), float("inf")), "replay array 'next_obs' contains NaN or infinity"),
        (lambda t: t["terminated"].__setitem__(2, 0.5), "replay array 'terminated' holds values other than 0 and 1"),
        (lambda t: t.update({"rewards": t["rewards"][:10]}), "replay arrays are inconsistent"),
        (lambda t: t.pop("truncated"), r"lacks replay arrays \['truncated'\]"),
    ],
    ids=["obs-shape", "actions-dtype", "pos", "action-range", "inf", "terminated", "lengths", "missing"],
)
def test_forged_replay_is_refused(ckpt, edit, match):
    tensors = read_group(ckpt, "replay")
    edit(tensors)
    replace_group_rehashed(ckpt, "replay", tensors)
    load_error(ckpt, match)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(format="something-else"), "is not an sqn-agents checkpoint manifest"),
        (lambda m: m.update(format_version=True), "format_version True"),
        (lambda m: m.update(files=[]), "no valid 'files' table"),
        (lambda m: m["files"].update(model="model.safetensors"), "the entry for 'model' in 'files' is malformed"),
        (lambda m: m["files"].pop("state"), "lacks its model or state file entry"),
        (lambda m: m["config"].update(gamma=5), r"invalid config .*gamma must be in \[0.0, 1.0\), got 5"),
        (lambda m: m["config"].update(hidden_size=[3]), r"unknown SQNConfig field\(s\) \['hidden_size'\]"),
        (lambda m: m["config"].update(hidden_sizes=[64]), r"tensor '0.body.net.1.weight' has shape \(32, 4\), the network expects \(64, 4\)"),
        (lambda m: m["observation_space"].update(shape=[5]), "invalid config or space description"),
        (lambda m: m.update(action_space={"type": "Box"}), "invalid config or space description"),
        (lambda m: m["action_space"].update(n=3), r"tensor '0.body.net.3.weight' has shape \(2, 32\), the network expects \(3, 32\)"),
        (lambda m: m["counters"].update(env_steps=-1), "counter 'env_steps' is -1, expected an integer >= 0"),
        (lambda m: m["counters"].update(updates="7"), "counter 'updates' is '7'"),
        (lambda m: m.update(prev_done=[1, 0]), "'prev_done' is"),
        (lambda m: m.update(autoreset_mode="sometimes"), "cannot be built: autoreset_mode must be one of"),
        (lambda m: m.update(replay_rng={"bit_generator": "MT19937"}), "inconsistent RNG or replay state"),
        (lambda m: m["optimizer_param_groups"]["q_optimizer"][0].update(lr="fast"), "q_optimizer setting 'lr' is 'fast'"),
        (lambda m: m["optimizer_param_groups"]["q_optimizer"][0].update(betas=[0.9]), "q_optimizer setting 'betas'"),
        (lambda m: m["optimizer_param_groups"].update(alpha_optimizer=[]), "alpha_optimizer has parameter groups"),
        (lambda m: m["optimizer_param_groups"]["q_optimizer"][0].update(params=[0, 1]), "does not match the network's parameters"),
        (lambda m: m.pop("optimizer_param_groups"), "lacks 'optimizer_param_groups'"),
    ],
    ids=["format", "version-bool", "files-list", "files-entry", "no-state", "gamma", "unknown-field", "hidden",
         "obs-shape", "action-desc", "action-n", "counter-negative", "counter-str", "prev-done", "autoreset",
         "replay-rng", "lr", "betas", "groups", "params", "no-groups"],
)
def test_forged_manifest_fields_are_refused(ckpt, edit, match):
    manifest = read_manifest(ckpt)
    edit(manifest)
    write_manifest(ckpt, manifest)
    load_error(ckpt, match)


def test_a_manifest_from_a_newer_torch_with_unknown_optimizer_settings_loads(ckpt, saved):
    manifest = read_manifest(ckpt)
    manifest["optimizer_param_groups"]["q_optimizer"][0]["some_future_flag"] = True
    del manifest["optimizer_param_groups"]["alpha_optimizer"][0]["decoupled_weight_decay"]
    write_manifest(ckpt, manifest)
    assert_same_state(snapshot(saved[0]), snapshot(SQNAgent.load(ckpt, device="cpu")))


# ---------------------------------------------------------------------- spaces and networks
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"observation_space": gym.spaces.Box(-1, 1, (5,), np.float32)}, r"observation space .*'shape': \[4\].*'shape': \[5\]"),
        ({"observation_space": gym.spaces.Box(-1, 1, (4,), np.float64)}, "observation space .*float32.*float64"),
        ({"observation_space": gym.spaces.Dict({})}, "observation space .* but the env has .*Dict"),  # describable now
        ({"action_space": gym.spaces.Discrete(3)}, r"action space .*'n': 2.*'n': 3"),
        ({"action_space": gym.spaces.Discrete(2, start=1)}, r"action space .*'start': 0.*'start': 1"),
        ({"action_space": gym.spaces.MultiDiscrete([2])}, "action space .*Discrete.*MultiDiscrete"),
    ],
    ids=["obs-shape", "obs-dtype", "obs-dict", "n", "start", "multidiscrete"],
)
def test_space_mismatch_is_refused(saved, kwargs, match):
    err = load_error(saved[1], match, **kwargs)
    assert str(saved[1]) in str(err)


def test_matching_spaces_are_accepted(saved):
    env = gym.make("CartPole-v1")
    SQNAgent.load(saved[1], device="cpu", observation_space=env.observation_space, action_space=env.action_space)


class _Torso(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, width: int = 8):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(n_in, width), torch.nn.Tanh(), torch.nn.Linear(width, n_out))

    def forward(self, x):
        return self.layers(x)


def test_custom_network_factory_is_required_and_checked(tmp_path):
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    agent = SQNAgent(space, gym.spaces.Discrete(2), CONFIG, seed=0, device="cpu",
                     network_factory=lambda s, n: _Torso(s.shape[0], n))
    agent.save(tmp_path / "custom")
    err = load_error(tmp_path / "custom", "custom network_factory")
    assert "pass the same factory to load()" in str(err) and str(tmp_path / "custom") in str(err)
    load_error(tmp_path / "custom", r"tensor '0.body.layers.0.weight' has shape \(8, 3\), the network expects \(16, 3\)",
               network_factory=lambda s, n: _Torso(s.shape[0], n, width=16))
    loaded = SQNAgent.load(tmp_path / "custom", device="cpu", network_factory=lambda s, n: _Torso(s.shape[0], n))
    assert_same_state(snapshot(agent), snapshot(loaded))


def test_a_generator_state_from_another_device_reseeds_with_a_warning(ckpt, saved):
    """Simulates a checkpoint written on CUDA and loaded on a CPU-only machine (a CUDA generator's state is
    16 bytes, a CPU generator's 5056): everything else loads exactly; sampling is reseeded, with a warning."""
    tensors = read_group(ckpt, "state")
    tensors["torch_generator"] = torch.arange(16, dtype=torch.uint8)
    replace_group_rehashed(ckpt, "state", tensors)
    manifest = read_manifest(ckpt)
    manifest["generator_device"] = "cuda"
    write_manifest(ckpt, manifest)
    with pytest.warns(RuntimeWarning, match="saved with a cuda action-sampling generator and is loaded on cpu"):
        loaded = SQNAgent.load(ckpt, device="cpu")
    want, got = snapshot(saved[0]), snapshot(loaded)
    assert not torch.equal(want.pop("generator"), got.pop("generator"))
    assert_same_state(want, got)
    with pytest.warns(RuntimeWarning):
        again = SQNAgent.load(ckpt, device="cpu")
    assert torch.equal(again.generator.get_state(), loaded.generator.get_state())  # reseeded deterministically


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_checkpoint_loads_on_the_cpu_with_a_warning(tmp_path):
    env = gym.make("CartPole-v1")
    agent = SQNAgent(env.observation_space, env.action_space, CONFIG, seed=0, device="cuda")
    agent.save(tmp_path / "gpu")
    with pytest.warns(RuntimeWarning, match="cannot move across devices"):
        loaded = SQNAgent.load(tmp_path / "gpu", device="cpu")
    obs = np.zeros((8, 4), np.float32)
    np.testing.assert_array_equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    back = SQNAgent.load(tmp_path / "gpu", device="cuda")
    assert torch.equal(back.generator.get_state(), agent.generator.get_state())


# ---------------------------------------------------------------------- checkpoints of earlier code
V1_DATA = Path(__file__).parent / "data" / "checkpoint_v1_cartpole"


def _v1_maker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_checkpoint_v1", V1_DATA.parent / "make_checkpoint_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_format_1_checkpoint_of_the_code_before_the_split_loads_and_continues_the_same_run(tmp_path):
    """tests/data holds a checkpoint written by the pre-split code (commit dd2f291), and the same agent
    after 24 more steps: today's code must load the first and, fed the same steps, take the same actions
    and reach the second, to float rounding: today's fused Adam kernel rounds differently from the
    for-loop Adam that wrote the data (by ~3e-8 after 20 steps)."""
    shutil.copytree(V1_DATA, tmp_path / "v1")  # a load never writes, but the fixture stays untouched anyway
    agent = SQNAgent.load(tmp_path / "v1" / "before", device="cpu")
    assert (agent.env_steps, agent.updates, agent.gradient_steps, agent.skipped_updates) == (103, 88, 88, 0)
    assert agent.intake.prev_done.tolist() == [False, True] and len(agent.replay) == 64
    # the pre-split code had no n_step (one-step returns) and no Munchausen term; today's defaults are 3 and 0.9,
    # and the old config keeps 1 and 0
    assert agent.config == dataclasses.replace(_v1_maker().CONFIG, n_step=1, munchausen_scale=0.0)
    actions = _v1_maker().continue_run(agent)
    np.testing.assert_array_equal(actions, np.load(V1_DATA / "after_actions.npy"))
    want, got = snapshot(SQNAgent.load(tmp_path / "v1" / "after", device="cpu")), snapshot(agent)
    for name in agent.replay.optional_state:  # n-step link bookkeeping, newer than format-1's first states:
        want["replay"].pop(name), got["replay"].pop(name)  # rebuilt on load, not comparable to a live buffer's
    for name in ("augment_generator", "augment_generator_device"):  # newer too, and unused without augmentation:
        want.pop(name), got.pop(name)  # an old checkpoint leaves the loaded agent's own (unseeded) generator
    assert_same_state(want, got, rtol=1e-4)
    # and today's save of it loads back as the same agent
    agent.save(tmp_path / "again", include_replay=True)
    assert_same_state(snapshot(agent), snapshot(SQNAgent.load(tmp_path / "again", device="cpu")))
