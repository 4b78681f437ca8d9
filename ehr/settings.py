"""Configuration from environment variables (prefix ``EHR_``), read once per process.

=============================  =====================================================  ==========
variable                       meaning                                                default
=============================  =====================================================  ==========
EHR_DATABASE_URL               SQLAlchemy URL of the database                         SQLite file
                                                                                      in the data
                                                                                      directory
EHR_DATA_DIR                   where the embedded SQLite file and export files live   ``./.data``
EHR_BASE_URL                   public base URL of the FHIR API (for links, Location)  derived from
                                                                                      the request
EHR_MAX_BODY_BYTES             largest request body accepted (413 above)              16 MiB
EHR_DEFAULT_COUNT              page size when ``_count`` is not given                 50
EHR_MAX_COUNT                  largest ``_count`` honoured (larger is clamped)        1000
EHR_MAX_OR_VALUES              most comma-separated values in one search parameter    100
EHR_STATEMENT_TIMEOUT_MS       per-statement time limit on PostgreSQL                 30000
EHR_REQUEST_TIMEOUT_S          time limit of one API request                          60
EHR_MAX_BUNDLE_ENTRIES         most entries in one batch / transaction Bundle         10000
EHR_DB_POOL_SIZE               connections per worker process (PostgreSQL)            20
EHR_EMPI                       1: match every Patient write into golden records        1 (on)
                               (the EMPI); 0 turns matching off ($match, $merge and
                               golden-record searches work either way)
EHR_CITIZEN_ID_KEY             HMAC key protecting citizen ID numbers (hashed for     demo key
                               matching; set a secret one in production)
=============================  =====================================================  ==========
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EHR_", extra="ignore")

    data_dir: Path = Path(".data")
    database_url: str = ""
    base_url: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    default_count: int = 50
    max_count: int = 1000
    max_or_values: int = 100
    statement_timeout_ms: int = 30_000
    request_timeout_s: float = 60.0
    max_bundle_entries: int = 10_000
    db_pool_size: int = 20
    empi: bool = True
    citizen_id_key: str = "ehr-demo-only: citizen-id hmac key, never use in production"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'ehr.sqlite').resolve()}"


@cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache or override the dependency)."""
    return Settings()
