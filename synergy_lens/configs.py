"""Run configurations as dataclasses (no heavy imports: the CLI builds its options from them
before torch loads).

Each field is one option, declared once: its name, type (``Literal`` for a closed set of
choices), default and help text live here, and both :func:`synergy_lens.analyse` and the
command line (``synergy-lens run``/``demo``/``ablate``) are built from them. A run saves
each stage's config as ``dataclasses.asdict`` with its results (``run.settings["record"]``,
``["decompose"]``, ``["analysis"]``, ``["ablation"]``, ``["view"]``).

- :class:`RecordConfig`: generation and recording (``record_head_activity``);
- :class:`DecomposeConfig`: PhiID (``decompose``);
- :class:`AnalysisConfig`: scores, profiles, core, the null tests, the control model;
- :class:`AblationConfig`: the short ablation curve (paper (B), ablation 1);
- :class:`ViewConfig`: what the CircuitsVis views show;
- :class:`RunConfig`: all of them, with flat option names (``max_new_tokens``, ``tau``,
  ``ablation_steps``, ...) for keyword use: ``RunConfig().replace(tau=2, n_boot=0)``.
- :class:`SweepConfig`: the analysis of each checkpoint in :func:`synergy_lens.checkpoint_sweep`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

__all__ = [
    "CONTROLS",
    "QUICK",
    "ROBUSTNESS_NAMES",
    "SCORE_NAMES",
    "AblationConfig",
    "AnalysisConfig",
    "DecomposeConfig",
    "Option",
    "RecordConfig",
    "RunConfig",
    "ScoreName",
    "SweepConfig",
    "ViewConfig",
    "fields_of",
    "options",
]

ScoreName = Literal["rank_gradient", "syn_minus_red", "synergy_fraction"]
SCORE_NAMES: tuple[str, ...] = get_args(ScoreName)
"""The three headline scores (docs/science.md, "Scores and their sources")."""

CoreScore = Literal["rank_gradient", "syn_minus_red", "synergy_fraction", "mean_sts", "mean_rtr"]
Robustness = Literal["detrended", "pooled", "tau10", "ccs"]
ROBUSTNESS_NAMES: tuple[str, ...] = get_args(Robustness)
Control = Literal["none", "perturb", "random_init"]
UnitKindName = Literal["heads", "attn", "mlp", "mlp_neurons", "experts"]
CONTROLS: tuple[str, ...] = get_args(Control)


@dataclass(frozen=True)
class Option:
    """How a config field appears on the command line (kept in the field's metadata)."""

    help: str
    flag: str | None = None
    """The command-line flag; default ``--`` + the flat name with ``-`` for ``_``."""
    minimum: int | None = None
    """Integers: the smallest value accepted."""
    fraction: tuple[float, float] | None = None
    """Floats: accepted in ``(low, high]``."""
    invert: bool = False
    """Booleans: the flag sets the field to False (``--full-length`` -> ``stop_at_eos=False``)."""
    cli: bool = True
    """False: a keyword of ``analyse`` only, not a command-line option."""
    metavar: str | None = None


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its command-line description."""
    return field(default=default, metadata={"option": Option(help=help, **kwargs)})


class _Checked:
    """Configs check their values when made (the same messages as the command line's), and
    keep sequences as tuples (JSON gives lists) so that they stay hashable."""

    stage: ClassVar[str]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
            _check(type(self), f.name, getattr(self, f.name), _flat(self.stage, f.name))


@dataclass(frozen=True)
class RecordConfig(_Checked):
    """Generation and recording: what ``record_head_activity`` is given."""

    stage: ClassVar[str] = "record"

    max_new_tokens: int = option(100, "tokens generated per prompt: the length of each head's time series "
                                      "(paper (B): 100)", minimum=8, metavar="N")
    batch_size: int = option(8, "prompts generated and recorded together", minimum=1, metavar="N")
    chat_template: Literal["auto", "yes", "no"] = option(
        "auto", "wrap prompts in the tokenizer's chat template (auto: when it has one)")
    stop_at_eos: bool = option(
        True, "keep generating past EOS so every series has exactly --max-new-tokens steps, the model's own "
              "tokens after its EOS (default: a prompt's series ends at its EOS)", flag="--full-length", invert=True)
    min_steps: int | None = option(
        None, "shortest answer (generated tokens) that enters PhiID; shorter answers (ended at EOS) are left out "
              "with a warning naming them (default: max(8, tau + 5))", minimum=4, metavar="N")
    units: UnitKindName = option(
        "heads", "the units: attention heads (the papers'), whole attention or MLP sub-layers, MLP neurons, "
                 "or mixture-of-experts experts")
    layers: str | None = option(
        None, "record these layers only: indices like 0,6,12 or spread:K (K layers spread over depth); "
              "default every layer", flag="--unit-layers", metavar="LAYERS")

    def chat(self) -> bool | None:
        """``chat_template`` as ``record_head_activity`` takes it (None: when the tokenizer has one)."""
        return {"auto": None, "yes": True, "no": False}[self.chat_template]

    def record_kwargs(self) -> dict[str, Any]:
        """The keywords of ``record_activity`` (the units only when not every layer's heads, so
        that the stage keys of earlier runs stay the same)."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
                              "chat_template": self.chat(), "stop_at_eos": self.stop_at_eos}
        if self.units != "heads":
            kw["units"] = self.units
        if self.layers is not None:
            kw["layers"] = self.layers
        return kw


@dataclass(frozen=True)
class DecomposeConfig(_Checked):
    """PhiID: what ``decompose`` is given."""

    stage: ClassVar[str] = "decompose"

    tau: int = option(1, "PhiID lag in generated tokens", minimum=1)
    redundancy: Literal["MMI", "CCS"] = option("MMI", "redundancy function of PhiID (papers: MMI)")
    aggregate: Literal["mean_over_prompts", "pooled"] = option(
        "mean_over_prompts", "PhiID per prompt then averaged (papers), or one estimate from pooled statistics")


@dataclass(frozen=True)
class AnalysisConfig(_Checked):
    """Scores, layer profiles, the core, the null tests and the control model."""

    stage: ClassVar[str] = "analysis"

    score: CoreScore = option(
        "rank_gradient", "per-head score that defines the core and the main profile (rank_gradient: the text of "
                         "paper (B); syn_minus_red: its released code; the profiles of rank_gradient, syn_minus_red "
                         "and synergy_fraction are always saved and tested)")
    q: float = option(0.25, "fraction of heads in the synergistic core (and in the memory group)",
                      flag="--core-fraction", fraction=(0.0, 0.5), metavar="Q")
    n_boot: int = option(1000, "bootstrap resamples of prompts for the profile band and CIs (0: none)",
                         minimum=0, metavar="N")
    density: float = option(0.10, "fraction of head pairs kept as edges in the synergy/redundancy graphs",
                            fraction=(0.0, 1.0))
    seed: int = option(0, "seed of the bootstrap, controls and ablation orders")
    control: Control = option(
        "none", "also analyse a randomised control (perturb: N(0, 10^2) noise on every weight, paper (B)); "
                "doubles the run time")
    n_surrogates: int = option(
        19, "circular-shift surrogates (each head keeps its own dynamics) against which every score's layer "
            "profile is tested, also per robustness choice; the smallest p is 1/(N+1) (19: 0.05, 99: 0.01); "
            "0: no test", minimum=0, metavar="N")
    robustness: tuple[Robustness, ...] = option(
        ("detrended", "pooled", "tau10"),
        "analysis choices re-run, one change each from tau 1 / raw series / mean over prompts / MMI, each tested "
        "against its own surrogate null: detrended (first differences), pooled (one estimate from all prompts), "
        "tau10, ccs (slow: per-sample redundancy); 'none' for none", metavar="CHOICE")
    exclude_unstable: bool = option(
        False, "leave heads whose series are too coarse for a stable PhiID estimate out of every score (by "
               "default they are only marked)")


@dataclass(frozen=True)
class AblationConfig(_Checked):
    """The short ablation curve: heads zeroed cumulatively in score order vs random orders."""

    stage: ClassVar[str] = "ablation"

    prompts: int = option(12, "prompts of the run used for the divergence", minimum=1, metavar="N")
    tokens: int = option(48, "generated tokens compared per prompt", minimum=2, metavar="N")
    steps: int = option(10, "points on the curve", minimum=1, metavar="N")
    seeds: int = option(3, "random orders for the baseline spread", minimum=1, metavar="N")
    mode: str = option("zero", "how a head is removed (a registered ablation mode)")


@dataclass(frozen=True)
class ViewConfig(_Checked):
    """What the CircuitsVis views of a run show."""

    stage: ClassVar[str] = "view"

    attention_heads: int = option(6, "how many top heads the attention view shows", cli=False)
    view_prompt: int = option(0, "the prompt shown in the CircuitsVis views", cli=False)


QUICK: dict[str, Any] = {"max_new_tokens": 40, "n_boot": 200, "ablation_prompts": 4, "ablation_tokens": 24,
                         "ablation_seeds": 2, "ablation_steps": 6}
"""``demo --quick``: the flat options that differ from the defaults (a minute or two on a CPU)."""

_STAGES: dict[str, type] = {"record": RecordConfig, "decompose": DecomposeConfig, "analysis": AnalysisConfig,
                            "ablation": AblationConfig, "view": ViewConfig}


def _flat(stage: str, name: str) -> str:
    return f"ablation_{name}" if stage == "ablation" else name


def options(stage: str | None = None) -> Iterator[tuple[str, str, dataclasses.Field[Any], Option]]:
    """``(stage, flat name, field, Option)`` of every option (of one stage), in declaration order."""
    for s, cls in _STAGES.items():
        if stage is None or s == stage:
            for f in dataclasses.fields(cls):
                yield s, _flat(s, f.name), f, f.metadata["option"]


def field_type(cls: type, name: str) -> Any:
    """The resolved annotation of a config field (``from __future__`` keeps them as strings)."""
    return typing.get_type_hints(cls)[name]


def choices(tp: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal`` (or a tuple of one) allows; None for an open type."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return get_args(tp)
    if origin is tuple:
        return choices(get_args(tp)[0])
    return None


def _check(cls: type, name: str, value: Any, flat: str) -> None:
    """One field's value against its type's choices and its option's range."""
    tp = field_type(cls, name)
    allowed = choices(tp)
    if allowed is not None:
        values = value if typing.get_origin(tp) is tuple else (value,)
        if typing.get_origin(tp) is tuple and isinstance(value, str):
            raise ValueError(f"{flat} takes a sequence of {list(allowed)}, got the string {value!r}")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{flat}={value!r}: {bad[0]!r} is not allowed; it must be one of {list(allowed)}")
    opt = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("option")
    if opt is None:
        return
    if opt.minimum is not None and value is not None and (not isinstance(value, int) or value < opt.minimum):
        raise ValueError(f"{flat} must be an integer >= {opt.minimum}, got {value!r}")
    if opt.fraction is not None:
        low, high = opt.fraction
        if not isinstance(value, (int, float)) or not low < value <= high:
            raise ValueError(f"{flat} must be in ({low}, {high}], got {value!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything :func:`synergy_lens.analyse` does, one config per stage.

    ``ablation=None`` skips the ablation curve. ``RunConfig.from_options(tau=2, ...)`` and
    ``config.replace(...)`` take the flat option names (``ablation_`` + a field of
    :class:`AblationConfig`); ``asdict()`` is what a run saves.
    """

    record: RecordConfig = field(default_factory=RecordConfig)
    decompose: DecomposeConfig = field(default_factory=DecomposeConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    ablation: AblationConfig | None = None
    view: ViewConfig = field(default_factory=ViewConfig)

    @classmethod
    def from_options(cls, **flat: Any) -> RunConfig:
        """The default config with these flat options changed."""
        return cls().replace(**flat)

    def replace(self, **flat: Any) -> RunConfig:
        """A copy with flat options changed; any ``ablation_*`` option turns the ablation on."""
        known = {n: (s, f.name) for s, n, f, _ in options()}
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; the options are: {', '.join(known)}")
        parts: dict[str, dict[str, Any]] = {}
        for n, value in flat.items():
            s, name = known[n]
            parts.setdefault(s, {})[name] = value
        changed: dict[str, Any] = {}
        for s, values in parts.items():
            current = getattr(self, s)
            if current is None:  # ablation off: the given options on top of the defaults
                current = _STAGES[s]()
            changed[s] = dataclasses.replace(current, **values)
        return dataclasses.replace(self, **changed)

    def flat(self) -> dict[str, Any]:
        """Every option by its flat name (the ablation's only when it is on)."""
        return {n: getattr(getattr(self, s), f.name) for s, n, f, _ in options() if getattr(self, s) is not None}

    def asdict(self) -> dict[str, Any]:
        """``{stage: asdict(config)}``: what a run saves as its settings (JSON-able)."""
        out: dict[str, Any] = {}
        for s in _STAGES:
            cfg = getattr(self, s)
            out[s] = None if cfg is None else {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in dataclasses.asdict(cfg).items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`asdict` (unknown keys are an error naming them)."""
        kwargs: dict[str, Any] = {}
        for s, sub in data.items():
            if s not in _STAGES:
                raise ValueError(f"unknown config section {s!r}; sections: {list(_STAGES)}")
            kwargs[s] = None if sub is None else _STAGES[s](**sub)
        return cls(**kwargs)


def is_optional(tp: Any) -> bool:
    """``X | None``."""
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in get_args(tp)


@dataclass(frozen=True)
class SweepConfig(_Checked):
    """The analysis that :func:`synergy_lens.checkpoint_sweep` runs on every checkpoint
    (``synergy-lens sweep`` takes its options from these fields)."""

    stage: ClassVar[str] = "sweep"

    max_new_tokens: int = option(48, "tokens generated per prompt (each prompt runs to full length)", minimum=8)
    batch_size: int = option(8, "prompts generated and recorded together", minimum=1)
    stop_at_eos: bool = option(False, "end a prompt's series at its EOS (a sweep compares checkpoints on "
                                      "full-length series)", cli=False)
    tau: int = option(1, "PhiID lag in generated tokens", minimum=1)
    score: ScoreName = option("syn_minus_red", "score whose core, ranks and stability the sweep follows")
    scores: tuple[ScoreName, ...] = option(SCORE_NAMES, "scores profiled and tested on every checkpoint", cli=False)
    q: float = option(0.25, "core = the top q of heads by --score", fraction=(0.0, 1.0))
    n_surrogates: int = option(19, "autocorrelation-null replicates per checkpoint (19 gives p >= 0.05)",
                               minimum=1)
    n_boot: int = option(500, "bootstrap resamples over prompts", minimum=0)
    seed: int = option(0, "seed of the bootstrap and the surrogates")


def fields_of(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """``(field, Option)`` of every field of a config class that is a command-line option."""
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("option")
        if opt is not None and opt.cli:
            yield f, opt
