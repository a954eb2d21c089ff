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
inside a parser. See docs/checkpoints.md.

What is where: this module writes and reads tensor groups plus a manifest, and lays an
agent's state out on them (format 1: ``pack_agent`` / ``unpack_agent``). It imports nothing
from the agent: ``SQNAgent.state_dict()`` gathers the state of its parts (learner, actor,
transition intake), and each part checks every name, shape, dtype and value range of what
it loads (with the helpers at the end of this module) before it changes anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

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


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path``'s content with ``text`` in one step: a reader (or a run resumed after a crash) sees the
    old file or the new one, never part of one. A temp file beside it, then ``os.replace`` (atomic on POSIX);
    a failed write removes its temp file. For the small JSON files around a run (args, results)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there after a failed write


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


# ---------------------------------------------------------------------- format 1: the agent's parts on disk
def _optimizer_tensors(name: str, state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An optimizer's ``state_dict()`` moments as ``<name>.<param index>.<key>`` tensors."""
    return {
        f"{name}.{pid}.{key}": torch.as_tensor(value)
        for pid, entries in state["state"].items()
        for key, value in entries.items()
    }


def _optimizer_state(name: str, tensors: Mapping[str, torch.Tensor], param_groups: Any) -> dict[str, Any]:
    """The inverse of ``_optimizer_tensors``: an optimizer ``state_dict()`` (checked later, by ``checked_optimizer_state``)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for tensor_name, value in tensors.items():
        if not tensor_name.startswith(name + "."):
            continue
        pid, _, key = tensor_name[len(name) + 1 :].partition(".")
        if not pid.isdigit() or not key:
            raise CheckpointError(f"unexpected optimizer tensor '{tensor_name}'")
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": param_groups}


def pack_agent(description: Mapping[str, Any], state: Mapping[str, Any], include_replay: bool) -> tuple[dict, dict]:
    """Lay an agent out as format 1: ``(manifest fields, tensor groups)`` for ``write_checkpoint``.

    ``description`` says how to rebuild the agent (config, spaces and bounds, network, autoreset
    mode); ``state`` is ``SQNAgent.state_dict()``: ``{"learner": ..., "actor": ..., "intake": ...}``.
    docs/checkpoints.md lists every file, tensor and field.
    """
    learner, actor, intake = state["learner"], state["actor"], state["intake"]
    model = {f"q_nets.{k}": v for k, v in learner["q_nets"].items()}
    model.update({f"target_nets.{k}": v for k, v in learner["target_nets"].items()})
    model["log_alpha"] = learner["log_alpha"]
    model["observation_space.low"] = torch.from_numpy(np.asarray(description["observation_low"]))
    model["observation_space.high"] = torch.from_numpy(np.asarray(description["observation_high"]))
    tensors = {
        **_optimizer_tensors("q_optimizer", learner["q_optimizer"]),
        **_optimizer_tensors("alpha_optimizer", learner["alpha_optimizer"]),
        "torch_generator": actor["generator"],
        "augment_generator": learner["augment_generator"],
    }
    groups = {"model": model, "state": tensors}
    if include_replay:
        # reshape: np.ascontiguousarray turns 0-d arrays (the ring position) into shape (1,)
        groups["replay"] = {
            k: torch.from_numpy(np.ascontiguousarray(v).reshape(np.shape(v))) for k, v in learner["replay"].items()
        }
    manifest = {
        **{k: v for k, v in description.items() if k not in ("observation_low", "observation_high")},
        "counters": learner["counters"],
        "prev_done": intake["prev_done"],
        "replay_rng": learner["replay_rng"],
        "generator_device": actor["generator_device"],
        "augment_generator_device": learner["augment_generator_device"],
        "optimizer_param_groups": {
            "q_optimizer": learner["q_optimizer"]["param_groups"],
            "alpha_optimizer": learner["alpha_optimizer"]["param_groups"],
        },
        "torch_version": torch.__version__,
    }
    return manifest, groups


def unpack_agent(manifest: Mapping[str, Any], groups: Mapping[str, Mapping[str, torch.Tensor]]) -> tuple[dict, dict]:
    """The inverse of ``pack_agent``: ``(description, state)`` from what ``read_checkpoint`` returned.

    Checks only that the pieces are there; the agent's parts check their values when they load them.
    """
    model, tensors = groups.get("model"), groups.get("state")
    if model is None or tensors is None:
        raise CheckpointError("the checkpoint lacks its model or state file entry")
    for name in ("observation_space.low", "observation_space.high", "log_alpha"):
        if name not in model:
            raise CheckpointError(f"the model file lacks tensor '{name}'")
    if "torch_generator" not in tensors:
        raise CheckpointError("the state file lacks tensor 'torch_generator'")
    param_groups = manifest.get("optimizer_param_groups")
    if not isinstance(param_groups, dict):
        raise CheckpointError("the checkpoint lacks 'optimizer_param_groups'")
    description = {
        "config": manifest.get("config"),
        "observation_space": manifest.get("observation_space"),
        "action_space": manifest.get("action_space"),
        "network": manifest.get("network"),
        "autoreset_mode": manifest.get("autoreset_mode", "next_step"),
        "action_mask": manifest.get("action_mask", False),  # absent before masks: none
        "mask_as_input": manifest.get("mask_as_input", False),  # absent before the option: the mask was no input
        "observation_low": model["observation_space.low"].numpy(),
        "observation_high": model["observation_space.high"].numpy(),
    }
    learner = {
        "counters": manifest.get("counters"),
        "q_nets": {k[len("q_nets.") :]: v for k, v in model.items() if k.startswith("q_nets.")},
        "target_nets": {k[len("target_nets.") :]: v for k, v in model.items() if k.startswith("target_nets.")},
        "log_alpha": model["log_alpha"],
        "q_optimizer": _optimizer_state("q_optimizer", tensors, param_groups.get("q_optimizer")),
        "alpha_optimizer": _optimizer_state("alpha_optimizer", tensors, param_groups.get("alpha_optimizer")),
        "replay_rng": manifest.get("replay_rng"),
    }
    if "augment_generator" in tensors:  # absent before the augmentation option: the fresh agent's seeding stays
        learner["augment_generator"] = tensors["augment_generator"]
        learner["augment_generator_device"] = manifest.get("augment_generator_device")
    if "replay" in groups:
        learner["replay"] = {k: v.numpy() for k, v in groups["replay"].items()}
    actor = {"generator": tensors["torch_generator"], "generator_device": manifest.get("generator_device")}
    intake = {"prev_done": manifest.get("prev_done")}
    return description, {"learner": learner, "actor": actor, "intake": intake}


# ---------------------------------------------------------------------- checks for untrusted state
def check_tensors(what: str, expected_state: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]) -> None:
    """Names, shapes, dtypes and finiteness of saved tensors against the ones a module expects."""
    missing = sorted(set(expected_state) - set(saved))
    if missing:
        raise CheckpointError(f"{what} lacks tensors {missing[:5]}; was it saved with a different network?")
    unexpected = sorted(set(saved) - set(expected_state))
    if unexpected:
        raise CheckpointError(f"{what} has unexpected tensors {unexpected[:5]}; was it saved with a different network?")
    for name, expected in expected_state.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{what} entry '{name}' is a {type(value).__name__}, expected a tensor")
        if value.shape != expected.shape:
            raise CheckpointError(
                f"{what} tensor '{name}' has shape {tuple(value.shape)}, the network expects "
                f"{tuple(expected.shape)}; was it saved with a different network or config?"
            )
        if value.dtype != expected.dtype:
            raise CheckpointError(f"{what} tensor '{name}' has dtype {value.dtype}, expected {expected.dtype}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{what} tensor '{name}' contains NaN or infinity")


def load_generator_state(generator: torch.Generator, saved: Any, saved_device: str | None, name: str) -> bool:
    """Set ``generator`` to a saved ``get_state()``, checked by torch first. Returns False when the state
    comes from another device type (CPU and CUDA states differ): the generator is then reseeded
    deterministically from it, so sampling goes on, but not bit-identically."""
    if not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8 or saved.dim() != 1:
        raise CheckpointError(f"inconsistent RNG or replay state: the {name} state must be a 1-D uint8 tensor, got {saved!r:.100}")
    if saved_device is not None and saved_device != generator.device.type:
        generator.manual_seed(int.from_bytes(hashlib.sha256(saved.numpy().tobytes()).digest()[:8], "little"))
        return False
    scratch = torch.Generator(device=generator.device)
    try:
        scratch.set_state(saved)  # torch checks the size; the real generator changes only if it passes
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"inconsistent RNG or replay state: torch refused the {name} state ({e})") from None
    generator.set_state(saved)
    return True


def _same_kind(reference: Any, value: Any) -> bool:
    """Whether a JSON value can stand where a fresh optimizer has ``reference``."""
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if reference is None:
        return value is None or isinstance(value, bool)
    if isinstance(reference, (list, tuple)):
        return isinstance(value, (list, tuple)) and len(value) == len(reference) and all(map(_same_kind, reference, value))
    if isinstance(reference, str):
        return isinstance(value, str)
    return value == reference


_OPTIMIZER_IMPLEMENTATION = ("foreach", "fused", "capturable", "differentiable")
"""Optimizer settings that choose an implementation: a load keeps the running optimizer's."""


def checked_optimizer_state(optimizer: torch.optim.Optimizer, name: str, saved: Any) -> dict[str, Any]:
    """A saved ``optimizer.state_dict()`` checked against ``optimizer``, ready for its ``load_state_dict``.

    Settings this version of torch does not have are dropped, missing ones take the running
    torch's defaults, and the implementation (``fused``, ``foreach``, ...) stays the running optimizer's; moments must match their parameters' shapes and be finite (and
    non-negative where Adam takes their square root). Never torch's own errors.
    """
    saved_groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    fresh_groups = optimizer.state_dict()["param_groups"]
    if not isinstance(saved_groups, list) or len(saved_groups) != len(fresh_groups):
        raise CheckpointError(f"{name} has parameter groups {saved_groups!r:.200}, expected {len(fresh_groups)}")
    groups = []
    for fresh, saved_group in zip(fresh_groups, saved_groups, strict=True):
        if not isinstance(saved_group, dict) or saved_group.get("params") != fresh["params"]:
            raise CheckpointError(f"{name} parameter group {saved_group!r:.200} does not match the network's parameters")
        group = dict(fresh)
        for key, value in saved_group.items():
            if key == "params" or key not in fresh:  # a setting this version of torch does not have
                continue
            if key in _OPTIMIZER_IMPLEMENTATION:  # how the running optimizer computes (e.g. fused), not its state
                continue
            if not _same_kind(fresh[key], value):
                raise CheckpointError(f"{name} setting '{key}' is {value!r}, expected a value like {fresh[key]!r}")
            group[key] = tuple(value) if isinstance(fresh[key], tuple) else value
        groups.append(group)

    params = [p for g in optimizer.param_groups for p in g["params"]]
    saved_state = saved.get("state")
    if not isinstance(saved_state, Mapping):
        raise CheckpointError(f"{name} has no 'state' table of moments")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for pid, entries in saved_state.items():
        for key, value in entries.items():
            tensor_name = f"{name}.{pid}.{key}"
            if type(pid) is not int or not 0 <= pid < len(params):
                raise CheckpointError(f"unexpected optimizer tensor '{tensor_name}'")
            expected = () if key == "step" else tuple(params[pid].shape)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise CheckpointError(
                    f"optimizer tensor '{tensor_name}' has shape {shape}, expected {expected}; "
                    "was it saved with a different network or config?"
                )
            if not value.is_floating_point() or not torch.isfinite(value).all():
                raise CheckpointError(f"optimizer tensor '{tensor_name}' is not a finite floating-point tensor")
            if key in ("step", "exp_avg_sq", "max_exp_avg_sq") and (value < 0).any():  # sqrt(v) of Adam: NaN
                raise CheckpointError(f"optimizer tensor '{tensor_name}' holds negative values")
            state.setdefault(pid, {})[key] = value.detach().clone()  # never alias the state it was given
    if isinstance(optimizer, torch.optim.Adam):
        required = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if groups[0].get("amsgrad") else set())
        for pid, entries in state.items():
            if set(entries) != required:
                raise CheckpointError(
                    f"optimizer state of {name} parameter {pid} has {sorted(entries)}, expected {sorted(required)}"
                )
    return {"state": state, "param_groups": groups}
