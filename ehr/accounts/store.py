"""The account store: every repository of the authorization server on one database engine.

from ehr.accounts import AccountStore
accounts = AccountStore(store.engine)                 # the FHIR store's engine
user = accounts.users.add("zhang.wei", role="citizen", fhir_user="Patient/p1", password="…")
new = accounts.clients.add("Booking app", scopes="launch/patient patient/*.rs openid fhirUser",
                           client_type="public", redirect_uris=["https://app.example/cb"])
"""

from __future__ import annotations

from sqlalchemy import Engine

from ehr.storage.db import make_engine

from .clients import Clients
from .grants import AssertionIds, Codes, RefreshTokens, Revocations
from .keys import SigningKeys
from .launch import Launches
from .passwords import Passwords
from .users import LoginPolicy, Users

__all__ = ["AccountStore"]


class AccountStore:
    def __init__(
        self,
        engine: Engine | str,
        *,
        passwords: Passwords | None = None,
        login_policy: LoginPolicy | None = None,
        key_secret: str = "",
        signing_alg: str = "ES256",
        rotate_keys_after_s: int = 0,
        publish_retired_keys_s: int = 2 * 86_400,
    ) -> None:
        self.engine = make_engine(engine) if isinstance(engine, str) else engine
        self.passwords = passwords or Passwords()
        self.users = Users(self.engine, self.passwords, login_policy)
        self.clients = Clients(self.engine)
        self.codes = Codes(self.engine)
        self.refresh_tokens = RefreshTokens(self.engine)
        self.revocations = Revocations(self.engine)
        self.assertion_ids = AssertionIds(self.engine)
        self.launches = Launches(self.engine)
        self.keys = SigningKeys(
            self.engine,
            secret=key_secret,
            alg=signing_alg,
            rotate_after_s=rotate_keys_after_s,
            publish_retired_s=publish_retired_keys_s,
        )

    def revoke_grant(self, grant_id: str, until_us: int, reason: str) -> None:
        """Revoke a grant: its refresh tokens and (via the revocation list) its access tokens."""
        self.refresh_tokens.revoke_family(grant_id)
        self.revocations.revoke_grant(grant_id, until_us, reason)
