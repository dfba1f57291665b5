"""The VLM request body: base64 data URLs spliced in as bytes must give exactly what json.dumps gives."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from gateway.backends.openai_chat import encode_json

DATA_URL = "data:image/jpeg;base64," + base64.b64encode(os.urandom(30_000)).decode()


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [{"content": [{"image_url": {"url": DATA_URL}}, {"text": 'hé "q"\n'}]}]},
        {"a": "\x00florence-blob-0\x00", "b": DATA_URL},  # the payload holds a marker: plain encoding
        {"b": DATA_URL, "quote": "x" * 5000 + '"', "control": "y" * 5000 + "\x01", "list": [DATA_URL, 1.5]},
        {"nothing": None},
    ],
)
def test_encode_json_is_byte_identical_to_json_dumps(payload: dict[str, Any]) -> None:
    expected = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    assert encode_json(payload) == expected
