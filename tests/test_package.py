"""The package surface: every advertised name resolves, and importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import synergy_lens as sl


def test_every_public_name_resolves():
    missing = [n for n in sl.__all__ if n != "__version__" and not hasattr(sl, n)]
    assert missing == []


def test_import_has_no_heavy_side_effects():
    code = "import sys, synergy_lens; print('torch' in sys.modules, 'transformer_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_attribute_is_an_attribute_error():
    try:
        sl.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("expected AttributeError")
