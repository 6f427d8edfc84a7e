"""Integrated gradients: completeness on tiny models, both backends.

Tolerances: with 32 Gauss-Legendre steps the completeness error |sum(IG) - (f(x) - f(b))|
is below 1e-4 (observed ~1e-6; f is a log-probability of order 1-10 nats). With the
trapezoid rule the error must shrink as steps grow (8 -> 16 -> 32, observed ~4x per
doubling), and 16 Gauss-Legendre steps must beat 32 trapezoid steps by 100x.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from synergy_lens.intervene import integrated_gradients, quadrature
from synergy_lens.models import adapt

PROMPTS = [[256, 1, 2, 3, 4, 5, 6], [256, 9, 8, 7]]
TARGETS = [5, 17]


@pytest.mark.parametrize("point", ["z", "writes", "resid_pre", "mlp_out"])
def test_completeness(tiny3, point):
    ig = integrated_gradients(tiny3, PROMPTS, TARGETS, point=point, steps=32)
    a = adapt(tiny3)
    runs = a.n_layers if point == "resid_pre" else 1
    assert ig.completeness_error.shape == (2, runs)
    assert float(ig.completeness_error.abs().max()) < 1e-4
    shape = (2, a.n_layers, a.n_heads) if point == "z" else (2, a.n_layers)
    assert ig.attributions.shape == shape
    assert_close(ig.per_position.nansum(-1), ig.attributions, atol=1e-5, rtol=1e-5)
    # f_input is the clean log-probability of the target
    with torch.no_grad():
        lp = a.forward(torch.tensor([PROMPTS[1]])).log_softmax(-1)[0, -1, TARGETS[1]]
    assert abs(float(ig.f_input[1]) - float(lp)) < 1e-4
    if point != "resid_pre":  # joint: all attributions of a prompt sum to f(x) - f(b)
        total = ig.attributions.flatten(1).sum(1).double()
        assert_close(total, ig.f_input - ig.f_baseline[:, 0], atol=1e-4, rtol=1e-4)
    if point == "writes":
        parts = ig.components["attn_out"] + ig.components["mlp_out"]
        assert_close(parts, ig.attributions, atol=1e-5, rtol=1e-5)


def test_ig_result_save_and_load(tiny3, tmp_path):
    from synergy_lens.intervene import IGResult

    ig = integrated_gradients(tiny3, PROMPTS, TARGETS, point="writes", steps=8)
    ig.save(tmp_path / "ig.pt")
    back = IGResult.load(tmp_path / "ig.pt")
    assert torch.equal(back.attributions, ig.attributions)
    assert torch.equal(back.per_position.nan_to_num(7.0), ig.per_position.nan_to_num(7.0))
    assert set(back.components) == {"attn_out", "mlp_out"}
    assert torch.equal(back.components["mlp_out"], ig.components["mlp_out"])
    assert (back.point, back.method, back.steps, back.meta) == (ig.point, ig.method, ig.steps, ig.meta)


def test_error_shrinks_with_steps(tiny3):
    """Trapezoid error falls ~4x per doubling of steps (O(1/n^2)) once n >= 8; GL is far better."""

    def err(n, method="trapezoid"):
        ig = integrated_gradients(tiny3, PROMPTS[0], 5, point="z", steps=n, method=method)
        return float(ig.completeness_error.abs().max())

    errs = [err(n) for n in (8, 16, 32)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < errs[0] / 8
    assert err(16, "gauss_legendre") < min(1e-5, errs[2] / 100)


def test_adaptive_rule_catches_a_planted_jump(tiny3):
    """A target that jumps from 1 to 0 within ~1% of the path: fixed rules miss it."""
    raw = lambda logits: logits[:, -1, 7].float()  # noqa: E731
    ends = integrated_gradients(tiny3, PROMPTS[0], raw, point="writes", steps=4)
    mid, gap = float(ends.f_input[0] + ends.f_baseline[0, 0]) / 2, float(ends.f_input[0] - ends.f_baseline[0, 0])
    steep = lambda logits: torch.sigmoid(300 / abs(gap) * (raw(logits) - mid))  # noqa: E731
    err = {
        m: float(integrated_gradients(tiny3, PROMPTS[0], steep, point="writes", steps=32, method=m)
                 .completeness_error.abs().max())
        for m in ("gauss_legendre", "adaptive")
    }
    assert err["gauss_legendre"] > 0.5  # of a total change of 1
    assert err["adaptive"] < err["gauss_legendre"] / 4


def test_quadrature_rules():
    for method in ("gauss_legendre", "trapezoid", "riemann_left", "riemann_right", "riemann_middle"):
        a, w = quadrature(method, 8)
        assert abs(float(w.sum()) - 1) < 1e-12 and float(a.min()) >= 0 and float(a.max()) <= 1
    a, w = quadrature("gauss_legendre", 4)
    assert abs(float((w * a**7).sum()) - 1 / 8) < 1e-12  # exact up to degree 2n - 1
    with pytest.raises(ValueError, match="unknown quadrature"):
        quadrature("simpson", 4)


def test_targets_text_callable_and_errors(tiny3):
    f = lambda logits: logits[:, -1, 7].float()  # noqa: E731  (a raw logit as target)
    ig = integrated_gradients(tiny3, PROMPTS[0], f, point="attn_out", steps=16, batch_size=5)
    assert float(ig.completeness_error.abs().max()) < 1e-4
    ig_text = integrated_gradients(tiny3, "abc", "d", point="z", steps=8)
    assert ig_text.meta["targets"] == "d" and ig_text.to_dataframe().shape[0] == 12
    with pytest.raises(ValueError, match="unknown point"):
        integrated_gradients(tiny3, PROMPTS, TARGETS, point="hook_q")
    with pytest.raises(ValueError, match="one per prompt"):
        integrated_gradients(tiny3, PROMPTS, [1, 2, 3])
