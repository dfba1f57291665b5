"""The README's promises that a test can hold it to."""

from __future__ import annotations

from pathlib import Path

from gateway.settings import Settings

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def test_every_setting_is_documented_in_the_table() -> None:
    table = {line.split("|")[1].strip().strip("`") for line in README.splitlines() if line.startswith("| `")}
    aliases = {str(field.alias) for field in Settings.model_fields.values()}
    assert aliases - table == set()


def test_the_two_commands_are_there() -> None:
    assert "`docker compose up -d`" in README
    assert "`scripts/test`" in README
    assert (ROOT / "scripts" / "test").exists()
