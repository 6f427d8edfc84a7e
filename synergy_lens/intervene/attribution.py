"""Integrated gradients per layer and per head (paper (A), "integrated gradients").

What and why
------------
Integrated gradients (Sundararajan, Taly & Yan 2017) attribute a scalar output f to the
elements of an input x relative to a baseline b:

    IG_i = (x_i - b_i) * integral_0^1  df/dx_i (b + alpha (x - b)) d alpha

and satisfy *completeness*: sum_i IG_i = f(x) - f(b). Paper (A) uses IG to ask which
layers matter for an answer but gives no protocol, so the choices are ours and are
parameters here:

- **target** f: the log-probability of the answer token at a position (default: the
  last position of the prompt, which predicts the answer), or any callable on the logits.
- **where** the activation is interpolated (``point``), always through TransformerLens
  hooks that *replace* the activation by ``b + alpha (x - b)`` with x the clean activation:

  ======================  ===========================================  ===================
  point                   hook(s), interpolated together               attributions
  ======================  ===========================================  ===================
  ``"z"``                 ``blocks.{L}.attn.hook_z`` of every layer    ``[layer, head]``
  ``"writes"``            ``hook_attn_out`` and ``hook_mlp_out`` of     ``[layer]``
                          every layer (what each layer writes)
  ``"attn_out"``          ``hook_attn_out`` of every layer             ``[layer]``
  ``"mlp_out"``           ``hook_mlp_out`` of every layer              ``[layer]``
  ``"resid_pre"``         ``blocks.{L}.hook_resid_pre``, one layer at  ``[layer]``
                          a time (a separate IG run per layer)
  ======================  ===========================================  ===================

  With a joint point, every hooked activation is a separate input of one function f, so
  completeness holds over all of them at once: the attributions over all layers (and
  heads) sum to f(clean) - f(all at baseline). Because each hook replaces its activation
  by a value fixed by alpha, gradients flow only along paths that do not pass through
  another hooked activation (e.g. for ``"z"``: through the MLPs and the residual stream).
  With ``"resid_pre"`` each layer is its own IG run and each layer's attributions sum to
  f(clean) - f(residual stream at baseline at that layer).
- **baseline**: ``"zeros"``, ``"mean_pos"`` (the activation averaged over the prompt's
  positions) or a callable ``(activation [1, pos, ...], layer) -> baseline``. Default:
  zeros for the joint points, ``"mean_pos"`` for ``"resid_pre"``: the blocks read the
  residual stream through RMSNorm/LayerNorm, which is scale invariant, so on the path
  ``alpha * x`` from a zero residual f jumps within a tiny interval near alpha = 0 (the
  gradient grows like 1/alpha) and no quadrature resolves it; the completeness error shows
  it (it stays large however many steps).
- **quadrature** (``method``): ``"gauss_legendre"`` (default; exact for polynomials of
  degree < 2 * steps, so few steps suffice on smooth paths), ``"trapezoid"``,
  ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"`` (captum's names), or
  ``"adaptive"``: f is first scanned at ``2 * steps + 1`` points, refined where it jumps
  (forward passes only), and composite Gauss-Legendre segments are packed where f changes
  fast (:func:`adaptive_nodes`). Real paths can be nearly discontinuous: on SmolLM2, scaling
  every head's z by alpha moves the answer's log-probability from -17 to -2 within
  alpha in [0.33, 0.36], and fixed rules then miss the jump (a completeness error of
  several nats that does not shrink with steps). The alpha steps are batched along the
  batch dimension (``batch_size`` per forward/backward pass).

The result reports the completeness error of every run; the tests check it (tiny models:
below 1e-4 of |f(x) - f(b)| with 32 Gauss-Legendre steps, and shrinking with more steps).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from synergy_lens import hooks as H
from synergy_lens._io import SavedFields
from synergy_lens._repr import SummaryRepr
from synergy_lens.models.adapter import ModelAdapter, adapt

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["IGResult", "POINTS", "QUADRATURES", "adaptive_nodes", "integrated_gradients", "quadrature"]


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1) / 2, w / 2


def _trapezoid(n: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError("the trapezoid rule needs steps >= 2")
    w = np.full(n, 1.0 / (n - 1))
    w[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), w


QUADRATURES: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
    "gauss_legendre": _gauss_legendre,
    "trapezoid": _trapezoid,
    "riemann_left": lambda n: (np.arange(n) / n, np.full(n, 1.0 / n)),
    "riemann_right": lambda n: ((np.arange(n) + 1) / n, np.full(n, 1.0 / n)),
    "riemann_middle": lambda n: ((np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)),
}
"""Quadrature rules on [0, 1]: name -> ``steps -> (alphas, weights)``."""

POINTS: dict[str, tuple[Callable[[int], str], ...]] = {
    "z": (H.hook_z,),
    "writes": (H.hook_attn_out, H.hook_mlp_out),
    "attn_out": (H.hook_attn_out,),
    "mlp_out": (H.hook_mlp_out,),
    "resid_pre": (H.hook_resid_pre,),
}
"""Where activations are interpolated: name -> hook-name functions of the layer."""


def quadrature(method: str, steps: int) -> tuple[Tensor, Tensor]:
    """``(alphas, weights)`` in float64 for a rule in :data:`QUADRATURES`."""
    if method not in QUADRATURES:
        raise ValueError(f"unknown quadrature {method!r}; use one of {sorted(QUADRATURES)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    a, w = QUADRATURES[method](steps)
    return torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64)


@dataclass(repr=False)
class IGResult(SummaryRepr, SavedFields):
    """Integrated-gradients attributions, per prompt.

    Attributions are in the units of f (nats of log-probability by default).

    Attributes:
        attributions: ``[prompt, layer, head]`` for ``point="z"``, else ``[prompt, layer]``.
        per_position: the same with a trailing ``pos`` axis (NaN past a prompt's length).
        components: for ``point="writes"``: ``{"attn_out": [prompt, layer], "mlp_out": ...}``.
        f_input: f on the clean input, ``[prompt]``.
        f_baseline: f with the activations at their baseline, ``[prompt, run]`` (one run for
            a joint point, one per layer for ``"resid_pre"``).
        completeness_error: ``sum(attributions of the run) - (f_input - f_baseline)``,
            ``[prompt, run]``.
        point, method, steps: the settings; meta: the rest (targets, model name).
    """

    FORMAT: ClassVar[str] = "synergy_lens.IGResult/1"

    attributions: Float[Tensor, "prompt layer *head"]
    per_position: Float[Tensor, "prompt layer *head pos"]
    components: dict[str, Float[Tensor, "prompt layer"]]
    f_input: Float[Tensor, " prompt"]
    f_baseline: Float[Tensor, "prompt run"]
    completeness_error: Float[Tensor, "prompt run"]
    point: str
    method: str
    steps: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def by_layer(self) -> Float[Tensor, " layer"]:
        """Mean over prompts of each layer's attribution (heads summed for ``"z"``)."""
        a = self.attributions
        return (a.sum(-1) if a.ndim == 3 else a).mean(0)

    @property
    def relative_error(self) -> float:
        """Largest ``|completeness error| / |f_input - f_baseline|`` over prompts and runs."""
        gap = (self.f_input[:, None] - self.f_baseline).abs().clamp_min(1e-12)
        return float((self.completeness_error.abs() / gap).max())

    def to_dataframe(self) -> pd.DataFrame:
        """One row per prompt, layer (and head): the attribution."""
        import pandas as pd

        rows = []
        a = self.attributions
        for p in range(a.shape[0]):
            for layer in range(a.shape[1]):
                if a.ndim == 3:
                    rows += [(p, layer, h, f"L{layer}H{h}", float(a[p, layer, h])) for h in range(a.shape[2])]
                else:
                    rows.append((p, layer, -1, f"L{layer}", float(a[p, layer])))
        return pd.DataFrame(rows, columns=["prompt", "layer", "head", "label", "attribution"])


def _as_sequences(adapter: ModelAdapter, prompts: Any) -> list[list[int]]:
    if isinstance(prompts, str):
        return [adapter.tokenize(prompts)]
    if isinstance(prompts, Tensor):
        t = prompts if prompts.ndim == 2 else prompts[None]
        return [list(map(int, row)) for row in t.tolist()]
    items = list(prompts)
    if items and all(isinstance(x, int) for x in items):
        return [items]
    out = [adapter.tokenize(x) if isinstance(x, str) else [int(t) for t in x] for x in items]
    if not out or not all(out):
        raise ValueError("integrated_gradients needs at least one non-empty prompt")
    return out


def _target_fns(
    adapter: ModelAdapter, targets: Any, n: int, position: int
) -> list[Callable[[Tensor], Tensor]]:
    if callable(targets):
        return [targets] * n
    items = list(targets) if isinstance(targets, (list, tuple)) else [targets] * n
    if len(items) != n:
        raise ValueError(f"{len(items)} targets for {n} prompts: give one per prompt")
    fns: list[Callable[[Tensor], Tensor]] = []
    for t in items:
        if isinstance(t, str):
            ids = adapter.tokenizer(t, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"target {t!r} has no tokens")
            t = ids[0]
        tok = int(t)

        fns.append(functools.partial(_log_prob, position=position, token=tok))
    return fns


def _short(name: str) -> str:
    """``"blocks.3.hook_attn_out"`` -> ``"attn_out"``."""
    return name.split(".")[-1].removeprefix("hook_")


def _log_prob(logits: Tensor, *, position: int, token: int) -> Tensor:
    """The default target: ``log p(token)`` at ``position``, one value per batch row."""
    return torch.log_softmax(logits[:, position].float(), dim=-1)[:, token]


def _replace(act: Tensor, *, hook: Any, value: Tensor) -> Tensor:
    return value


def _capture(act: Tensor, *, hook: Any, store: dict[str, Tensor], key: str) -> None:
    store[key] = act.detach().clone()


def _baseline(x: Tensor, layer: int, baseline: Any) -> Tensor:
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "mean_pos":
        return x.mean(1, keepdim=True).expand_as(x).clone()
    if callable(baseline):
        return torch.as_tensor(baseline(x, layer), dtype=x.dtype, device=x.device).expand_as(x)
    raise ValueError(f"unknown baseline {baseline!r}: use 'zeros', 'mean_pos' or a callable")


def _path_hooks(names: list[str], xs: list[Tensor], bs: list[Tensor], alphas: Tensor, grad: bool) -> tuple[list[H.FwdHook], list[Tensor]]:
    """Hooks that replace each activation by ``b + alpha (x - b)``, one alpha per batch row."""
    values = []
    for x, b in zip(xs, bs):
        av = alphas.to(x.device, x.dtype).view((len(alphas),) + (1,) * (x.ndim - 1))
        v = b + av * (x - b)
        values.append(v.requires_grad_(True) if grad else v)
    return [(n, functools.partial(_replace, value=v)) for n, v in zip(names, values)], values


def _f_along_path(
    adapter: ModelAdapter, ids: Tensor, names: list[str], xs: list[Tensor], bs: list[Tensor],
    f: Callable[[Tensor], Tensor], alphas: Tensor, batch_size: int,
) -> Tensor:
    """f at each alpha of the path (forward passes only)."""
    out = []
    with torch.no_grad():
        for chunk in alphas.split(batch_size):
            fwd, _ = _path_hooks(names, xs, bs, chunk, grad=False)
            out.append(f(adapter.forward(ids.expand(len(chunk), -1), fwd_hooks=fwd)).double().cpu())
    return torch.cat(out)


def adaptive_nodes(
    grid: Tensor, f_scan: Tensor, steps: int, order: int = 4, uniform: float = 1 / 3
) -> tuple[Tensor, Tensor]:
    """Composite Gauss-Legendre nodes concentrated where f changes fast along the path.

    ``f_scan`` holds f at the increasing points ``grid`` (0 to 1). The cumulative variation
    ``V(alpha) = sum |delta f| + uniform * (total variation) * alpha`` (with the default
    ``uniform=1/3`` a quarter of the segments are spread evenly, the rest follow the
    variation) is cut into ``steps // order`` equal parts; each part is one
    segment with ``order`` Gauss-Legendre nodes. A sharp transition of f (a nearly
    discontinuous path, which fixed rules miss) then gets many short segments. At a jump the
    error still falls only like 1/steps (the segments next to it straddle its edges), so
    read the completeness error of the result.
    """
    g = grid.double().numpy()
    dv = np.abs(np.diff(f_scan.double().numpy()))
    total = max(float(dv.sum()), 1e-12)
    v = np.concatenate([[0.0], np.cumsum(dv + uniform * total * np.diff(g))])
    k = max(1, steps // order)
    bounds = np.interp(np.linspace(0.0, v[-1], k + 1), v, g)
    bounds[0], bounds[-1] = 0.0, 1.0
    x, w = _gauss_legendre(order)
    lo, width = bounds[:-1, None], np.diff(bounds)[:, None]
    return (
        torch.as_tensor((lo + width * x).ravel(), dtype=torch.float64),
        torch.as_tensor((width * w).ravel(), dtype=torch.float64),
    )


def _scan(
    adapter: ModelAdapter, ids: Tensor, names: list[str], xs: list[Tensor], bs: list[Tensor],
    f: Callable[[Tensor], Tensor], steps: int, batch_size: int, rounds: int = 4, split: int = 8,
) -> tuple[Tensor, Tensor]:
    """f on a grid refined where it jumps: ``2 * steps + 1`` uniform points, then ``rounds``
    times every interval holding more than 5% of the variation is split ``split`` ways."""
    grid = torch.linspace(0, 1, 2 * steps + 1, dtype=torch.float64)
    fs = _f_along_path(adapter, ids, names, xs, bs, f, grid, batch_size)
    for _ in range(rounds):
        dv = (fs[1:] - fs[:-1]).abs()
        big = (dv > 0.05 * dv.sum()).nonzero().flatten().tolist()
        if not big:
            break
        new = torch.cat([
            torch.linspace(float(grid[i]), float(grid[i + 1]), split + 1, dtype=torch.float64)[1:-1]
            for i in big
        ])
        f_new = _f_along_path(adapter, ids, names, xs, bs, f, new, batch_size)
        grid, order = torch.cat([grid, new]).sort()
        fs = torch.cat([fs, f_new])[order]
    return grid, fs


def _run(
    adapter: ModelAdapter,
    ids: Tensor,
    names: list[str],
    xs: list[Tensor],
    bs: list[Tensor],
    f: Callable[[Tensor], Tensor],
    method: str,
    steps: int,
    batch_size: int,
) -> tuple[list[Tensor], float, float]:
    """One IG run over the hooks ``names`` together: attributions per hook, f(1), f(0)."""
    if method == "adaptive":
        grid, scan = _scan(adapter, ids, names, xs, bs, f, steps, batch_size)
        alphas, weights = adaptive_nodes(grid, scan, steps)
        f_ends = scan[[-1, 0]]
    else:
        alphas, weights = quadrature(method, steps)
        f_ends = _f_along_path(adapter, ids, names, xs, bs, f, torch.tensor([1.0, 0.0]), batch_size)
    grads = [torch.zeros_like(x[0], dtype=torch.float64) for x in xs]
    for a, w in zip(alphas.split(batch_size), weights.split(batch_size)):
        fwd, leaves = _path_hooks(names, xs, bs, a, grad=True)
        out = f(adapter.forward(ids.expand(len(a), -1), fwd_hooks=fwd))
        gs = torch.autograd.grad(out.sum(), leaves)
        for acc, g in zip(grads, gs):
            acc += (g.double() * w.to(g.device).view((-1,) + (1,) * (g.ndim - 1))).sum(0)
    attrs = [((x[0] - b[0]).double() * g) for x, b, g in zip(xs, bs, grads)]
    return attrs, float(f_ends[0]), float(f_ends[1])


def integrated_gradients(
    model: Any,
    prompts: Any,
    targets: Any,
    *,
    point: str = "writes",
    steps: int = 32,
    method: str = "gauss_legendre",
    baseline: Any = None,
    position: int = -1,
    batch_size: int = 16,
    progress: bool = False,
) -> IGResult:
    """Integrated gradients of a target's log-probability, per layer or per head.

    Args:
        model: a HookedTransformer, TransformerBridge or ``ModelAdapter``.
        prompts: one or several prompts: texts (tokenised with the adapter's BOS policy,
            no chat template: apply it yourself), token-id lists, or a ``[batch, pos]``
            tensor.
        targets: the answer token id (or a text, whose first token is used) per prompt,
            or one for all; or a callable ``logits [batch, pos, vocab] -> [batch]``.
        point: where to interpolate (see the module docstring): ``"z"`` (per head),
            ``"writes"`` (per layer: attention + MLP writes), ``"attn_out"``,
            ``"mlp_out"``, ``"resid_pre"`` (per layer, one IG run per layer).
        steps: quadrature nodes (alpha values) with gradients.
        method: a rule in :data:`QUADRATURES`, or ``"adaptive"`` (see the module docstring).
        baseline: ``"zeros"``, ``"mean_pos"``, or ``(activation, layer) -> baseline``;
            default ``"mean_pos"`` for ``"resid_pre"`` and ``"zeros"`` otherwise.
        position: the position whose prediction is the target (default: the last).
        batch_size: alpha values per forward/backward pass.

    Returns:
        :class:`IGResult`; check ``relative_error`` (completeness) before trusting it.

    Example:
        >>> ig = integrated_gradients(model, "2 + 2 =", " 4", point="z")   # doctest: +SKIP
        >>> ig.attributions.shape                                          # doctest: +SKIP
        torch.Size([1, 30, 9])
    """
    adapter = adapt(model)
    if point not in POINTS:
        raise ValueError(f"unknown point {point!r}; use one of {sorted(POINTS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if baseline is None:
        baseline = "mean_pos" if point == "resid_pre" else "zeros"
    if method != "adaptive":
        quadrature(method, steps)  # validate early
    elif steps < 4:
        raise ValueError("method='adaptive' needs steps >= 4 (segments of 4 nodes)")
    seqs = _as_sequences(adapter, prompts)
    fns = _target_fns(adapter, targets, len(seqs), position)
    makers = POINTS[point]
    n_layers, width = adapter.n_layers, max(len(s) for s in seqs)
    keys = [(m(layer), layer) for layer in range(n_layers) for m in makers]
    per_pos_shape = (len(seqs), n_layers) + ((adapter.n_heads,) if point == "z" else ()) + (width,)
    per_pos = torch.full(per_pos_shape, math.nan, dtype=torch.float64)
    comp = {_short(m(0)): torch.zeros(len(seqs), n_layers, dtype=torch.float64) for m in makers}
    n_runs = n_layers if point == "resid_pre" else 1
    f_in = torch.zeros(len(seqs), dtype=torch.float64)
    f_base = torch.zeros(len(seqs), n_runs, dtype=torch.float64)
    err = torch.zeros(len(seqs), n_runs, dtype=torch.float64)
    it: Any = range(len(seqs))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="integrated gradients", leave=False)
    with torch.inference_mode(False), torch.enable_grad():
        for p in it:
            ids = torch.tensor([seqs[p]], device=adapter.device)
            store: dict[str, Tensor] = {}
            with torch.no_grad():
                logits = adapter.forward(
                    ids, fwd_hooks=[(n, functools.partial(_capture, store=store, key=n)) for n, _ in keys]
                )
                f_in[p] = float(fns[p](logits))
            runs = [keys] if n_runs == 1 else [[k] for k in keys]
            for r, run in enumerate(runs):
                names = [n for n, _ in run]
                xs = [store[n] for n in names]
                bs = [_baseline(x, layer, baseline) for x, (_, layer) in zip(xs, run)]
                attrs, f1, f0 = _run(adapter, ids, names, xs, bs, fns[p], method, steps, batch_size)
                total = 0.0
                for (name, layer), a in zip(run, attrs):
                    red = a.sum(-1).cpu()  # over d_head / d_model: [pos, head] or [pos]
                    total += float(red.sum())
                    n_pos = red.shape[0]
                    if point == "z":
                        per_pos[p, layer, :, :n_pos] = red.T
                    else:
                        comp[_short(name)][p, layer] = float(red.sum())
                        cur = per_pos[p, layer, :n_pos]
                        per_pos[p, layer, :n_pos] = torch.where(cur.isnan(), red, cur + red)
                f_base[p, r] = f0
                err[p, r] = total - (f1 - f0)
                if abs(f1 - float(f_in[p])) > 1e-3 * max(1.0, abs(f1)):
                    raise RuntimeError(
                        f"replacing activations by their own clean values changed f ({f1} vs "
                        f"{float(f_in[p])}): the hooks at {names[:2]} do not act as expected"
                    )
    attributions = per_pos.nansum(-1)
    return IGResult(
        attributions=attributions.float(),
        per_position=per_pos.float(),
        components={k: v.float() for k, v in comp.items()} if point == "writes" else {},
        f_input=f_in,
        f_baseline=f_base,
        completeness_error=err,
        point=point,
        method=method,
        steps=steps,
        meta={
            "model_name": adapter.name,
            "baseline": baseline if isinstance(baseline, str) else "callable",
            "position": position,
            "targets": targets if isinstance(targets, (int, str, list)) else "callable",
            "n_tokens": [len(s) for s in seqs],
        },
    )
