"""The README's "what bad input gets" table is the one the suite's cases generate."""

from pathlib import Path

from tests.reliability.table import markdown


def test_readme_table_is_generated_from_the_cases():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown() in readme, "README table is stale: run python -m tests.reliability.table --write"
