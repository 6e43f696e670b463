"""Settings: one value built at start-up and passed down, never read from globals.

Every field can be set from the environment with the ``JUNCTION_`` prefix, e.g.
``JUNCTION_DATABASE_URL=postgresql+psycopg://junction@db/junction``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JUNCTION_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///junction.db",
        description="SQLAlchemy URL. The default is a SQLite file in the working directory.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Keys the API-key hashes and signed links. When unset, one is generated "
        "and kept in `secret_key_file`.",
    )
    secret_key_file: Path = Field(
        default=Path(".junction-secret"),
        description="Where a generated secret key is kept when `secret_key` is unset.",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL providers and people reach Junction at (callbacks, links), e.g. "
        "https://junction.example.com. Defaults to the URL a request came in on.",
    )
    host: str = "127.0.0.1"
    port: int = 8700
    dispatch_batch_size: int = Field(default=1000, ge=1, le=10_000)
    dispatch_concurrency: int = Field(default=100, ge=1, le=10_000)
    dispatch_lease_seconds: float = Field(
        default=60, gt=0, description="how long a claimed message stays a worker's own"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    def resolved_secret_key(self) -> str:
        """The secret key, generating and keeping one on first use if none is configured."""
        if self.secret_key:
            return self.secret_key
        path = self.secret_key_file
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        self.secret_key = key
        return key
