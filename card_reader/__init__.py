"""The counter terminal of the resident health one-card (a separate process and machine).

It talks to the API over HTTP only and never imports the store (import-linter enforces this).

- :mod:`card_reader.transport`: the one-method card transport, APDU helpers and
  :func:`collect_evidence` (what a tap sends to the server).
- :mod:`card_reader.nfc`: the nfcpy adapter (:class:`card_reader.nfc.NfcReader`).
- :mod:`card_reader.emulators`: emulated cards on nfcpy's UDP driver, for self-tests.
"""

from card_reader.transport import (
    CardError,
    CardNotSupported,
    CardProtocolError,
    CardRemoved,
    ReaderError,
    Transport,
    collect_evidence,
)

__all__ = [
    "CardError",
    "CardNotSupported",
    "CardProtocolError",
    "CardRemoved",
    "ReaderError",
    "Transport",
    "collect_evidence",
]
