"""Every reference to docs/science.md in the code names a section that exists there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_science_md_references_resolve() -> None:
    doc = (ROOT / "docs" / "science.md").read_text(encoding="utf-8")
    sections = {line.lstrip("#").strip() for line in doc.splitlines() if line.startswith("#")}
    refs = []
    for path in [*ROOT.joinpath("synergy_lens").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")]:
        if path == Path(__file__):
            continue
        text = " ".join(path.read_text(encoding="utf-8").split())  # references may wrap lines
        assert not re.search(r"(?<![/\w])science\.md", text), f"{path}: write docs/science.md"
        for m in re.finditer(r'docs/science\.md(?:``)?\s*[,:]\s*"([^"]+)"', text):
            refs.append((path.name, m.group(1)))
        for m in re.finditer(r'"([^"]+)" in ``docs/science\.md``', text):
            refs.append((path.name, m.group(1)))
    assert len(refs) >= 10
    missing = [(f, r) for f, r in refs if r not in sections]
    assert not missing, f"sections not in docs/science.md: {missing}"
