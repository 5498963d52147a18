"""MQTT over TLS: the client's context from the settings, and handshake errors in words."""

from __future__ import annotations

import ssl

from ..settings import NO_KEY_PASSPHRASE, TlsSettings

X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64


def tls_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """The context for MQTT over TLS, or None for plain MQTT.

    Verifies the broker's certificate and that it names mqtt.host, unless `insecure`.
    The settings have already checked that the files exist and load.
    """
    if not tls.active:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=NO_KEY_PASSPHRASE)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_tls_error(error: OSError) -> str:
    """The handshake error with what to change for the common causes."""
    wrong_port_hint = "(is mqtt.port the broker's TLS port? usually 8883)"
    if isinstance(error, ConnectionResetError):
        return f"the broker hung up ({error.strerror}) {wrong_port_hint}"
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {error.verify_message}"
        if error.verify_code in (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH):
            return f"{reason} (mqtt.host must be a name the broker's certificate lists)"
        return f"{reason} (mqtt.tls.ca_file must hold the CA that signed the broker's certificate)"
    if isinstance(error, ssl.SSLError) and error.reason == "WRONG_VERSION_NUMBER":
        return f"{error} {wrong_port_hint}"
    return str(error)
