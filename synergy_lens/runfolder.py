"""Run folders that never lose finished work: a writer lock, and results saved stage by stage.

What and why
------------
``synergy-lens run``/``demo``/``ablate``/``report`` write into one results folder
(:mod:`synergy_lens.view.results` describes the files and ``manifest.json``). A command
that fails, is interrupted or is killed part-way must leave every finished stage usable,
and two commands must never overwrite each other's results silently. So:

- :func:`lock_folder` takes ``.synergy-lens.lock`` in the folder (created with
  ``O_EXCL``; it holds the writer's pid, host and command) for as long as a command writes
  there. A second writer gets :class:`FolderLocked` naming the holder. A lock whose process
  is gone (killed with SIGKILL, say) is stale: it is removed with a warning.
- :class:`StageStore` saves each result as soon as it exists (atomically: the file, then
  the manifest entry, each by a rename), and only the results it adds: the manifest is
  re-read and merged under the lock, so ``ablate --from DIR`` adds ``ablation.pt`` and
  leaves the rest of the folder as it is.
- Every manifest entry records a ``key`` (a digest of the settings that made it), the
  SHA-256 of its file and the digests of the results it was computed from (``needs``). A
  rerun with the same settings loads a finished stage instead of recomputing it
  (:meth:`StageStore.cached`); an entry whose inputs were replaced by a newer result is
  dropped from the folder, so a folder never mixes two runs.

The manifest keeps the ``synergy_lens.Run/1`` format: :meth:`RunResults.load` reads a
folder written here as before (the extra keys are ignored).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synergy_lens._io import atomic_write_text

__all__ = ["LOCK", "FolderLocked", "StageStore", "check_writable", "digest", "lock_folder", "stage_result"]

LOCK = ".synergy-lens.lock"
_MANIFEST = "manifest.json"
_FORMAT = "synergy_lens.Run/1"


class FolderLocked(RuntimeError):
    """Another process is writing the results folder."""


def digest(obj: Any) -> str:
    """SHA-256 of a JSON-able object (sorted keys): the key of a stage's settings."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- writability


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it (then removed).

    Raises ``PermissionError``/``OSError`` with the folder named, before any work starts.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".synergy-lens-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise PermissionError(err.errno or errno.EACCES, f"cannot write in {folder} ({reason})") from None
    return folder


# ----------------------------------------------------------------------------- the lock


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and could be a synergy-lens command (a reused pid of another
    program, seen in ``/proc`` on Linux, does not count)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid
    return any(word in cmdline for word in (b"python", b"synergy"))


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def lock_folder(folder: str | Path, command: str = "") -> Iterator[Path]:
    """Hold the writer lock of ``folder`` (created if needed) inside the ``with`` block.

    Raises :class:`FolderLocked` when a live process holds it. A lock left by a process that
    no longer runs on this host, or an unreadable lock file older than a minute, is stale:
    it is removed with a ``UserWarning`` and taken.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": _dt.datetime.now().isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is None:
                try:
                    age = _dt.datetime.now().timestamp() - path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if age < 60:  # being written right now, most likely
                    raise FolderLocked(_locked_message(folder, path, None)) from None
                stale = "an unreadable lock file"
            elif holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                stale = f"a lock left by pid {holder.get('pid')} ({holder.get('command') or '?'}), which is no longer running"
            else:
                raise FolderLocked(_locked_message(folder, path, holder)) from None
            warnings.warn(f"{folder}: removing {stale}", UserWarning, stacklevel=3)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(me))
        break
    else:
        raise FolderLocked(_locked_message(folder, path, _read_lock(path)))
    try:
        yield folder
    finally:
        holder = _read_lock(path)
        if holder is not None and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _locked_message(folder: Path, path: Path, holder: dict[str, Any] | None) -> str:
    who = ("another process" if holder is None else
           f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or 'synergy-lens'}, "
           f"since {holder.get('started')})")
    return (f"{folder} is being written by {who}. Wait for it to finish, or write to another folder "
            f"(--out). If no such process is running, delete {path}.")


# ----------------------------------------------------------------------------- stages


class StageStore:
    """Saves a run's results into its folder one by one and finds finished ones again.

    Use it inside :func:`lock_folder` of the same folder (the manifest is read, merged and
    written back on every save; the lock makes that safe).

    Args:
        folder: the results folder.
        settings: merged into the manifest's settings on every save.
        resume: when False, :meth:`cached` finds nothing (everything is recomputed).
    """

    def __init__(self, folder: str | Path, *, settings: dict[str, Any] | None = None, resume: bool = True) -> None:
        self.folder = Path(folder).expanduser()
        self.settings = dict(settings or {})
        self.resume = resume
        self.touched: set[str] = set()  # written or confirmed in this session
        self.skipped: list[str] = []  # stages found finished and loaded

    # -- manifest ----------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        path = self.folder / _MANIFEST
        if not path.is_file():
            return {"format": _FORMAT, "settings": {}, "meta": {}, "items": {}}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{path}: expected the JSON manifest of a results folder, found invalid "
                             f"JSON ({err}); delete it to start the folder over") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path}: expected a manifest of format {_FORMAT!r}, found "
                             f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
        data.setdefault("items", {})
        data.setdefault("settings", {})
        return data

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        from synergy_lens import __version__

        manifest["format"] = _FORMAT
        manifest["version"] = __version__
        manifest["created"] = _dt.datetime.now().isoformat(timespec="seconds")
        manifest["settings"] = {**manifest.get("settings", {}), **self.settings}
        atomic_write_text(self.folder / _MANIFEST, json.dumps(manifest, indent=1, default=str))

    def sha(self, name: str) -> str | None:
        """The SHA-256 recorded for ``name`` (None if absent)."""
        entry = self.manifest()["items"].get(name)
        return None if entry is None else entry.get("sha256")

    # -- saving ------------------------------------------------------------------------
    def save(self, name: str, obj: Any, *, key: str | None = None, needs: tuple[str, ...] | None = None,
             file: str | None = None) -> None:
        """Write ``obj`` (atomically) and its manifest entry; drop entries it makes stale.

        ``needs``: names of the results ``obj`` was computed from (default: ``activity`` and
        ``phiid`` where present); their digests are recorded, and the entry is dropped if
        one of them is later replaced by a different result.
        """
        from synergy_lens.view.results import RunResults, _default_file, _type_name, _write_item

        if obj is None:
            return
        RunResults().add(name, obj, file=file)  # validates the name
        kind = _type_name(obj)
        file = file or _default_file(name, kind)
        path = self.folder / file
        _write_item(path, name, obj, kind)
        manifest = self.manifest()
        items = manifest["items"]
        if needs is None:
            needs = () if name == "activity" else tuple(n for n in ("activity", "phiid") if n != name and n in items)
        entry = {"file": file, "type": kind, "key": key,
                 "sha256": _file_sha(path) if path.is_file() else None,
                 "needs": {n: items.get(n, {}).get("sha256") for n in needs}}
        items[name] = entry
        self.touched.add(name)
        self._prune(manifest)
        self._write_manifest(manifest)

    def _prune(self, manifest: dict[str, Any]) -> None:
        """Drop entries (not written in this session) whose inputs have changed."""
        items = manifest["items"]
        changed = True
        while changed:
            changed = False
            for name, entry in list(items.items()):
                if name in self.touched:
                    continue
                needs = entry.get("needs")
                if needs is None:  # written before stages were tracked: trust it only with its activity
                    needs = {} if name == "activity" else {"activity": None}
                    if "activity" not in self.touched:
                        continue
                if any(n not in items or items[n].get("sha256") != s for n, s in needs.items()):
                    del items[name]
                    self._remove_file(entry.get("file"))
                    changed = True

    def _remove_file(self, file: str | None) -> None:
        if not file:
            return
        path = self.folder / file
        with contextlib.suppress(OSError):
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                import shutil

                shutil.rmtree(path)

    def update_settings(self, settings: dict[str, Any]) -> None:
        self.settings.update(settings)
        self._write_manifest(self.manifest())

    # -- resuming ----------------------------------------------------------------------
    def cached(self, name: str, key: str) -> Any:
        """The saved ``name`` when it was made with ``key`` from the current inputs, else None.

        A file that is missing, altered or unreadable is reported with a warning and
        recomputed.
        """
        if not self.resume:
            return None
        items = self.manifest()["items"]
        entry = items.get(name)
        if entry is None or entry.get("key") != key:
            return None
        needs = entry.get("needs") or {}
        if any(n not in items or items[n].get("sha256") != s for n, s in needs.items()):
            return None
        path = self.folder / entry["file"]
        try:
            if path.is_file() and _file_sha(path) != entry.get("sha256"):
                raise ValueError("its contents changed since it was saved")
            from synergy_lens.view.results import _load_item

            obj = _load_item(path, entry["type"])
        except (OSError, ValueError, TypeError, KeyError) as err:
            warnings.warn(f"{path}: not reused ({err}); computing {name} again", UserWarning, stacklevel=2)
            return None
        self.touched.add(name)
        self.skipped.append(name)
        return obj

    # -- the recording's checkpoint ------------------------------------------------------
    def recording_checkpoint(self, key: Any) -> Path:
        """The checkpoint file of a recording with these settings (one per settings, so a
        run with other settings in the same folder neither resumes nor refuses it)."""
        return self.folder / f".recording-{digest(key)[:16]}.ckpt"

    def remove_checkpoint(self, path: str | Path | None) -> None:
        """Delete a finished recording's checkpoint (its result is saved as ``activity``)."""
        if path is not None and "activity" in self.touched:
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()

    # -- wiring into a pipeline ------------------------------------------------------------
    def flush(self, run: Any) -> None:
        """Save every item of ``run`` (a ``RunResults``) not yet saved in this session."""
        for name, obj in list(run.items.items()):
            if name not in self.touched:
                self.save(name, obj, file=run._files.get(name))
        run.folder = self.folder

    def saving_stages(self, stages: Any, run: Any) -> Any:
        """Wrap a ``stages(text)`` callback: before each new step, save what the last one added."""

        def announce(text: str) -> None:
            self.flush(run)
            stages(text)

        return announce


def stage_result(store: StageStore | None, run: Any, name: str, key: Any, compute: Any, *,
                 needs: tuple[str, ...] | None = None, file: str | None = None) -> Any:
    """``compute()`` unless ``store`` holds ``name`` made with ``key``; the result is saved
    (when there is a store) and added to ``run`` under ``name``."""
    if store is None:
        obj = compute()
    else:
        k = digest(key)
        obj = store.cached(name, k)
        if obj is None:
            obj = compute()
            store.save(name, obj, key=k, needs=needs, file=file)
    run.add(name, obj, file=file)
    return obj
