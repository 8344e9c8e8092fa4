"""The documentation says what the code does."""
from pathlib import Path

from neuralprior import preset_table

ROOT = Path(__file__).resolve().parents[1]


def test_presets_doc_matches_the_code():
    doc = (ROOT / "docs" / "presets.md").read_text()
    assert preset_table() in doc, "docs/presets.md is stale: regenerate it with `neuralprior presets`"


def test_readme_quick_start_is_two_make_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
