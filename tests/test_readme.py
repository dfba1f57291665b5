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


def test_every_error_code_is_in_the_errors_table() -> None:
    """Every status and code the gateway answers, including those of the request guard and the server."""
    table = README.split("### Errors", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("| "):  # a status may have several rows (the image inputs' own, for instance)
            status = line.split("|")[1].strip()
            rows[status] = rows.get(status, "") + line
    expected = {
        400: ["invalid_http_request"],
        401: ["invalid_api_key"],
        403: ["s3_access_denied", "s3_no_credentials"],
        404: ["s3_not_found", "not_found"],
        405: ["method_not_allowed"],
        408: ["request_timeout"],
        413: ["request_too_large", "image_too_large", "image_too_many_pixels", "image_decode_too_large"],
        415: ["unsupported_image", "image_corrupt", "image_empty"],
        409: ["caption_not_approved", "nothing_to_write_back"],
        422: [
            *("invalid_request", "invalid_s3_uri", "unknown_style", "unsupported_language"),
            *("image_url_forbidden", "invalid_upload"),  # the image inputs' own row
        ],
        429: ["overloaded"],
        431: ["headers_too_large"],
        500: ["internal_error"],
        502: ["vlm_rejected", "vlm_bad_response", "vlm_bad_output", "vlm_output_truncated"],
        503: ["s3_unavailable", "vlm_unavailable", "gateway_busy"],
        504: ["vlm_timeout", "image_url_timeout"],
    }
    for status, codes in expected.items():
        assert str(status) in rows, f"{status} is missing from README's errors table"
        for code in codes:
            assert f"`{code}`" in rows[str(status)], f"{status} {code} is missing from README's errors table"
