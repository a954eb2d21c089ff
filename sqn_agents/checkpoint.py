"""Checkpoints without pickle: tensors in safetensors files, everything else in one JSON manifest.

A checkpoint is a directory::

    agent/
      checkpoint.json                  # format version, config, spaces, counters, RNG, file hashes
      model-<token>.safetensors        # online and target networks, log(alpha), Box bounds
      state-<token>.safetensors        # optimizer moments, torch RNG state
      replay-<token>.safetensors       # optional: the replay buffer, for exact resume

Why this layout: loading reads JSON and safetensors only, so a checkpoint from an untrusted
source cannot run code (``torch.load`` unpickles unless ``weights_only=True``, and even
then the rest of the agent's state would need pickle). Saves are atomic: the tensor files
of a new save get fresh names and are fsynced first (and the directory with them), then
``checkpoint.json`` is replaced by ``os.replace`` (atomic on POSIX), which is the commit
point; only then are the previous save's files deleted (only files with this module's
``<group>-<12 hex>.safetensors`` names: other files in the directory are never touched).
A crash or SIGKILL at any moment leaves a manifest that names complete files. Each file's
SHA-256 is in the manifest, and the manifest carries the SHA-256 of its own content, so
truncated or altered files are refused with a message instead of a stack trace from deep
inside a parser. Loading then checks every name, shape, dtype and value range it reads
against the agent it builds. See docs/checkpoints.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.torch
import torch

from sqn_agents.config import SQNConfig
from sqn_agents.spaces import describe_space, space_from_description

if TYPE_CHECKING:
    from sqn_agents.agent import SQNAgent

FORMAT = "sqn-agents-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
# Names of the tensor files this module writes; only such files are ever deleted from a directory.
_OWN_FILE = re.compile(r"[a-z_]+-[0-9a-f]{12}\.safetensors")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, of another version or for other spaces."""


# ---------------------------------------------------------------------- files
def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's content (canonical JSON, without the digest field itself)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def write_checkpoint(directory: str | Path, manifest: dict[str, Any], groups: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write tensor groups and a manifest into ``directory`` atomically (see the module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    files = {}
    for group, tensors in groups.items():
        data = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
        name = f"{group}-{token}.safetensors"
        _write_durably(directory / name, data)
        files[group] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
    full["manifest_sha256"] = _manifest_digest(full)
    tmp = directory / f".{MANIFEST}.tmp-{token}"
    _write_durably(tmp, json.dumps(full, indent=2, allow_nan=False).encode())
    _fsync_dir(directory)  # the new files' directory entries are durable before the manifest names them
    os.replace(tmp, directory / MANIFEST)  # the commit point
    _fsync_dir(directory)
    keep = {f["file"] for f in files.values()}
    for old in directory.iterdir():  # files of earlier saves, and leftovers of interrupted ones; never other files
        if old.name not in keep and (_OWN_FILE.fullmatch(old.name) or old.name.startswith(f".{MANIFEST}.tmp-")):
            old.unlink(missing_ok=True)
    return directory


def _refuse_single_file(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(4)  # never more: the file is not parsed, let alone unpickled
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise CheckpointError(
            f"{path} is a single file that looks like a pickle or torch.save archive; sqn-agents never "
            "unpickles (it could run arbitrary code). A checkpoint is a directory written by SQNAgent.save()."
        )
    raise CheckpointError(f"{path} is a file; an sqn-agents checkpoint is a directory written by SQNAgent.save()")


def read_checkpoint(directory: str | Path, skip: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read and verify a checkpoint: its manifest and every tensor group (except those in ``skip``)."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"no checkpoint at {directory}: the path does not exist")
    if directory.is_file() and directory.name == MANIFEST:
        directory = directory.parent  # the manifest itself was given: its directory is the checkpoint
    if directory.is_file():
        _refuse_single_file(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"no checkpoint at {directory}: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{manifest_path} is not valid JSON ({e}); the file is corrupt") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not an sqn-agents checkpoint manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{manifest_path} has format_version {version!r}; "
            f"this version of sqn-agents reads format_version {FORMAT_VERSION}"
        )
    try:
        digest_ok = manifest.get("manifest_sha256") == _manifest_digest(manifest)
    except ValueError:  # NaN or infinity in the JSON: never written by save()
        digest_ok = False
    if not digest_ok:
        raise CheckpointError(
            f"{manifest_path} is corrupt or was edited: its content does not match its manifest_sha256"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"{manifest_path} has no valid 'files' table; the manifest is corrupt")
    groups = {}
    for group, entry in files.items():
        if group in skip:
            continue
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("file"), str)
            and isinstance(entry.get("sha256"), str)
            and type(entry.get("bytes")) is int
        ):
            raise CheckpointError(f"{manifest_path}: the entry for '{group}' in 'files' is malformed: {entry!r}")
        if not _OWN_FILE.fullmatch(entry["file"]):  # a plain name in this directory, no path
            raise CheckpointError(
                f"{manifest_path}: the file '{entry['file']}' of '{group}' is not a checkpoint file name; "
                "a checkpoint only names files inside its own directory"
            )
        path = directory / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the checkpoint at {directory} is incomplete")
        data = path.read_bytes()
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(
                f"{path} is truncated or corrupt: {len(data)} bytes, manifest says {entry['bytes']}, "
                "and its SHA-256 does not match"
            )
        try:
            groups[group] = safetensors.torch.load(data)
        except Exception as e:  # the hash matched, so this is a file written by something else
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    return manifest, groups


# ---------------------------------------------------------------------- the agent
def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}.{pid}.{key}": torch.as_tensor(value)
        for pid, entries in state["state"].items()
        for key, value in entries.items()
    }
    return tensors, state["param_groups"]


def _same_kind(reference: Any, value: Any) -> bool:
    """Whether a JSON value can stand where a fresh optimizer has ``reference``."""
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if reference is None:
        return value is None or isinstance(value, bool)
    if isinstance(reference, (list, tuple)):
        return isinstance(value, list) and len(value) == len(reference) and all(map(_same_kind, reference, value))
    if isinstance(reference, str):
        return isinstance(value, str)
    return value == reference


def _load_optimizer(
    optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], saved_groups: Any, where: str
) -> None:
    """Load an optimizer's state after checking it against the optimizer (never torch's own errors)."""
    fresh_groups = optimizer.state_dict()["param_groups"]
    if not isinstance(saved_groups, list) or len(saved_groups) != len(fresh_groups):
        raise CheckpointError(f"{where}: {prefix} has parameter groups {saved_groups!r:.200}, expected {len(fresh_groups)}")
    groups = []
    for fresh, saved in zip(fresh_groups, saved_groups, strict=True):
        if not isinstance(saved, dict) or saved.get("params") != fresh["params"]:
            raise CheckpointError(f"{where}: {prefix} parameter group {saved!r:.200} does not match the network's parameters")
        group = dict(fresh)
        for key, value in saved.items():
            if key == "params" or key not in fresh:  # a setting this version of torch does not have
                continue
            if not _same_kind(fresh[key], value):
                raise CheckpointError(f"{where}: {prefix} setting '{key}' is {value!r}, expected a value like {fresh[key]!r}")
            group[key] = tuple(value) if isinstance(fresh[key], tuple) else value
        groups.append(group)

    params = [p for g in optimizer.param_groups for p in g["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        pid, _, key = name[len(prefix) + 1 :].partition(".")
        if not pid.isdigit() or int(pid) >= len(params) or not key:
            raise CheckpointError(f"{where}: unexpected optimizer tensor '{name}'")
        param = params[int(pid)]
        expected = () if key == "step" else tuple(param.shape)
        if tuple(value.shape) != expected:
            raise CheckpointError(
                f"{where}: optimizer tensor '{name}' has shape {tuple(value.shape)}, expected {expected}; "
                "was it saved with a different network or config?"
            )
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise CheckpointError(f"{where}: optimizer tensor '{name}' is not a finite floating-point tensor")
        if key in ("step", "exp_avg_sq", "max_exp_avg_sq") and (value < 0).any():  # sqrt(v) of Adam: NaN
            raise CheckpointError(f"{where}: optimizer tensor '{name}' holds negative values")
        state.setdefault(int(pid), {})[key] = value
    if isinstance(optimizer, torch.optim.Adam):
        required = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if groups[0].get("amsgrad") else set())
        for pid, entries in state.items():
            if set(entries) != required:
                raise CheckpointError(
                    f"{where}: optimizer state of {prefix} parameter {pid} has {sorted(entries)}, expected {sorted(required)}"
                )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_agent(agent: SQNAgent, path: str | Path, include_replay: bool = False) -> Path:
    """Pack an agent into tensor groups and a manifest, and write them atomically."""
    model = {f"q_nets.{k}": v for k, v in agent.q_nets.state_dict().items()}
    model.update({f"target_nets.{k}": v for k, v in agent.target_nets.state_dict().items()})
    model["log_alpha"] = agent.log_alpha
    model["observation_space.low"] = torch.from_numpy(np.asarray(agent.observation_space.low))
    model["observation_space.high"] = torch.from_numpy(np.asarray(agent.observation_space.high))
    q_opt, q_groups = _optimizer_tensors("q_optimizer", agent.q_optimizer)
    a_opt, a_groups = _optimizer_tensors("alpha_optimizer", agent.alpha_optimizer)
    state = {**q_opt, **a_opt, "torch_generator": agent.generator.get_state()}
    groups = {"model": model, "state": state}
    if include_replay:
        # reshape: np.ascontiguousarray turns 0-d arrays (the ring position) into shape (1,)
        groups["replay"] = {
            k: torch.from_numpy(np.ascontiguousarray(v).reshape(np.shape(v))) for k, v in agent.replay.state_dict().items()
        }
    manifest = {
        "config": agent.config.to_dict(),
        "observation_space": describe_space(agent.observation_space),
        "action_space": describe_space(agent.action_space),
        "network": "builtin" if agent.network_factory is None else "custom",
        "autoreset_mode": agent.autoreset_mode,
        "counters": {
            "env_steps": agent.env_steps,
            "updates": agent.updates,
            "gradient_steps": agent.gradient_steps,
            "skipped_updates": agent.skipped_updates,
        },
        "prev_done": None if agent._prev_done is None else agent._prev_done.tolist(),
        "replay_rng": agent.replay.rng.bit_generator.state,
        "generator_device": agent.generator.device.type,
        "optimizer_param_groups": {"q_optimizer": q_groups, "alpha_optimizer": a_groups},
        "torch_version": torch.__version__,
    }
    return write_checkpoint(path, manifest, groups)


def _check_tensors(where: str, expected_state: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Names, shapes, dtypes and finiteness of saved tensors against the ones a module expects."""
    missing = sorted(set(expected_state) - set(saved))
    if missing:
        raise CheckpointError(f"{where} lacks tensors {missing[:5]}; was it saved with a different network?")
    unexpected = sorted(set(saved) - set(expected_state))
    if unexpected:
        raise CheckpointError(f"{where} has unexpected tensors {unexpected[:5]}; was it saved with a different network?")
    for name, expected in expected_state.items():
        if saved[name].shape != expected.shape:
            raise CheckpointError(
                f"{where} tensor '{name}' has shape {tuple(saved[name].shape)}, the network expects "
                f"{tuple(expected.shape)}; was it saved with a different network or config?"
            )
        if saved[name].dtype != expected.dtype:
            raise CheckpointError(f"{where} tensor '{name}' has dtype {saved[name].dtype}, expected {expected.dtype}")
        if saved[name].is_floating_point() and not torch.isfinite(saved[name]).all():
            raise CheckpointError(f"{where} tensor '{name}' contains NaN or infinity")


def _check_replay(where: str, agent: SQNAgent, saved: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Replay arrays checked against the agent's (empty) buffer: names, dtypes, item shapes, index ranges."""
    from sqn_agents.replay import ReplayBuffer

    arrays = {k: v.numpy() for k, v in saved.items()}
    reference = {k: np.asarray(v) for k, v in agent.replay.state_dict().items()}
    missing = sorted(set(reference) - set(arrays))
    if missing:
        raise CheckpointError(f"{where} lacks replay arrays {missing}")
    for name, ref in reference.items():
        arr = arrays[name]
        if arr.dtype != ref.dtype or arr.ndim != ref.ndim or arr.shape[1:] != ref.shape[1:]:
            shape = "a scalar" if ref.ndim == 0 else f"shape (n, {', '.join(map(str, ref.shape[1:]))})"
            raise CheckpointError(
                f"{where} replay array '{name}' has shape {arr.shape} and dtype {arr.dtype}, "
                f"expected {shape} of dtype {ref.dtype}"
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise CheckpointError(f"{where} replay array '{name}' contains NaN or infinity")
        if name in ("terminated", "truncated") and not ((arr == 0) | (arr == 1)).all():
            raise CheckpointError(f"{where} replay array '{name}' holds values other than 0 and 1")
    actions = arrays.get("actions")
    if actions is not None and actions.ndim == 2 and actions.size and (
        (actions < 0).any() or (actions >= agent.codec.sizes).any()
    ):
        raise CheckpointError(f"{where} replay holds action indices outside the action space {agent.action_space}")
    if type(agent.replay) is ReplayBuffer:  # other buffers check their own layout in load_state_dict
        capacity = agent.replay.capacity
        if not 0 <= int(arrays["pos"]) < capacity:
            raise CheckpointError(f"{where} replay position {int(arrays['pos'])} is outside the buffer of capacity {capacity}")
        lengths = {name: len(arrays[name]) for name in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")}
        n = lengths["rewards"]
        if len(set(lengths.values())) != 1 or n > capacity or (n < capacity and int(arrays["pos"]) != n):
            raise CheckpointError(
                f"{where} replay arrays are inconsistent: lengths {lengths}, position {int(arrays['pos'])}, capacity {capacity}"
            )
    return arrays


def _counter(counters: Any, name: str, where: str) -> int:
    value = counters.get(name) if isinstance(counters, dict) else None
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{where}: counter '{name}' is {value!r}, expected an integer >= 0")
    return value


def load_agent(
    path: str | Path,
    device: str | torch.device = "auto",
    network_factory: Any = None,
    observation_space: Any = None,
    action_space: Any = None,
) -> SQNAgent:
    """Rebuild an agent from a checkpoint directory, checking everything it reads.

    Every problem is a ``CheckpointError`` that names the file or field.
    """
    from sqn_agents.agent import SQNAgent

    manifest, groups = read_checkpoint(path)
    where = str(path)
    model, state = groups.get("model"), groups.get("state")
    if model is None or state is None:
        raise CheckpointError(f"checkpoint at {path} lacks its model or state file entry")
    for name in ("observation_space.low", "observation_space.high", "log_alpha"):
        if name not in model:
            raise CheckpointError(f"checkpoint at {path}: the model file lacks tensor '{name}'")
    try:
        config = SQNConfig.from_dict(manifest["config"])
        obs_space = space_from_description(
            manifest["observation_space"], model["observation_space.low"].numpy(), model["observation_space.high"].numpy()
        )
        act_space = space_from_description(manifest["action_space"])
    except (KeyError, ValueError, TypeError, AttributeError, AssertionError) as e:
        raise CheckpointError(f"checkpoint at {path} has an invalid config or space description: {e!r}") from None
    for given, saved, name in ((observation_space, obs_space, "observation"), (action_space, act_space, "action")):
        if given is None:
            continue
        try:
            given_desc = describe_space(given)
        except ValueError:
            given_desc = repr(given)
        if given_desc != describe_space(saved):
            raise CheckpointError(
                f"checkpoint at {path} was made for {name} space {describe_space(saved)}, but the env has {given_desc}"
            )
    if manifest.get("network") == "custom" and network_factory is None:
        raise CheckpointError(
            f"checkpoint at {path} was saved from an agent with a custom network_factory; pass the same factory to load()"
        )

    try:
        agent = SQNAgent(obs_space, act_space, config, device=device, network_factory=network_factory,
                         autoreset_mode=manifest.get("autoreset_mode", "next_step"))
    except ValueError as e:
        raise CheckpointError(f"checkpoint at {path} describes an agent that cannot be built: {e}") from None
    for prefix, module in (("q_nets", agent.q_nets), ("target_nets", agent.target_nets)):
        saved = {k[len(prefix) + 1 :]: v for k, v in model.items() if k.startswith(prefix + ".")}
        _check_tensors(f"{path} ({prefix})", module.state_dict(), saved)
        module.load_state_dict(saved)
    _check_tensors(f"{path} (temperature)", {"log_alpha": agent.log_alpha.detach()}, {"log_alpha": model["log_alpha"]})
    with torch.no_grad():
        agent.log_alpha.copy_(model["log_alpha"])

    param_groups = manifest.get("optimizer_param_groups")
    if not isinstance(param_groups, dict):
        raise CheckpointError(f"checkpoint at {path} lacks 'optimizer_param_groups'")
    _load_optimizer(agent.q_optimizer, "q_optimizer", state, param_groups.get("q_optimizer"), where)
    _load_optimizer(agent.alpha_optimizer, "alpha_optimizer", state, param_groups.get("alpha_optimizer"), where)

    counters = manifest.get("counters")
    values = {name: _counter(counters, name, where) for name in ("env_steps", "updates", "gradient_steps", "skipped_updates")}
    prev_done = manifest.get("prev_done")
    if prev_done is not None and not (isinstance(prev_done, list) and all(isinstance(x, bool) for x in prev_done)):
        raise CheckpointError(f"{where}: 'prev_done' is {prev_done!r:.200}, expected a list of bools or null")
    replay = _check_replay(where, agent, groups["replay"]) if "replay" in groups else None
    generator_state = state.get("torch_generator")
    if generator_state is None:
        raise CheckpointError(f"checkpoint at {path}: the state file lacks tensor 'torch_generator'")

    try:
        if manifest.get("generator_device", agent.generator.device.type) == agent.generator.device.type:
            agent.generator.set_state(generator_state)
        else:  # a CPU and a CUDA generator have different states: sampling continues, but not bit-exactly
            seed = int.from_bytes(hashlib.sha256(generator_state.numpy().tobytes()).digest()[:8], "little")
            agent.generator.manual_seed(seed)
            warnings.warn(
                f"{path} was saved with a {manifest['generator_device']} action-sampling generator and is loaded on "
                f"{agent.generator.device.type}; its state cannot move across devices, so it was reseeded from it "
                "(actions after the resume are not bit-identical to an uninterrupted run)",
                RuntimeWarning,
                stacklevel=3,
            )
        agent.replay.rng.bit_generator.state = manifest["replay_rng"]
        if replay is not None:
            agent.replay.load_state_dict(replay)
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint at {path} has an inconsistent RNG or replay state: {e!r}") from None
    agent.env_steps, agent.updates = values["env_steps"], values["updates"]
    agent.gradient_steps, agent.skipped_updates = values["gradient_steps"], values["skipped_updates"]
    if prev_done is not None:
        agent._prev_done = np.array(prev_done, dtype=bool)
    return agent
