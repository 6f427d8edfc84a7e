"""The notebooks run top to bottom on the default model (small settings), so they never rot.

Each notebook's cell tagged ``parameters`` is extended with the small settings below; the
kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH), so the
notebooks see the same synergy-lens and TransformerLens as the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (dev extras)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (dev extras)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (dev extras)")

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
SMALL = {
    "01_quickstart.ipynb": {"PROMPTS_PER_CATEGORY": 1, "MAX_NEW_TOKENS": 24, "N_BOOT": 50},
    "02_causal_tests.ipynb": {"PROMPTS_PER_CATEGORY": 1, "MAX_NEW_TOKENS": 16, "ABLATION_STEP": 90, "N_RANDOM": 1,
                              "N_TASKS": 4, "SKIP_LAYERS": [0, 15, 29], "IG_PROMPTS": 2, "IG_STEPS": 4},
    "03_difficulty.ipynb": {"LEVELS": [1, 2], "FAMILIES": ["arithmetic"], "PROMPTS_PER_LEVEL": 3,
                            "MAX_NEW_TOKENS": 16, "N_BOOT": 10},
}
OUTPUTS = {"01_quickstart.ipynb": "quickstart_report.html", "02_causal_tests.ipynb": "causal_report.html",
           "03_difficulty.ipynb": "difficulty_report.html"}


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory) -> str:
    """A kernelspec that starts this very interpreter."""
    import os

    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "synergy-lens-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "synergy-lens tests", "language": "python",
    }))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root) + (os.pathsep + old if old else "")
    yield "synergy-lens-test"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


def test_every_notebook_has_small_settings():
    found = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(SMALL)
    for name, overrides in SMALL.items():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, name
        for key in overrides:
            assert f"{key} =" in params[0].source, (name, key)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is committed with outputs"
        assert ".show()" not in "".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_executes(name, kernel_name, tmp_path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += "\n# small settings for the test\n" + "\n".join(f"{k} = {v!r}" for k, v in SMALL[name].items())
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell and traceback
    figures = [o for c in nb.cells for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {}) or "text/html" in o.get("data", {})]
    assert figures, "no figure was displayed"
    report = tmp_path / OUTPUTS[name]
    assert report.is_file() and report.stat().st_size > 1_000_000
