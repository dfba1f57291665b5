"""Every setting of the gateway, read once from the environment and passed down.

The first six names are the original service's contract (same names, meanings and defaults); the rest are
new. Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.errors import InvalidInput
from gateway.records import REASONING_LEVELS, ReasoningLevel
from gateway.sources.s3_uri import parse_prefix
from gateway.sources.url_policy import SCHEMES, HostList

# Qwen2.5-VL spends one visual token per 28x28 pixels (imaging.PATCH): 1280 tokens at most, 4 at least.
VLM_MAX_PIXELS_DEFAULT = 1280 * 28 * 28
VLM_MIN_PIXELS_DEFAULT = 4 * 28 * 28
ONE_TOKEN_PIXELS = 28 * 28
DATABASE_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
SQLITE_FILE = "florence-tagger.db"
# From benchmarks/bench_vocabulary.py: the first request with a 10,000-term vocabulary waits ~3 s for vLLM
# to compile its grammar, a 50,000-term one ~35 s (README, Vocabularies).
VOCABULARY_MAX_TERMS_DEFAULT = 10_000
# The XMP properties write-back owns, by the names XMP_FIELDS uses (README, Write-back).
XMP_FIELD_NAMES = (
    "description",
    "subject",
    "alt_text",
    "ext_description",
    "headline",
    "hierarchical_subject",
)
XmpName = Literal["full", "stem"]
WRITE_BACK_MODES = ("sidecar", "tags", "xmp")  # gateway/writeback writes each of them


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    # --- the original service's variables -------------------------------------------------------------
    aws_region: str = Field("us-east-1", alias="AWS_REGION")
    vlm_model_id: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", alias="VLM_MODEL_ID")
    vlm_load_8bit: bool = Field(False, alias="VLM_LOAD_8BIT")
    use_gpt_oss: bool = Field(False, alias="USE_GPT_OSS")
    gpt_oss_model_id: str = Field("openai/gpt-oss-120b", alias="GPT_OSS_MODEL_ID")
    gpt_oss_reasoning_level: ReasoningLevel = Field("medium", alias="GPT_OSS_REASONING_LEVEL")

    # --- backends ---------------------------------------------------------------------------------------
    vlm_base_url: str = Field("http://localhost:8001/v1", alias="VLM_BASE_URL")
    gpt_oss_base_url: str = Field("http://localhost:8002/v1", alias="GPT_OSS_BASE_URL")
    vlm_api_key: SecretStr | None = Field(None, alias="VLM_API_KEY")
    gpt_oss_api_key: SecretStr | None = Field(None, alias="GPT_OSS_API_KEY")
    vlm_device: str = Field("cuda", alias="VLM_DEVICE")
    vlm_temperature: float = Field(0.0, alias="VLM_TEMPERATURE", ge=0.0, le=2.0)
    vlm_max_tokens: int = Field(512, alias="VLM_MAX_TOKENS", ge=16)
    gpt_oss_max_tokens: int = Field(2048, alias="GPT_OSS_MAX_TOKENS", ge=64)
    vlm_structured: bool = Field(True, alias="VLM_STRUCTURED")
    grounding: Literal["strict", "off"] = Field("strict", alias="GROUNDING")
    styles_file: Path | None = Field(None, alias="STYLES_FILE")
    vocabularies_dir: Path | None = Field(None, alias="VOCABULARIES_DIR")
    vocabulary_max_terms: int = Field(VOCABULARY_MAX_TERMS_DEFAULT, alias="VOCABULARY_MAX_TERMS", ge=1)
    vlm_timeout_s: float = Field(60.0, alias="VLM_TIMEOUT_S", gt=0)
    gpt_oss_timeout_s: float = Field(120.0, alias="GPT_OSS_TIMEOUT_S", gt=0)
    backend_max_attempts: int = Field(3, alias="BACKEND_MAX_ATTEMPTS", ge=1, le=10)
    max_concurrency: int = Field(64, alias="MAX_CONCURRENCY", ge=1)

    # --- S3 and images ---------------------------------------------------------------------------------
    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL")
    s3_timeout_s: float = Field(10.0, alias="S3_TIMEOUT_S", gt=0)
    max_image_bytes: int = Field(20_971_520, alias="MAX_IMAGE_BYTES", gt=0)
    max_image_pixels: int = Field(100_000_000, alias="MAX_IMAGE_PIXELS", gt=0)
    vlm_max_pixels: int = Field(VLM_MAX_PIXELS_DEFAULT, alias="VLM_MAX_PIXELS", ge=ONE_TOKEN_PIXELS)
    vlm_min_pixels: int = Field(VLM_MIN_PIXELS_DEFAULT, alias="VLM_MIN_PIXELS", ge=ONE_TOKEN_PIXELS)
    max_concurrent_images: int = Field(4, alias="MAX_CONCURRENT_IMAGES", ge=1)
    max_decode_bytes: int = Field(268_435_456, alias="MAX_DECODE_BYTES", gt=0)

    # --- images by URL: off by default, since it changes what the gateway can reach (README) -------------
    image_url_enabled: bool = Field(False, alias="IMAGE_URL_ENABLED")
    image_url_schemes: str = Field("https", alias="IMAGE_URL_SCHEMES")
    image_url_allowed_ports: str = Field("", alias="IMAGE_URL_ALLOWED_PORTS")  # empty: the schemes' own
    image_url_allow_hosts: str = Field("", alias="IMAGE_URL_ALLOW_HOSTS")
    image_url_deny_hosts: str = Field("", alias="IMAGE_URL_DENY_HOSTS")
    image_url_connect_timeout_s: float = Field(3.0, alias="IMAGE_URL_CONNECT_TIMEOUT_S", gt=0)
    image_url_timeout_s: float = Field(20.0, alias="IMAGE_URL_TIMEOUT_S", gt=0)

    # --- the catalogue --------------------------------------------------------------------------------
    # Unset: an SQLite file under DATA_DIR (no setup); postgresql+asyncpg://... for several replicas.
    database_url: SecretStr | None = Field(None, alias="DATABASE_URL")
    data_dir: Path = Field(Path("data"), alias="DATA_DIR")
    cache: Literal["on", "off"] = Field("on", alias="CACHE")
    database_timeout_s: float = Field(3.0, alias="DATABASE_TIMEOUT_S", gt=0)

    # --- write-back (batch today; event workers and review approvals use the same settings) -------------
    xmp_fields: str = Field(",".join(XMP_FIELD_NAMES), alias="XMP_FIELDS")
    xmp_name: XmpName = Field("full", alias="XMP_NAME")
    # --- S3 event notifications: new uploads captioned as they arrive ------------------------------------
    # Workers per process draining the queue (0: this process only receives; `florence-tagger worker` drains).
    event_workers: int = Field(2, alias="EVENT_WORKERS", ge=0, le=256)
    events_token: SecretStr | None = Field(None, alias="EVENTS_TOKEN")
    events_style: str = Field("detailed", alias="EVENTS_STYLE")
    events_use_gpt_oss: bool | None = Field(None, alias="EVENTS_USE_GPT_OSS")  # None: USE_GPT_OSS
    events_language: str = Field("en", alias="EVENTS_LANGUAGE")
    events_vocabulary: str | None = Field(None, alias="EVENTS_VOCABULARY")  # None: the style's own, if any
    events_context: bool = Field(False, alias="EVENTS_CONTEXT")
    events_write_back: str = Field("", alias="EVENTS_WRITE_BACK")
    events_sidecar_prefix: str | None = Field(None, alias="EVENTS_SIDECAR_PREFIX")
    events_max_attempts: int = Field(5, alias="EVENTS_MAX_ATTEMPTS", ge=1, le=100)
    events_lease_s: float = Field(60.0, alias="EVENTS_LEASE_S", ge=1)
    events_backoff_s: float = Field(10.0, alias="EVENTS_BACKOFF_S", gt=0)

    # --- review (the /review page) ---------------------------------------------------------------------
    # What an approval writes (any of sidecar,tags,xmp); empty: approving only records the decision.
    review_write_back: str = Field("", alias="REVIEW_WRITE_BACK")
    # True: batch and event captions are written back only once a person approves them.
    review_required: bool = Field(False, alias="REVIEW_REQUIRED")

    # --- the HTTP server -------------------------------------------------------------------------------
    api_keys: SecretStr | None = Field(None, alias="API_KEYS")
    host: str = Field("0.0.0.0", alias="HOST")  # noqa: S104 - a container's server listens on all interfaces
    port: int = Field(8000, alias="PORT", ge=1, le=65535)
    workers: int = Field(1, alias="WORKERS", ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", alias="LOG_LEVEL")
    prometheus_multiproc_dir: str | None = Field(None, alias="PROMETHEUS_MULTIPROC_DIR")

    # --- limits and overload (README: "Limits and overload") -------------------------------------------
    max_request_bytes: int = Field(1_048_576, alias="MAX_REQUEST_BYTES", ge=1024)
    max_inflight: int = Field(64, alias="MAX_INFLIGHT", ge=1)
    max_queued: int = Field(8, alias="MAX_QUEUED", ge=0)
    queue_timeout_s: float = Field(2.0, alias="QUEUE_TIMEOUT_S", gt=0)
    max_loop_lag_ms: float = Field(25.0, alias="MAX_LOOP_LAG_MS", ge=0)
    client_header_timeout_s: float = Field(10.0, alias="CLIENT_HEADER_TIMEOUT_S", gt=0)
    client_body_timeout_s: float = Field(20.0, alias="CLIENT_BODY_TIMEOUT_S", gt=0)
    keepalive_timeout_s: int = Field(5, alias="KEEPALIVE_TIMEOUT_S", ge=1)

    @field_validator("gpt_oss_reasoning_level", mode="before")
    @classmethod
    def _reasoning_level(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in REASONING_LEVELS:
            return value.strip().lower()
        raise ValueError(f"GPT_OSS_REASONING_LEVEL must be one of low, medium, high (got {value!r})")

    @field_validator("vlm_base_url", "gpt_oss_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            # The value is not echoed: a URL may carry credentials (user:password@host).
            raise ValueError("must be an http(s) URL such as http://localhost:8001/v1")
        return value.rstrip("/")

    @field_validator("image_url_schemes")
    @classmethod
    def _schemes(cls, value: str) -> str:
        schemes = [s.strip().lower() for s in value.split(",") if s.strip()]
        if not schemes or set(schemes) - SCHEMES:
            raise ValueError(f"must be https, http or both, comma-separated (got {value!r})")
        return ",".join(schemes)

    @field_validator("image_url_allowed_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        ports = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() and 1 <= int(p) <= 65535 for p in ports):
            raise ValueError(f"must be comma-separated port numbers (got {value!r})")
        return ",".join(ports)

    @field_validator("image_url_allow_hosts", "image_url_deny_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        HostList.parse(value)  # a ValueError names the bad entry
        return value

    @field_validator("xmp_fields")
    @classmethod
    def _xmp_fields(cls, value: str) -> str:
        fields = [f.strip() for f in value.split(",") if f.strip()]
        unknown = set(fields) - set(XMP_FIELD_NAMES)
        if unknown:
            raise ValueError(
                f"unknown XMP_FIELDS {sorted(unknown)}; choose from {', '.join(XMP_FIELD_NAMES)}"
            )
        return ",".join(fields)

    @field_validator(
        "s3_endpoint_url",
        "vlm_api_key",
        "gpt_oss_api_key",
        "api_keys",
        "database_url",
        "vocabularies_dir",
        "events_token",
        "events_use_gpt_oss",
        "events_sidecar_prefix",
        "events_vocabulary",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker compose passes `VAR=` for an unset variable; treat it as not configured.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _pixel_budget(self) -> Settings:
        if self.vlm_min_pixels > self.vlm_max_pixels:
            raise ValueError("VLM_MIN_PIXELS must not exceed VLM_MAX_PIXELS")
        if self.vocabularies_dir is not None and not self.vlm_structured:
            raise ValueError(
                "VOCABULARIES_DIR needs VLM_STRUCTURED=true: the vocabulary is a JSON-schema enum"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(DATABASE_SCHEMES):
            # The value is not echoed: it may carry a password.
            raise ValueError(f"must start with one of {', '.join(DATABASE_SCHEMES)}")
        return value

    @field_validator("events_write_back", "review_write_back")
    @classmethod
    def _write_back_modes(cls, value: str) -> str:
        modes = [m.strip().lower() for m in value.split(",") if m.strip()]
        if modes == ["none"]:
            return ""
        unknown = set(modes) - set(WRITE_BACK_MODES)
        if unknown:
            raise ValueError(
                f"unknown modes {sorted(unknown)}; none, or any of {', '.join(WRITE_BACK_MODES)}"
            )
        return ",".join(m for m in WRITE_BACK_MODES if m in modes)

    @field_validator("events_sidecar_prefix")
    @classmethod
    def _events_sidecar_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            location = parse_prefix(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        # A folder: sidecars go to PREFIX + the image's key + .json, never to "prefixphoto.jpg.json".
        key = location.key if not location.key or location.key.endswith("/") else location.key + "/"
        return f"s3://{location.bucket}/{key}"

    @property
    def events_write_back_modes(self) -> frozenset[str]:
        return frozenset(self.events_write_back.split(",")) if self.events_write_back else frozenset()

    @property
    def events_key_list(self) -> tuple[str, ...]:
        """What POST /v1/events/s3 accepts: API_KEYS and EVENTS_TOKEN (empty: the route is open)."""
        token = self.events_token.get_secret_value().strip() if self.events_token else ""
        return self.api_key_list + ((token,) if token else ())

    @property
    def database_url_value(self) -> str:
        """The catalogue's SQLAlchemy URL: DATABASE_URL, or the SQLite file under DATA_DIR."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / SQLITE_FILE).resolve()}"

    @property
    def image_url_scheme_set(self) -> frozenset[str]:
        return frozenset(self.image_url_schemes.split(","))

    @property
    def image_url_port_set(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.image_url_allowed_ports.split(",") if p)

    @property
    def xmp_field_set(self) -> frozenset[str]:
        return frozenset(self.xmp_fields.split(",")) if self.xmp_fields else frozenset()

    @model_validator(mode="after")
    def _api_keys_name_a_key(self) -> Settings:
        # `API_KEYS=" , "` is set but names no key: starting would silently serve everyone.
        if self.api_keys is not None and not self.api_key_list:
            raise ValueError(
                "API_KEYS is set but holds no key (only commas and spaces); unset it or add a key"
            )
        return self

    @property
    def review_write_back_modes(self) -> frozenset[str]:
        return frozenset(self.review_write_back.split(",")) if self.review_write_back else frozenset()

    @cached_property
    def api_key_list(self) -> tuple[str, ...]:
        if self.api_keys is None:
            return ()
        return tuple(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret the gateway holds, for the log filter to blank out wherever it shows up."""
        keys = [k.get_secret_value() for k in (self.vlm_api_key, self.gpt_oss_api_key) if k is not None]
        password = urlsplit(self.database_url.get_secret_value()).password if self.database_url else None
        return tuple(keys) + self.api_key_list + ((password,) if password else ())

    @property
    def backend_name(self) -> str:
        """The original /health `backend`: the model's short name, lower-case (qwen2.5-vl-7b-instruct)."""
        return self.vlm_model_id.rsplit("/", 1)[-1].lower()
