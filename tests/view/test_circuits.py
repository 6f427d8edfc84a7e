"""CircuitsVis views: offline (bundle inlined, no URL), safe against </script>, right data."""

from __future__ import annotations

import json
import re

import pytest
import torch

from synergy_lens.view.circuits import (
    OfflineHTML,
    activity_tokens_view,
    attention_view,
    circuitsvis_js,
    head_attention,
    parse_heads,
    render_offline,
)

from .conftest import SCRIPT

EXTERNAL_SRC = re.compile(r"""<script[^>]*\bsrc\s*=|(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def props_of(view: OfflineHTML) -> dict:
    """The JSON props passed to CircuitsVis.render in a view's fragment."""
    m = re.search(r"CircuitsVis\.render\(\"[^\"]+\", CircuitsVis\.\w+, (.*)\);</script>", view.fragment, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_bundle_is_the_wheels_and_inline_safe():
    js = circuitsvis_js()
    assert len(js) > 100_000 and "var CircuitsVis" in js
    assert "</script" not in js and "sourceMappingURL" not in js


def test_offline_html_has_no_external_script(monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("a view touched the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    view = render_offline("ColoredTokens", tokens=["a", "b"], values=[0.1, 0.2])
    for html in (view._repr_html_(), str(view), view.show_code(), view.__html__()):
        assert html.count(circuitsvis_js()) == 1
        assert not EXTERNAL_SRC.search(html)
        assert "unpkg" not in html and "http://" not in html.replace(circuitsvis_js(), "")
    assert circuitsvis_js() not in view.fragment


def test_script_in_tokens_cannot_close_the_script():
    view = render_offline("ColoredTokens", tokens=[SCRIPT, "</SCRIPT>", "\u2028"], values=[1.0, 2.0, 3.0])
    assert view.fragment.lower().count("</script>") == 1  # only our own closing tag
    assert props_of(view)["tokens"] == [SCRIPT, "</SCRIPT>", "\u2028"]


def test_bad_component_name():
    with pytest.raises(ValueError, match="component"):
        render_offline("Colored'); alert(1); ('", tokens=[])


def test_attention_view_props(attention):
    props = props_of(attention_view(attention))
    assert props["tokens"] == attention.tokens
    assert props["attentionHeadNames"] == attention.labels
    got = torch.tensor(props["attention"], dtype=torch.float64)
    torch.testing.assert_close(got, attention.patterns.double(), atol=5e-5, rtol=0)  # 4 decimals
    assert props["maskUpperTri"] is True


def test_activity_tokens_view_values(activity):
    view = activity_tokens_view(activity, "L2H1", prompt=2, tokens=[f"t{i}" for i in range(25)])
    props = props_of(view)
    assert props["tokens"] == [f"t{i}" for i in range(25)]
    got = torch.tensor(props["values"], dtype=torch.float64)
    torch.testing.assert_close(got, activity.values[2, :25, 2, 1].double(), atol=0, rtol=0)
    ids_view = props_of(activity_tokens_view(activity, (0, 3)))
    assert ids_view["tokens"][0] == f"⟨{activity.generated_ids[0][0]}⟩"


def test_activity_tokens_view_errors(activity):
    with pytest.raises(ValueError, match="outside the recording"):
        activity_tokens_view(activity, "L9H0")
    with pytest.raises(ValueError, match="out of range"):
        activity_tokens_view(activity, "L0H0", prompt=99)
    with pytest.raises(ValueError, match="tokens for"):
        activity_tokens_view(activity, "L0H0", tokens=["only one"])
    with pytest.raises(ValueError, match="L<layer>H<head>"):
        activity_tokens_view(activity, "head 3")


def test_parse_heads_forms(scores, core):
    assert parse_heads([(1, 2), "L0H3", 5], n_heads=4) == [(1, 2), (0, 3), (1, 1)]
    assert parse_heads(core, k=2) == core.pairs("abstract")[:2]
    flat = scores.values.flatten()
    top = int(torch.argmax(flat))
    assert parse_heads(scores, k=1) == [(top // 4, top % 4)]
    with pytest.raises(ValueError, match="n_heads"):
        parse_heads([3])


def test_head_attention_on_tiny_model(tiny):
    from synergy_lens.models import adapt

    att = head_attention(tiny, "hello world", ["L1H2", (0, 0)])
    ids = adapt(tiny).tokenize("hello world")
    n = len(ids)
    assert att.labels == ["L1H2", "L0H0"] and len(att.tokens) == n
    assert att.patterns.shape == (2, n, n)
    torch.testing.assert_close(att.patterns.sum(-1), torch.ones(2, n), atol=1e-5, rtol=0)
    assert torch.triu(att.patterns, diagonal=1).abs().max() == 0  # causal
    # the same pattern TransformerLens caches
    _, cache = tiny.run_with_cache(torch.tensor([ids]))
    torch.testing.assert_close(att.patterns[0], cache["blocks.1.attn.hook_pattern"][0, 2].float(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="outside this model"):
        head_attention(tiny, "hi", ["L7H0"])


def test_head_attention_save_load(tmp_path, attention):
    from synergy_lens.view.circuits import HeadAttention

    attention.save(tmp_path / "att.pt")
    back = HeadAttention.load(tmp_path / "att.pt")
    assert back.tokens == attention.tokens and back.labels == attention.labels
    assert torch.equal(back.patterns, attention.patterns)
