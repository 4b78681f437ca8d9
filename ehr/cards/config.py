"""Settings of the health one-card, from environment variables (prefix ``EHR_CARD_``).

Design: /work/shared/CARD.md. Used by the API (``fhir_api.cards``) and the ``ehr cards`` commands
alike, so a card issued at the command line verifies at the counter.

==================================  ==================================================  ==========
variable                            meaning                                             default
==================================  ==================================================  ==========
EHR_CARD_ISSUER                     ``iss`` of card credentials (stable: cards carry    see below
                                    it for years)
EHR_CARD_LIFETIME_DAYS              credential lifetime of an ISO-DEP card; retired     1825
                                    issuer keys stay published this long
EHR_CARD_KEY_ROTATION_DAYS          rotate the issuer key when older (0: by hand,       365
                                    ``ehr cards rotate-key``)
EHR_CARD_KEY_SECRET                 encrypts the issuer and SUN keys at rest            EHR_AUTH_
                                                                                        KEY_SECRET
EHR_CARD_NONCE_TTL_S                lifetime of a tap nonce                             120
EHR_CARD_MAX_NONCES                 outstanding nonces kept per terminal (oldest go)    32
EHR_CARD_TAP_TTL_S                  how long an accepted tap lets its terminal check    600
                                    the patient in
EHR_CARD_ALERT_RECIPIENT            who is told when a revoked card is presented        (none)
                                    (a reference: ``Organization/x``, ``Group/y``)
EHR_CARD_SUN_META_READ_KEY          the SUN tags' K_SDMMetaRead (32 hex digits)         generated
EHR_CARD_SUN_MASTER_KEY             master of the per-tag K_SDMFileRead (32 hex)        generated
EHR_CARD_SUN_URL                    the URL SUN tags are personalised with              see below
==================================  ==================================================  ==========

``EHR_CARD_ISSUER`` defaults to ``{CANONICAL_BASE}/health-card`` and ``EHR_CARD_SUN_URL`` to
``{CANONICAL_BASE}/t``. Without the two SUN variables the keys are generated on first use and kept
(encrypted) in the ``card_keys`` table.
"""

from __future__ import annotations

import os

from pydantic_settings import BaseSettings, SettingsConfigDict

from ehr.codesystems import CANONICAL_BASE

__all__ = ["CardSettings"]


class CardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EHR_CARD_", extra="ignore")

    issuer: str = f"{CANONICAL_BASE}/health-card"
    lifetime_days: int = 5 * 365
    key_rotation_days: int = 365
    key_secret: str = ""
    nonce_ttl_s: float = 120.0
    max_nonces: int = 32
    tap_ttl_s: float = 600.0
    alert_recipient: str = ""
    sun_meta_read_key: str = ""
    sun_master_key: str = ""
    sun_url: str = f"{CANONICAL_BASE}/t"

    @property
    def lifetime_s(self) -> int:
        return self.lifetime_days * 86_400

    def resolved_key_secret(self) -> str:
        """``EHR_CARD_KEY_SECRET``, else the authorization server's ``EHR_AUTH_KEY_SECRET``."""
        return self.key_secret or os.environ.get("EHR_AUTH_KEY_SECRET", "")
