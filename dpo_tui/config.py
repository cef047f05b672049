"""Settings, built once at start-up and passed in; nothing reads them from a global.

Sources, highest precedence first: explicit overrides (command-line flags), the
environment (`TOGETHER_API_KEY`, `TOGETHER_BASE_URL`), the config file
(`--config PATH`, else `$XDG_CONFIG_HOME/dpo-tui/config.toml`, else
`~/.config/dpo-tui/config.toml`), then the defaults below. A plan file never carries
the API key. The key is kept as a `SecretStr`: its repr is masked and it is never logged.

    # config.toml
    api_key = "..."                      # or set TOGETHER_API_KEY
    base_url = "https://api.together.ai"  # no /v1 suffix: the SDK adds it
    timeout_s = 60
    max_attempts = 6
    concurrency = 16
    breaker_failures = 3                 # calls in a row that could not reach the backend stop the stage
    prices_path = "/path/to/prices.toml"
    qwen_ranks_path = "/path/to/qwen.tiktoken"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from dpo_tui.errors import InputError

DEFAULT_BASE_URL = "https://api.together.ai"
SIM_DUMMY_KEY = "sim-dummy-key"  # what the simulator accepts; it is not a secret


class Settings(BaseModel):
    """Provider settings. Times are seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    api_key_source: str = "none"          # "env:TOGETHER_API_KEY", "config:<path>", "override", "none"
    base_url: str = DEFAULT_BASE_URL
    project_id: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=50)
    retry_initial_s: float = Field(1.0, ge=0)    # exponential backoff: initial * 2**n ...
    retry_max_s: float = Field(30.0, ge=0)       # ... capped here ...
    retry_jitter_s: float = Field(1.0, ge=0)     # ... plus uniform(0, jitter)
    retry_after_max_s: float = Field(60.0, ge=0)  # a server's retry-after is honoured up to this
    concurrency: int = Field(16, ge=1, le=1000)  # ceiling of the adaptive limiter
    breaker_failures: int = Field(3, ge=1, le=1000)  # consecutive calls that gave up unreachable: stop the stage
    min_concurrency: int = Field(1, ge=1)
    limiter_cooldown_s: float = Field(1.0, ge=0)  # at most one halving per this window
    prices_path: Path | None = None
    qwen_ranks_path: Path | None = None
    config_path: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return check_base_url(value)

    def key_value(self) -> str:
        """The key for the SDK client (and the redactor). Raises when none is configured."""
        if self.api_key is None or not self.api_key.get_secret_value():
            raise InputError("no Together API key: set TOGETHER_API_KEY or api_key in "
                             f"{self.config_path or default_config_path()} (never in a plan file)")
        return self.api_key.get_secret_value()

    @property
    def is_loopback(self) -> bool:
        host = urlparse(self.base_url).hostname or ""
        return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def check_base_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"base_url {value!r} is not an http(s) URL like {DEFAULT_BASE_URL}")
    if parsed.path.rstrip("/").endswith("/v1"):
        raise ValueError(f"base_url {value!r} ends in /v1; the Together SDK adds /v1 itself "
                         f"(requests would go to /v1/v1/...): use {url[: -len('/v1')]}")
    return url


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "dpo-tui" / "config.toml"


def _read_config(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise InputError(f"{path}: no such config file")
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read config: {exc}") from None
    section = raw.get("provider", raw)  # keys at the top level or under [provider]
    return {k: v for k, v in section.items() if not isinstance(v, dict)}


def load_settings(config_path: str | os.PathLike[str] | None = None, *,
                  env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides > environment > config file > defaults.

    Overrides whose value is None are ignored (convenient for argparse flags)."""
    env = os.environ if env is None else env
    path = Path(config_path).expanduser() if config_path else default_config_path(env)
    data: dict[str, Any] = _read_config(path, explicit=config_path is not None)
    if "api_key" in data:
        data["api_key_source"] = f"config:{path}"
    if env.get("TOGETHER_API_KEY"):
        data["api_key"], data["api_key_source"] = env["TOGETHER_API_KEY"], "env:TOGETHER_API_KEY"
    if env.get("TOGETHER_BASE_URL"):
        data["base_url"] = env["TOGETHER_BASE_URL"]
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    if overrides.get("api_key") is not None and "api_key_source" not in overrides:
        data["api_key_source"] = "override"
    data["config_path"] = path
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise InputError(f"{path}: {where}: {msg}" if where != "base_url" else msg) from None
