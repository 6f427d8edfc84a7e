"""Checkpoints of a recording in progress: every finished batch on disk, resumable.

What and why
------------
Recording 60 prompts x 100 tokens on a large model takes a while; a Ctrl-C, a crash or a
killed job must not lose the batches already done. With ``checkpoint=path``,
:func:`~synergy_lens.record.record_head_activity` writes the whole state after every
finished batch, atomically (a temporary file in the same folder, fsync, ``os.replace``), so
the file on disk is always a complete earlier state. Calling again with the same
arguments loads it, skips the finished batches and records the rest.

A checkpoint belongs to one run. It stores a fingerprint in three parts (the prompts and
their token ids; the model's name, sizes and a digest of its weights; the settings), and a
resume with a different fingerprint is refused with a message naming the parts that
differ. Only one process may write a given checkpoint at a time.

File format: a synergy-lens result file (safetensors, :mod:`synergy_lens._io`) tagged
``synergy_lens.record.checkpoint``: tensors ``values`` ``[prompt, time, layer, head]`` (NaN for
unfinished prompts) and ``done`` ``[prompt]`` bool; header ``fingerprint`` and ``progress``
(``generated_ids``). Checkpoints of the earlier torch format still resume. The same
:class:`Checkpoint` keeps the progress of a difficulty-study level
(:func:`synergy_lens.dynamics.study_level.run_level`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from synergy_lens._io import read_payload, save_payload

__all__ = ["Checkpoint", "RecordingState", "fingerprint", "weights_digest"]

_NAME = "synergy_lens.record.checkpoint"
_FORMAT = f"{_NAME}/2"  # /2: safetensors, header {fingerprint, progress}


@dataclass
class RecordingState:
    """What a recording has finished so far: values, which prompts are done, their tokens."""

    values: Float[Tensor, "prompt time layer head"]
    done: Bool[Tensor, " prompt"]
    generated_ids: list[list[int] | None]

    @classmethod
    def empty(cls, n_prompts: int, n_steps: int, n_layers: int, n_heads: int) -> RecordingState:
        return cls(
            values=torch.full((n_prompts, n_steps, n_layers, n_heads), float("nan")),
            done=torch.zeros(n_prompts, dtype=torch.bool),
            generated_ids=[None] * n_prompts,
        )

    def put(
        self,
        indices: list[int],
        values: Float[Tensor, "batch time layer head"],
        generated: list[list[int]],
    ) -> None:
        """Store one finished batch; the ``done`` flags are set last (interrupt-safe)."""
        self.values[indices] = values.to(self.values.dtype)
        for i, gen in zip(indices, generated):
            self.generated_ids[i] = list(gen)
        self.done[indices] = True

    @property
    def n_done(self) -> int:
        return int(self.done.sum())


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def weights_digest(model: Any, samples: int = 4096) -> str:
    """A cheap, exact digest of a model's weights.

    Hashes the bytes of ``samples`` evenly spaced entries of every parameter (plus names and
    shapes), so it takes milliseconds yet changes when weights are edited anywhere a head's
    rows or columns live. Not a cryptographic identity of the model; it guards against
    resuming with the wrong weights by mistake.
    """
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        idx = torch.linspace(
            0, flat.numel() - 1, min(samples, flat.numel()), dtype=torch.float64
        ).long()
        sample = flat[idx.to(flat.device)].to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def fingerprint(
    *, prompts: dict[str, Any], model: dict[str, Any], settings: dict[str, Any]
) -> dict[str, str]:
    """Three digests, one per part, so a mismatch can be explained."""
    return {"prompts": _digest(prompts), "model": _digest(model), "settings": _digest(settings)}


class Checkpoint:
    """A checkpoint file: a fingerprint, and the progress of the run it belongs to.

    The one checkpoint mechanism of the package: a recording keeps its finished batches here
    (:meth:`save` / :meth:`load_into`), a difficulty-study level the names of its finished
    stages (:meth:`write` / :meth:`read`). Each write replaces the whole file atomically (a
    synergy-lens result file, :func:`synergy_lens._io.save_payload`); a read refuses a file
    of another run, naming the fingerprint parts that differ.

    Args:
        path: the checkpoint file.
        fingerprint: ``{part: JSON-able value}`` (digests, or the settings themselves).
        what: the kind of run, for messages ("recording", "difficulty study").
        fix: what to do when the file belongs to another run.
    """

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], *, what: str = "recording",
                 fix: str = ("Resume with the same model, prompts and settings, or delete the file / pass a "
                             "new checkpoint path to start over.")) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.what, self.fix = what, fix
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"checkpoint={str(self.path)!r} is a folder: give a file path")

    # -- any run ---------------------------------------------------------------------------
    def read(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """``(tensors, progress)`` saved by :meth:`write`, or None when there is no file yet."""
        self._remove_orphans()
        if not self.path.exists():
            return None
        fix = "delete it to start over, or pass another checkpoint path"
        tensors, header, version, _ = read_payload(self.path, _NAME, fix=fix,
                                                   what=f"a synergy-lens {self.what} checkpoint")
        if version == 1:  # the torch format: JSON strings beside the tensors
            header = {"fingerprint": json.loads(header["fingerprint"]),
                      "progress": {"generated_ids": json.loads(header["generated_ids"])}}
        self.check(header["fingerprint"])
        return tensors, header["progress"]

    def check(self, saved: dict[str, Any]) -> None:
        """Refuse a saved fingerprint that differs from this run's, naming the parts."""
        mine = json.loads(json.dumps(self.fingerprint, default=str))  # as it reads back (tuples are lists)
        differ = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if differ:
            raise ValueError(f"the checkpoint {self.path} was written by a different {self.what} (differs in: "
                             f"{', '.join(differ)}). {self.fix}")

    def write(self, tensors: dict[str, Tensor], progress: dict[str, Any]) -> None:
        """Replace the file, atomically, with this run's fingerprint and ``progress``."""
        fingerprint = json.loads(json.dumps(self.fingerprint, default=str))
        save_payload(self.path, _FORMAT, tensors, {"fingerprint": fingerprint, "progress": progress})

    # -- a recording -----------------------------------------------------------------------
    def load_into(self, state: RecordingState) -> bool:
        """Fill ``state`` from the file if it exists; True when something was resumed."""
        saved = self.read()
        if saved is None:
            return False
        tensors, progress = saved
        if tuple(tensors["values"].shape) != tuple(state.values.shape):
            raise ValueError(f"the checkpoint {self.path} has values of the wrong shape")
        state.values.copy_(tensors["values"])
        state.generated_ids[:] = progress["generated_ids"]
        state.done.copy_(tensors["done"])
        return bool(state.done.any())

    def save(self, state: RecordingState) -> None:
        """Write the whole state atomically."""
        self.write({"values": state.values, "done": state.done}, {"generated_ids": state.generated_ids})

    def _remove_orphans(self) -> None:
        """Temporary files left by a process killed mid-write."""
        if not self.path.parent.is_dir():
            return
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
