"""Writing result files safely, in one place for every subpackage.

- :func:`atomic_torch_save` / :func:`atomic_write_text`: write to a temporary file in the
  target folder, fsync, then rename into place. A reader, or a resumed run, sees the old
  file or the new one, never half of one, even if the process is killed mid-write. The
  file gets the usual permissions (0666 less the umask), as ``open()`` would give it.
- :func:`save_payload` / :func:`load_payload`: the result-file format. A ``torch.save`` of
  plain tensors plus one JSON header string tagged with a ``format`` name. It is never a
  pickle of an object: loading uses ``weights_only=True`` and runs no code. The tag keeps
  a file of one kind from being loaded as another.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

__all__ = [
    "atomic_torch_save",
    "atomic_write_text",
    "load_dataclass",
    "load_torch_file",
    "load_payload",
    "save_dataclass",
    "save_payload",
    "SavedFields",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path).expanduser()  # "~/x.pt" is the home folder, not a folder named "~"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see the module docstring)."""
    import torch

    return _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str, *, errors: str = "strict") -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    data = text.encode("utf-8", errors=errors)

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return _atomic_write(path, write)


def save_payload(
    path: str | Path, fmt: str, tensors: Mapping[str, Any], header: dict[str, Any]
) -> None:
    """Write ``tensors`` (``None`` entries skipped) and a JSON-able ``header`` tagged ``fmt``."""
    payload: dict[str, Any] = {k: v.detach().cpu() for k, v in tensors.items() if v is not None}
    payload["header"] = json.dumps({"format": fmt, **header})
    atomic_torch_save(payload, path)


def load_payload(path: str | Path, fmt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Inverse of :func:`save_payload`: ``(tensors, header without "format")``.

    Raises ``ValueError`` if the file is not a synergy-lens result file, or holds another
    format than ``fmt``.
    """
    payload = load_torch_file(path, f"a synergy-lens result file ({fmt})")
    if not isinstance(payload, dict) or not isinstance(payload.get("header"), str):
        raise ValueError(
            f"{path}: expected a synergy-lens result file ({fmt}), found a torch file holding "
            f"{_kind(payload)} without a synergy-lens header; load it with torch.load, or give the "
            "path of a file written by the result's save()"
        )
    try:
        header = json.loads(payload.pop("header"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: expected a synergy-lens result file ({fmt}), found a damaged "
                         f"header ({err.msg}); recreate the file") from None
    found = header.pop("format", None) if isinstance(header, dict) else None
    if found != fmt:
        raise ValueError(f"{path}: expected {fmt!r}, found {found!r}: load it with the matching class")
    return payload, header


def load_torch_file(path: str | Path, what: str, fix: str = "recreate the file, or check the path") -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with errors that say what went wrong.

    Every failure raises ``FileNotFoundError`` or ``ValueError`` naming the file, ``what``
    was expected and what was found there (an empty file, a truncated archive, a file that
    is not a torch file, a pickle of arbitrary objects), then ``fix``. Files holding anything but tensors
    and plain data are refused, never loaded with ``weights_only=False``.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    if not path.is_file():
        raise ValueError(f"{path}: expected {what}, found a folder or special file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: expected {what}, found an empty file (0 bytes; a write was cut "
                         f"short or the file was truncated); {fix}")
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types here; none should reach the user raw
        if head.startswith(b"PK"):
            if not zipfile.is_zipfile(path):
                found = f"a truncated or damaged torch archive ({size} bytes)"
            elif isinstance(err, pickle.UnpicklingError):
                found = ("a torch file holding Python objects other than tensors and plain data "
                         "(not loaded: unpickling arbitrary objects can run code)")
            else:
                found = f"a torch archive that cannot be read ({type(err).__name__})"
        else:
            found = f"{size} bytes that are not a torch file (they begin with {head[:8]!r})"
        raise ValueError(f"{path}: expected {what}, found {found}; {fix}") from None


def _kind(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = ", ".join(map(str, list(obj)[:5]))
        return f"a dict (keys: {keys})" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def save_dataclass(obj: Any, path: str | Path, fmt: str) -> None:
    """Save a result dataclass: tensor fields (and dicts of tensors) as tensors, the rest as
    JSON in the header. :func:`load_dataclass` is the inverse."""
    import dataclasses

    from torch import Tensor

    tensors: dict[str, Any] = {}
    header: dict[str, Any] = {"fields": {}, "tensor_dicts": {}}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            tensors[f.name] = value
        elif isinstance(value, dict) and value and all(isinstance(v, Tensor) for v in value.values()):
            header["tensor_dicts"][f.name] = list(value)
            tensors.update({f"{f.name}/{k}": v for k, v in value.items()})
        else:
            header["fields"][f.name] = value
    save_payload(path, fmt, tensors, header)


def load_dataclass(cls: Any, path: str | Path, fmt: str) -> Any:
    """Inverse of :func:`save_dataclass` for the dataclass ``cls``."""
    tensors, header = load_payload(path, fmt)
    kwargs = dict(header["fields"])
    for name, keys in header["tensor_dicts"].items():
        kwargs[name] = {k: tensors.pop(f"{name}/{k}") for k in keys}
    kwargs.update(tensors)
    return cls(**kwargs)


_Saved = TypeVar("_Saved", bound="SavedFields")
"""``SavedFields.load``'s return type (not ``typing.Self``: Python 3.10 lacks it, and runtime
type checkers accept it only on whole decorated classes)."""


class SavedFields:
    """Mixin for result dataclasses saved field by field (:func:`save_dataclass`).

    A subclass sets ``FORMAT`` (``"synergy_lens.Name/1"``) and gets ``save``/``load``.
    """

    FORMAT: ClassVar[str]

    def save(self, path: str | Path) -> None:
        """Plain tensors and a JSON header (``torch.load(weights_only=True)`` safe)."""
        save_dataclass(self, path, self.FORMAT)

    @classmethod
    def load(cls: type[_Saved], path: str | Path) -> _Saved:
        """Inverse of :meth:`save`."""
        result: _Saved = load_dataclass(cls, path, cls.FORMAT)
        return result
