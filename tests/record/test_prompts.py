"""The shipped 60-prompt suite and reading the user's prompt files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from synergy_lens.record import CATEGORIES, Prompt, default_prompts, load_prompts


def test_suite_has_ten_original_prompts_in_each_of_six_categories():
    suite = default_prompts()
    assert len(suite) == 60
    assert Counter(p.category for p in suite) == dict.fromkeys(CATEGORIES, 10)
    assert len({p.text for p in suite}) == 60
    assert all(p.text.strip() == p.text and len(p.text) > 10 for p in suite)


def test_suite_filters_by_category():
    chosen = default_prompts(["pos_tagging", "emotional_social"])
    assert len(chosen) == 20 and {p.category for p in chosen} == {"pos_tagging", "emotional_social"}
    assert len(default_prompts("numerical_reasoning")) == 10
    with pytest.raises(ValueError, match="unknown prompt categories"):
        default_prompts(["poetry"])


def test_load_txt_one_prompt_per_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("first prompt\n\n  second prompt  \n", encoding="utf-8")
    assert load_prompts(path) == [Prompt("first prompt"), Prompt("second prompt")]


def test_load_jsonl_objects_and_strings(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [{"prompt": "a?", "category": "x"}, {"text": "b?"}, "c?"]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    assert load_prompts(path) == [Prompt("a?", "x"), Prompt("b?"), Prompt("c?")]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("p.csv", "a,b", "use a .txt file"),
        ("p.txt", "\n  \n", "contains no prompts"),
        ("p.jsonl", '{"prompt": "ok"}\n{broken', "line 2: invalid JSON"),
        ("p.jsonl", '{"question": "no prompt key"}', 'expected a "prompt" string'),
        ("p.jsonl", '{"prompt": "  "}', "line 1: empty prompt"),
        ("p.jsonl", "[1, 2]", "expected an object or a string"),
    ],
)
def test_load_errors_are_clear(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_prompts(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no prompt file"):
        load_prompts(tmp_path / "nope.txt")
