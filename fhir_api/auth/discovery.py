"""Discovery documents.

* SMART configuration, ``{fhir base}/.well-known/smart-configuration``
  (https://hl7.org/fhir/smart-app-launch/conformance.html#using-well-known);
* OpenID Connect discovery, ``{issuer}/.well-known/openid-configuration``
  (https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig);
* the ``rest.security`` section of the CapabilityStatement with the SMART ``oauth-uris``
  extension (http://hl7.org/fhir/smart-app-launch/StructureDefinition/oauth-uris).
"""

from __future__ import annotations

from typing import Any

from ehr.accounts import SCOPES_SUPPORTED

from .adapter import Urls
from .grants import ASSERTION_ALGS

__all__ = ["CAPABILITIES", "openid_configuration", "security_section", "smart_configuration"]

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-passthrough-banner",
    "context-passthrough-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]


def smart_configuration(urls: Urls, signing_alg: str) -> dict[str, Any]:
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "end_session_endpoint": urls.end_session,  # OIDC RP-Initiated Logout (apps sign out)
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "grant_types_supported": GRANT_TYPES,
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": [signing_alg],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(urls: Urls, signing_alg: str) -> dict[str, Any]:
    return {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "jwks_uri": urls.jwks,
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "end_session_endpoint": urls.end_session,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signing_alg],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "fhirUser",
            "name",
            "locale",
        ],
        "ui_locales_supported": ["zh-CN", "en"],
        "request_parameter_supported": False,
    }


def security_section(urls: Urls) -> dict[str, Any]:
    """``CapabilityStatement.rest.security`` advertising SMART on FHIR."""
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "token", "valueUri": urls.token},
                    {"url": "authorize", "valueUri": urls.authorize},
                    {"url": "introspect", "valueUri": urls.introspect},
                    {"url": "revoke", "valueUri": urls.revoke},
                ],
            }
        ],
        "description": "SMART App Launch 2 (authorization code + PKCE, backend services with "
        f"private_key_jwt); discovery at {urls.fhir_base}/.well-known/smart-configuration",
    }
