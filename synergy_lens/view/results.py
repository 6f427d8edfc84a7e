"""A run folder: every result of one analysis saved as files that load back.

What and why
------------
``synergy-lens run``/``demo`` write their results to a folder, and ``synergy-lens report``
or ``ablate`` (or a notebook) read them back later without the model. Each result is saved
by its own ``save`` method (plain tensors and JSON, never a pickle), and
``manifest.json`` records which file holds what and which class reads it back, plus the
settings of the run::

    run/
      manifest.json       format, settings, created, synergy-lens version, items
      activity.pt         HeadActivity          (record_head_activity)
      phiid.pt            PhiIDResult           (decompose)
      scores.pt           HeadScores            (synergy_scores)
      profile_<score>.pt  LayerProfile          (layer_profile, one per score)
      core.pt             Core                  (find_core)
      topology.csv        DataFrame             (topology_table)
      ablation.pt         ablation curves       (intervene.ablation_curve)
      attention.pt        HeadAttention         (view.circuits.head_attention)
      tokens.json         generated tokens as strings, per prompt
      ...                 anything else added with :meth:`RunResults.add`

Only classes inside the ``synergy_lens`` package (and pandas tables, JSON) are ever
loaded, so opening a folder cannot import arbitrary code.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synergy_lens._io import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

    from synergy_lens.analysis import Core, HeadScores, LayerProfile
    from synergy_lens.analysis.controls import ControlComparison
    from synergy_lens.analysis.headline import Headline
    from synergy_lens.analysis.robustness import Robustness
    from synergy_lens.analysis.stability import UnitStability
    from synergy_lens.analysis.surrogates import SurrogateTest
    from synergy_lens.analysis.uncertainty import RankUncertainty
    from synergy_lens.intervene import AblationCurve
    from synergy_lens.phiid import PhiIDResult
    from synergy_lens.record import HeadActivity
    from synergy_lens.record.attention import HeadAttention

__all__ = ["MANIFEST", "RunResults"]

MANIFEST = "manifest.json"
_FORMAT = "synergy_lens.Run/1"


def _type_name(obj: Any) -> str:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return "pandas.DataFrame"
    if isinstance(obj, (dict, list, str, int, float)) or obj is None:
        return "json"
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def _default_file(name: str, kind: str) -> str:
    if kind == "pandas.DataFrame":
        return f"{name}.csv"
    if kind == "json":
        return f"{name}.json"
    return f"{name}.pt"


def _write_item(path: Path, name: str, obj: Any, kind: str) -> None:
    """Write one result atomically: a DataFrame as CSV, JSON-able data as JSON, else ``save``."""
    if kind == "pandas.DataFrame":
        atomic_write_text(path, obj.to_csv(na_rep="NaN"))  # "" stays an empty string on reading
    elif kind == "json":
        atomic_write_text(path, json.dumps(obj, indent=1))
    elif hasattr(obj, "save"):
        obj.save(path)
    else:
        raise TypeError(f"cannot save {name!r}: a {type(obj).__name__} has no save() method")


@dataclass
class RunResults:
    """The results of one run (what :func:`synergy_lens.analyse` returns), one typed field
    per result; a field is None when the run did not make that result.

    ``run.scores`` and ``run["scores"]`` are the same object: the mapping form (``run[name]``,
    ``name in run``, ``run.get(name)``, ``run.items``) names the results as their files do,
    with ``profile_<score>`` for the entries of ``profiles``. Results of other names added
    with :meth:`add` live in ``extra``.

    Attributes:
        activity .. tokens: the results (see :func:`synergy_lens.analyse`).
        profiles: ``{score: LayerProfile}``, one per profiled score.
        extra: name -> any other result (``save``/``load``-able, a DataFrame or JSON-able).
        settings: the settings used (the configs' ``asdict`` and the command's facts).
        folder: where it was loaded from / saved to, if anywhere.
    """

    activity: HeadActivity | None = None
    phiid: PhiIDResult | None = None
    stability: UnitStability | None = None
    scores: HeadScores | None = None
    layer_profiles: dict[str, LayerProfile] = field(default_factory=dict)
    core: Core | None = None
    ranks: RankUncertainty | None = None
    headline: Headline | None = None
    surrogates: SurrogateTest | None = None
    robustness: Robustness | None = None
    layer_summary: pd.DataFrame | None = None
    topology: pd.DataFrame | None = None
    control: ControlComparison | None = None
    ablation: AblationCurve | None = None
    attention: HeadAttention | None = None
    tokens: list[list[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _files: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, name: str, obj: Any, *, file: str | None = None) -> RunResults:
        """Store a result under ``name`` (a file-name-safe word); ``None`` is ignored.

        ``file`` overrides the file name in the folder (e.g. a result whose ``save`` writes
        a folder of its own, such as ``ControlComparison``).
        """
        if obj is None:
            return self
        for word in (name, file or "x"):
            if not word.replace("_", "").replace(".", "").isalnum() or word.startswith("."):
                raise ValueError(f"result name {word!r} must be letters, digits, '_' and '.'")
        if name in _RESULT_FIELDS:
            setattr(self, name, obj)
        elif name.startswith("profile_"):
            self.layer_profiles[name.removeprefix("profile_")] = obj
        else:
            self.extra[name] = obj
        if file is not None:
            self._files[name] = file
        return self

    @property
    def items(self) -> dict[str, Any]:
        """Every result by its name (the file names' stems), in the order of the fields."""
        out: dict[str, Any] = {}
        for name in _RESULT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
            if name == "scores":  # the profiles sit after the scores they profile
                out.update({f"profile_{k}": v for k, v in self.layer_profiles.items()})
        out.update(self.extra)
        return out

    def _lookup(self, name: str) -> Any:
        """The result called ``name`` (None when absent), found where ``add`` put it."""
        if name in _RESULT_FIELDS:
            return getattr(self, name)
        if name.startswith("profile_"):
            return self.layer_profiles.get(name.removeprefix("profile_"))
        return self.extra.get(name)

    def get(self, name: str, default: Any = None) -> Any:
        value = self._lookup(name)
        return default if value is None else value

    def __contains__(self, name: str) -> bool:
        return self._lookup(name) is not None

    def __getitem__(self, name: str) -> Any:
        value = self._lookup(name)
        if value is None:
            raise KeyError(f"this run has no {name!r}; it has {sorted(self.items)}")
        return value

    def profiles(self) -> dict[str, LayerProfile]:
        """``{score: LayerProfile}``: the layer profile of every profiled score."""
        return dict(self.layer_profiles)

    def __repr__(self) -> str:
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        return f"RunResults(items={sorted(self.items)}{where})"

    # -- persistence -------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write every item with its own ``save`` and a ``manifest.json``; returns the folder."""
        from synergy_lens import __version__

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        entries = {}
        for name, obj in self.items.items():
            kind = _type_name(obj)
            file = self._files.get(name) or _default_file(name, kind)
            _write_item(folder / file, name, obj, kind)
            entries[name] = {"file": file, "type": kind}
        manifest = {
            "format": _FORMAT,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "version": __version__,
            "settings": self.settings,
            "meta": self.meta,
            "items": entries,
        }
        atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, default=str))
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, only: list[str] | None = None) -> RunResults:
        """Read a folder written by :meth:`save` (``only``: load just these names)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no results folder at {folder}")
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {MANIFEST}: it is not a synergy-lens results folder "
                "(make one with `synergy-lens run --out DIR` or `synergy-lens demo`)"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{manifest_path} is not valid JSON ({err.msg})") from err
        if manifest.get("format") != _FORMAT:
            raise ValueError(f"{manifest_path} has format {manifest.get('format')!r}, expected {_FORMAT!r}")
        run = cls(settings=manifest.get("settings", {}), folder=folder, meta=manifest.get("meta", {}))
        run.meta.setdefault("created", manifest.get("created"))
        run.meta.setdefault("version", manifest.get("version"))
        for name, entry in manifest.get("items", {}).items():
            if only is not None and name not in only:
                continue
            run.add(name, _load_item(folder / entry["file"], entry["type"]))
            run._files[name] = entry["file"]
        return run


def _load_item(path: Path, kind: str) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"the results folder lists {path.name} but it is missing")
    if kind == "pandas.DataFrame":
        import pandas as pd

        return pd.read_csv(path, index_col=0, keep_default_na=False, na_values=["NaN"])
    if kind == "json":
        return json.loads(path.read_text(encoding="utf-8"))
    module, _, qualname = kind.partition(":")
    if not (module == "synergy_lens" or module.startswith("synergy_lens.")) or not qualname:
        raise ValueError(f"refusing to load {path.name}: type {kind!r} is not a synergy_lens class")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj.load(path)


_RESULT_FIELDS = ("activity", "phiid", "stability", "scores", "core", "ranks", "headline", "surrogates", "robustness",
                  "layer_summary", "topology", "control", "ablation", "attention", "tokens")
"""The typed results of a run, by the names their files carry."""
