"""TLS settings checked where the master starts, so a bad certificate is exit 2, not 6 per worker.

The workers build their own contexts (uvicorn's ``create_ssl_context`` over the
stdlib ``ssl``), reading the files again at each boot: a reload serves renewed
certificates.
"""

from __future__ import annotations

import ssl
from typing import Any

from .config import ConfigError


def check_tls(config: Any) -> None:
    """Load ``config``'s certificate, key and CA files once; ConfigError naming the file that fails."""
    if not config.ssl_certfile:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    files = f"ssl_certfile {config.ssl_certfile}" + (f", ssl_keyfile {config.ssl_keyfile}"
                                                      if config.ssl_keyfile else "")
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    except OSError as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"{files}: cannot load the certificate and key: {_reason(exc)}") from None
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except OSError as exc:
            raise ConfigError(f"ssl_ca_certs {config.ssl_ca_certs}: cannot load: {_reason(exc)}") from None
    try:
        context.set_ciphers(config.ssl_ciphers)
    except ssl.SSLError:
        raise ConfigError(f"ssl_ciphers {config.ssl_ciphers!r}: no cipher matches") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or getattr(exc, "reason", None) or str(exc)
