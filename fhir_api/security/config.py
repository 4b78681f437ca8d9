"""Settings of the enforcement layer, from environment variables.

=================================  ========================================================  ==========
variable                           meaning                                                   default
=================================  ========================================================  ==========
EHR_AUTH_DISABLED                  ``1``: no token needed, everything allowed (local demos   0
                                   only; every request is still audited, as anonymous)
EHR_SECURITY_AUDIT                 write the audit trail                                     1
EHR_SECURITY_SPOOL_DIR             the audit spool (crash safety); per database a subfolder  {data}/audit-spool
EHR_SECURITY_AUDIT_SPOOL           ``0``: no spool (a crash loses the queued records)        1
EHR_SECURITY_AUDIT_FLUSH_MS        how often queued audit records go to the database (short   250
                                   batches at light load: reads wait less behind them)
EHR_SECURITY_AUDIT_FSYNC_MS        how often the audit spool is made durable (fsync)          50
EHR_SECURITY_AUDIT_BATCH           most records per audit transaction (a chain block)        5000
EHR_SECURITY_AUDIT_MAX_QUEUE       records waiting before requests are refused (503)         200000
EHR_SECURITY_AUDIT_MATERIALIZE     idle | eager | never: when AuditEvent resources are made  idle
EHR_SECURITY_AUDIT_MAX_LAG         events not yet AuditEvent resources before it is forced   50000
EHR_SECURITY_AUDIT_SHIPPER         ``process``: the workers only spool their audit records;  thread
                                   a shipper process moves them into the chain (``ehr
                                   serve`` sets it and runs the shipper); ``thread``: a
                                   writer thread in each worker does
EHR_SECURITY_AUDIT_SHIPPER_NICE    the shipper process's niceness (it yields the cores to    10
                                   the workers; at full load it still gets ~5 % of them,
                                   more than it needs)
EHR_SECURITY_AUDIT_SHIPPER_YIELD   records the shipper handles between yields of its core     16
                                   (``sched_yield``: a request waiting for the core runs;
                                   0: never), while it keeps up
EHR_SECURITY_TOKEN_CACHE           verified tokens kept (signature checked once per token)   10000
EHR_SECURITY_REVOCATION_TTL_S      how long a "not revoked" answer is trusted                5
EHR_SECURITY_SITE                  ``AuditEvent.source.site``                                ehr-exchange
=================================  ========================================================  ==========
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SecuritySettings"]


class SecuritySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EHR_SECURITY_", extra="ignore", populate_by_name=True
    )

    auth_disabled: bool = Field(default=False, validation_alias="EHR_AUTH_DISABLED")
    audit: bool = True
    spool_dir: Path | None = None
    audit_spool: bool = True
    audit_flush_ms: int = 250
    audit_fsync_ms: int = 50
    audit_batch: int = 5000
    audit_max_queue: int = 200_000
    audit_materialize: str = "idle"
    audit_max_lag: int = 50_000
    audit_shipper: str = "thread"
    audit_shipper_nice: int = 10
    audit_shipper_yield: int = 16
    token_cache: int = 10_000
    revocation_ttl_s: float = 5.0
    site: str = "ehr-exchange"

    @property
    def shipped(self) -> bool:
        """Do the workers leave their audit records to a shipper process?"""
        return self.audit and self.audit_spool and self.audit_shipper == "process"

    def spool_for(self, data_dir: Path, database_url: str) -> Path:
        """The spool folder of one database (so a replay never lands in another database)."""
        root = self.spool_dir or (data_dir / "audit-spool")
        return root / hashlib.sha256(database_url.encode()).hexdigest()[:16]
