"""Settings: the original names and defaults, and a refusal to start on a bad value."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gateway.cli import main
from gateway.settings import Settings


def test_original_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "VLM_MODEL_ID", "USE_GPT_OSS", "GPT_OSS_REASONING_LEVEL", "VLM_LOAD_8BIT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.aws_region == "us-east-1"
    assert settings.vlm_model_id == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert settings.vlm_load_8bit is False
    assert settings.use_gpt_oss is False
    assert settings.gpt_oss_model_id == "openai/gpt-oss-120b"
    assert settings.gpt_oss_reasoning_level == "medium"
    assert settings.vlm_max_pixels == 1003520
    assert settings.max_image_bytes == 20971520


def test_env_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USE_GPT_OSS", "true")
    monkeypatch.setenv("GPT_OSS_REASONING_LEVEL", "High")
    monkeypatch.setenv("VLM_LOAD_8BIT", "true")
    monkeypatch.setenv("API_KEYS", "a, b,,")
    settings = Settings()
    assert settings.use_gpt_oss is True
    assert settings.gpt_oss_reasoning_level == "high"
    assert settings.vlm_load_8bit is True
    assert settings.api_key_list == ("a", "b")


def test_bad_reasoning_level_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPT_OSS_REASONING_LEVEL", "extreme")
    with pytest.raises(ValidationError):
        Settings()
    assert main(["serve"]) == 1
    assert "low, medium, high" in capsys.readouterr().err


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLM_API_KEY", "sk-very-secret")
    assert "sk-very-secret" not in repr(Settings())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"XMP_FIELDS": "description,keywords"}, "unknown XMP_FIELDS ['keywords']"),
        ({"XMP_NAME": "basename"}, "XMP_NAME"),
        (
            {"VOCABULARIES_DIR": "/srv/vocab", "VLM_STRUCTURED": "false"},
            "VOCABULARIES_DIR needs VLM_STRUCTURED",
        ),
    ],
)
def test_write_back_and_vocabulary_settings_are_checked_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()


def test_xmp_fields_choose_a_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMP_FIELDS", " headline , alt_text ")
    assert Settings().xmp_field_set == {"headline", "alt_text"}


def test_events_settings_read_as_the_batch_flags_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTS_WRITE_BACK", " XMP, sidecar ")
    monkeypatch.setenv("EVENTS_SIDECAR_PREFIX", "s3://side-cars/photos")
    monkeypatch.setenv("EVENTS_TOKEN", "events-secret-token")
    monkeypatch.setenv("API_KEYS", "k1")
    monkeypatch.setenv("EVENTS_USE_GPT_OSS", "")  # compose passes an unset variable as empty
    settings = Settings()
    assert settings.events_write_back_modes == {"sidecar", "xmp"}
    assert settings.events_sidecar_prefix == "s3://side-cars/photos/"  # a folder, never a name prefix
    assert settings.events_key_list == ("k1", "events-secret-token")
    assert settings.events_use_gpt_oss is None  # USE_GPT_OSS decides
    assert "events-secret-token" not in repr(settings)
    monkeypatch.setenv("EVENTS_WRITE_BACK", "none")
    assert Settings().events_write_back_modes == frozenset()


@pytest.mark.parametrize("value", [" , ", ",", " ,,  , "])
def test_api_keys_that_name_no_key_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """Set, but empty once parsed: starting would serve everyone without a key."""
    monkeypatch.setenv("API_KEYS", value)
    with pytest.raises(ValidationError):
        Settings()
    assert main(["serve"]) == 1
    assert "API_KEYS" in capsys.readouterr().err


def test_review_write_back_names_modes_and_a_bad_one_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REVIEW_WRITE_BACK", " xmp, sidecar,xmp ")
    monkeypatch.setenv("REVIEW_REQUIRED", "true")
    settings = Settings()
    assert settings.review_write_back_modes == {"xmp", "sidecar"}
    assert settings.review_required is True
    monkeypatch.setenv("REVIEW_WRITE_BACK", "sidecar,exif")
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert "review_write_back" in err.lower() and "exif" in err and "sidecar, tags, xmp" in err
