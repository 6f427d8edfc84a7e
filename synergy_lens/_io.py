"""Writing and reading result files, in one place for every subpackage.

- :func:`atomic_write_text` / :func:`atomic_write_bytes`: write to a temporary file in the
  target folder, fsync, then rename into place. A reader, or a resumed run, sees the old
  file or the new one, never half of one, even if the process is killed mid-write. The
  file gets the usual permissions (0666 less the umask), as ``open()`` would give it.
- :func:`save_payload` / :func:`read_payload`: the result-file format, a safetensors file.
  Its tensors are plain safetensors tensors (readable from any language with a safetensors
  reader); its metadata entry ``"synergy_lens"`` is a JSON header
  ``{"format": "synergy_lens.<Class>", "version": N, ...}``. Nothing is unpickled, and the
  tag keeps a file of one kind from being loaded as another. ``N`` counts changes of what a
  class saves (its fields); the container is told by the file's first bytes, so files of
  the earlier torch container (a ``torch.save`` of plain tensors and a JSON string tagged
  ``"<name>/<N>"``) are still read, with ``weights_only=True``.
- :class:`SavedFields`: ``save``/``load`` of a result dataclass, field by field, through
  :func:`save_fields` / :func:`load_fields`. Every result class uses it; a class whose older
  files had another layout reads them in its ``_from_old_file``.

Field encoding (the header's ``"fields"``): JSON values as they are; a tensor as
``{"$tensor": key}`` (the safetensors entry ``key``, the field's path such as ``"curves/core"``);
a tuple as ``{"$tuple": [...]}``; a dict whose keys are not all plain strings as
``{"$items": [[key, value], ...]}``; a pandas DataFrame as ``{"$frame": {column: [values]}}``;
a nested synergy-lens dataclass as ``{"$dataclass": "module:Class", "fields": {...}}``.
Non-finite floats are written as JSON's ``NaN``/``Infinity`` extension (Python's ``json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

__all__ = [
    "FormatMismatch",
    "SavedFields",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_fields",
    "load_payload",
    "load_torch_file",
    "read_payload",
    "save_fields",
    "save_payload",
    "split_tag",
]

_META_KEY = "synergy_lens"  # the safetensors metadata entry that holds the JSON header


# ----------------------------------------------------------------------------- atomic writes


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


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""

    def write(f: IO[bytes]) -> None:
        f.write(data)

    return _atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str, *, errors: str = "strict") -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8", errors=errors))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (not for result files: they are safetensors)."""
    import torch

    return _atomic_write(path, lambda f: torch.save(obj, f))


# ----------------------------------------------------------------------------- the result file


def split_tag(tag: str) -> tuple[str, int]:
    """``"synergy_lens.Core/2"`` -> ``("synergy_lens.Core", 2)`` (no ``/N``: version 1)."""
    name, sep, version = tag.rpartition("/")
    if sep and version.isdigit():
        return name, int(version)
    return tag, 1


def _tensor_for_file(value: Any, seen: set[int]) -> Any:
    """CPU, contiguous, and not sharing memory with another saved tensor (safetensors refuses)."""
    t = value.detach().cpu().contiguous()
    storage = t.untyped_storage()
    if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
        t = t.clone()
    if t.numel():
        seen.add(t.untyped_storage().data_ptr())
    return t


def save_payload(path: str | Path, fmt: str, tensors: Mapping[str, Any], header: dict[str, Any]) -> Path:
    """Write ``tensors`` (``None`` entries skipped) and a JSON-able ``header`` as a safetensors
    file tagged ``fmt`` (``"name/version"``), atomically. :func:`read_payload` reads it."""
    from safetensors.torch import save

    name, version = split_tag(fmt)
    seen: set[int] = set()
    data = {k: _tensor_for_file(v, seen) for k, v in tensors.items() if v is not None}
    meta = json.dumps({"format": name, "version": version, **header})
    return atomic_write_bytes(path, save(data, metadata={_META_KEY: meta}))


def read_payload(path: str | Path, name: str, *, what: str | None = None, expected: str | None = None,
                 fix: str = "recreate the file, or check the path") -> tuple[dict[str, Any], dict[str, Any], int, bool]:
    """``(tensors, header, version, is_safetensors)`` of a result file of format ``name``.

    Reads the safetensors format and the earlier torch format (``header`` is then what that
    file held besides its tensors). Raises ``FileNotFoundError`` or ``ValueError`` naming the
    file, ``what`` was expected (``expected`` when the file holds another format) and what
    was found (an empty, truncated or foreign file, another format), then ``fix``.
    """
    path = Path(path).expanduser()
    what = what or f"a synergy-lens result file ({name})"
    expected = expected or what
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected {expected})")
    if not path.is_file():
        raise ValueError(f"{path}: expected {expected}, found a folder or special file")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK") or not head:  # a torch archive (or nothing at all)
        tensors, header = _read_torch_payload(path, what, fix)
    elif len(head) >= 9 and head[8:9] == b"{":
        tensors, header = _read_safetensors(path, what, fix)
    else:
        size = path.stat().st_size
        raise ValueError(f"{path}: expected {what}, found {size} bytes that are not a result file (not "
                         f"safetensors, not a torch file; they begin with {head[:8]!r}); {fix}")
    new = not head.startswith(b"PK")
    tag = header.pop("format", None)
    if new:  # {"format": name, "version": N}
        version = header.pop("version", None)
        found = tag if isinstance(version, int) else None
        tag = f"{tag}/{version}" if found else tag
    else:  # "name/N"
        found, version = split_tag(tag) if isinstance(tag, str) else (None, 0)
    if found != name:
        raise FormatMismatch(f"{path}: expected {expected}, found {tag!r}: load it with the matching class",
                             found=tag)
    assert isinstance(version, int)
    return tensors, header, version, new


class FormatMismatch(ValueError):
    """A result file of another format than the one asked for (``found``: its tag)."""

    def __init__(self, message: str, *, found: Any) -> None:
        super().__init__(message)
        self.found = found


def load_payload(path: str | Path, fmt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, header)`` of a file written by :func:`save_payload` with exactly ``fmt``."""
    name, version = split_tag(fmt)
    tensors, header, found, _ = read_payload(path, name, expected=repr(fmt))
    if found != version:
        raise ValueError(f"{path}: expected {fmt!r}, found {f'{name}/{found}'!r}: load it with the matching class")
    return tensors, header


def _read_safetensors(path: Path, what: str, fix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load

    data = path.read_bytes()
    size = len(data)
    n = int.from_bytes(data[:8], "little")
    try:
        if 8 + n > size:
            raise EOFError
        index = json.loads(data[8 : 8 + n])
        end = max((v["data_offsets"][1] for k, v in index.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise EOFError
    except EOFError:
        raise ValueError(f"{path}: expected {what}, found a truncated safetensors file ({size} bytes; a write "
                         f"was cut short or the file was truncated); {fix}") from None
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ValueError(f"{path}: expected {what}, found a damaged safetensors file (its index cannot be "
                         f"read); {fix}") from None
    meta = (index.get("__metadata__") or {}).get(_META_KEY)
    if not isinstance(meta, str):
        keys = ", ".join(k for k in list(index)[:6] if k != "__metadata__")
        raise ValueError(f"{path}: expected {what}, found a safetensors file without a synergy-lens header "
                         f"(tensors: {keys or 'none'}); load it with safetensors, or give the path of a file "
                         "written by the result's save()")
    try:
        header = json.loads(meta)
        tensors = load(data)
    except Exception as err:  # safetensors raises its own error type
        raise ValueError(f"{path}: expected {what}, found a damaged safetensors file "
                         f"({type(err).__name__}); {fix}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: expected {what}, found a header that is not a JSON object; {fix}")
    return tensors, header


def _read_torch_payload(path: Path, what: str, fix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The earlier format: a torch dict with a ``header`` JSON string, or (HeadActivity, the
    recording checkpoint) with a ``format`` tag beside its entries."""
    from torch import Tensor

    payload = load_torch_file(path, what, fix)
    if isinstance(payload, dict) and isinstance(payload.get("header"), str):
        try:
            header = json.loads(payload.pop("header"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: expected {what}, found a damaged header ({err.msg}); {fix}") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: expected {what}, found a header that is not a JSON object; {fix}")
        return payload, header
    if isinstance(payload, dict) and isinstance(payload.get("format"), str):
        tensors = {k: v for k, v in payload.items() if isinstance(v, Tensor)}
        return tensors, {k: v for k, v in payload.items() if k not in tensors}
    raise ValueError(
        f"{path}: expected {what}, found a torch file holding {_kind(payload)} without a synergy-lens "
        "header; load it with torch.load, or give the path of a file written by the result's save()"
    )


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


# ----------------------------------------------------------------------------- field encoding


def _saved_fields(cls: type) -> list[str]:
    unsaved = getattr(cls, "UNSAVED", ())
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in unsaved]


def _encode(value: Any, key: str, tensors: dict[str, Any]) -> Any:
    """A JSON-able node for ``value``; its tensors go into ``tensors`` under paths from ``key``."""
    from torch import Tensor

    if isinstance(value, Tensor):
        name, n = key, 1
        while name in tensors:  # a dict key holding "/" could repeat a path
            name, n = f"{key}#{n}", n + 1
        tensors[name] = value
        return {"$tensor": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # a numpy scalar
        return value.item()
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, f"{key}/{k}", tensors) for k, v in value.items()}
        return {"$items": [[_encode(k, f"{key}/{i}.key", tensors), _encode(v, f"{key}/{k}", tensors)]
                           for i, (k, v) in enumerate(value.items())]}
    cls = type(value)
    if cls.__module__.split(".")[0] == "pandas" and cls.__name__ == "DataFrame":
        return {"$frame": _encode(value.to_dict(orient="list"), key, tensors)}
    if dataclasses.is_dataclass(value) and _ours(cls.__module__):
        node: dict[str, Any] = {"$dataclass": f"{cls.__module__}:{cls.__qualname__}"}
        if hasattr(cls, "FORMAT"):
            node["version"] = split_tag(cls.FORMAT)[1]
        node["fields"] = {f: _encode(getattr(value, f), f"{key}/{f}", tensors) for f in _saved_fields(cls)}
        return node
    raise TypeError(f"cannot save {key!r}: a {cls.__module__}.{cls.__qualname__} has no file encoding "
                    "(tensors, JSON values, tuples, dicts, DataFrames and synergy-lens dataclasses do)")


def _decode(node: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "$tensor" in node:
        return tensors[node["$tensor"]]
    if "$tuple" in node:
        return tuple(_decode(v, tensors) for v in node["$tuple"])
    if "$items" in node:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in node["$items"]}
    if "$frame" in node:
        import pandas as pd

        return pd.DataFrame(_decode(node["$frame"], tensors))
    if "$dataclass" in node:
        cls = _our_class(node["$dataclass"])
        fields = {k: _decode(v, tensors) for k, v in node["fields"].items()}
        if isinstance(cls, type) and issubclass(cls, SavedFields):
            return cls._from_fields(fields, int(node.get("version", 1)))
        return cls(**fields)
    return {k: _decode(v, tensors) for k, v in node.items()}


def _ours(module: str) -> bool:
    return module == "synergy_lens" or module.startswith("synergy_lens.")


def _our_class(spec: str) -> Any:
    """The class ``"module:Qualname"``, only from inside the synergy_lens package."""
    import importlib

    module, _, qualname = spec.partition(":")
    if not _ours(module) or not qualname:
        raise ValueError(f"refusing to build {spec!r}: not a synergy_lens class")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- SavedFields


def save_fields(obj: Any, path: str | Path) -> Path:
    """Write the result dataclass ``obj`` (a :class:`SavedFields`) to ``path``, atomically."""
    cls = type(obj)
    tensors: dict[str, Any] = {}
    fields = {f: _encode(getattr(obj, f), f, tensors) for f in _saved_fields(cls)}
    return save_payload(path, cls.FORMAT, tensors, {**cls.SAVED_CONSTANTS, "fields": fields})


def load_fields(cls: Any, path: str | Path) -> Any:
    """Inverse of :func:`save_fields` for the class ``cls``; reads its older formats too."""
    name, current = split_tag(cls.FORMAT)
    path = Path(path).expanduser()
    try:
        tensors, header, version, new = read_payload(path, name)
    except FormatMismatch as err:
        raise ValueError(f"{path}: expected a saved {cls.__name__}, found {err.found!r} (expected "
                         f"{cls.FORMAT!r}): load it with the matching class") from None
    if version > current:
        raise ValueError(f"{path}: a {cls.__name__} file of format version {version}, written by a newer "
                         f"synergy-lens (this one reads up to version {current}); upgrade synergy-lens")
    for key, want in cls.SAVED_CONSTANTS.items():
        if key in header and header[key] != want:
            raise ValueError(f"{path}: stores {key} = {header[key]}, but this synergy-lens has {want}; "
                             f"recreate the file with this version")
    try:
        if new:
            return cls._from_fields({k: _decode(v, tensors) for k, v in header["fields"].items()}, version)
        return cls._from_old_file(tensors, header, version)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: a {cls.__name__} file whose contents do not fit together "
                         f"({type(err).__name__}: {err}); recreate it") from None


_Saved = TypeVar("_Saved", bound="SavedFields")
"""``SavedFields.load``'s return type (not ``typing.Self``: Python 3.10 lacks it, and runtime
type checkers accept it only on whole decorated classes)."""


class SavedFields:
    """Mixin for result dataclasses: ``save``/``load`` field by field (the module docstring).

    A subclass sets ``FORMAT`` (``"synergy_lens.Name/N"``, N the version its ``save`` writes),
    optionally ``UNSAVED`` (fields kept in memory only, left at their defaults by ``load``) and
    ``SAVED_CONSTANTS`` (header entries a file must match to load, e.g. the atom order).
    Files of the earlier torch container are read by ``_from_old_file``; a safetensors file of
    an older ``N`` by ``_from_fields`` (override it to upgrade the fields).
    """

    FORMAT: ClassVar[str]
    UNSAVED: ClassVar[tuple[str, ...]] = ()
    SAVED_CONSTANTS: ClassVar[dict[str, Any]] = {}

    def save(self, path: str | Path) -> None:
        """A safetensors file: the tensor fields as tensors, the rest in a JSON header."""
        save_fields(self, path)

    @classmethod
    def load(cls: type[_Saved], path: str | Path) -> _Saved:
        """Inverse of :meth:`save`; files of the earlier torch format load too."""
        result: _Saved = load_fields(cls, path)
        return result

    @classmethod
    def _from_fields(cls: type[_Saved], fields: dict[str, Any], version: int) -> _Saved:
        """Build from decoded fields (``version``: the file's; override to upgrade an older one)."""
        return cls(**fields)

    @classmethod
    def _from_old_file(cls: type[_Saved], tensors: dict[str, Any], header: dict[str, Any], version: int) -> _Saved:
        """Build from a file of the earlier torch format: either ``fields``/``tensor_dicts``
        (what ``SavedFields`` wrote) or tensors and header entries named after the fields."""
        names = _saved_fields(cls)  # type: ignore[arg-type]
        if "fields" in header and "tensor_dicts" in header:
            kwargs = dict(header["fields"])
            for name, keys in header["tensor_dicts"].items():
                kwargs[name] = {k: tensors.pop(f"{name}/{k}") for k in keys}
        else:
            kwargs = dict(header)
        kwargs.update(tensors)
        kwargs = {k: v for k, v in kwargs.items() if k in names}  # values since derived are left out
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for k, v in kwargs.items():  # JSON turned tuples into lists
            if isinstance(v, list) and _is_tuple_type(types.get(k, "")):
                kwargs[k] = tuple(v)
        return cls(**kwargs)


def _is_tuple_type(annotation: str) -> bool:
    """``"tuple[float, float] | None"`` and the like: a tuple at the top level of the annotation."""
    return any(part.strip().startswith(("tuple[", "Tuple[")) for part in annotation.split("|"))
