"""The README's promises that a test can hold it to."""

from __future__ import annotations

import os
import re
from pathlib import Path

from gateway.settings import Settings

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def test_every_setting_is_documented_in_the_table() -> None:
    table = {line.split("|")[1].strip().strip("`") for line in README.splitlines() if line.startswith("| `")}
    aliases = {str(field.alias) for field in Settings.model_fields.values()}
    assert aliases - table == set()


def test_the_readme_commands_exist() -> None:
    """Every script the 'two commands' table names is there and executable; compose has its file."""
    table = README.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    scripts = re.findall(r"`(scripts/[\w-]+)", table)
    assert {"scripts/test", "scripts/local-service"} <= set(scripts)
    for script in scripts:
        assert os.access(ROOT / script, os.X_OK), f"{script} is named in the README but is not executable"
    assert "`docker compose up -d`" in table
    assert (ROOT / "docker-compose.yml").is_file()
