"""TLS for the server's ports and for whoever dials them (workers, the CLI).

The server serves gRPC and HTTP over TLS when given a certificate and key; with a client CA, the
gRPC port also requires every client to present a certificate that CA signed (mutual TLS: the
workers). Clients verify the server against a CA file (or the system's roots) and may present a
certificate of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from hodei.domain.errors import HodeiError


class TlsConfigError(HodeiError):
    """A certificate, key or CA file that cannot be used."""


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate and key, and the CA its gRPC clients must be signed by."""

    cert: Path
    key: Path
    client_ca: Path | None = None  # set: mutual TLS is required on the gRPC port

    def grpc_credentials(self) -> grpc.ServerCredentials:
        cert, key = _read(self.cert, "TLS certificate"), _read(self.key, "TLS key")
        assert cert is not None
        assert key is not None
        ca = _read(self.client_ca, "client CA")
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )

    def check(self) -> None:
        """Raises TlsConfigError when a file is missing or unreadable."""
        _read(self.cert, "TLS certificate")
        _read(self.key, "TLS key")
        _read(self.client_ca, "client CA")


@dataclass(frozen=True)
class ClientTls:
    """How a client dials a TLS server: the CA to verify it with (None: the system's roots),
    and the certificate and key to present when the server asks for one."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_env(cls) -> ClientTls | None:
        """HODEI_TLS_CA, HODEI_TLS_CLIENT_CERT, HODEI_TLS_CLIENT_KEY; None when none is set
        (plaintext)."""
        values = {
            name: os.environ.get(var) or None
            for name, var in (
                ("ca", "HODEI_TLS_CA"),
                ("cert", "HODEI_TLS_CLIENT_CERT"),
                ("key", "HODEI_TLS_CLIENT_KEY"),
            )
        }
        if not any(values.values()):
            return None
        return cls(**{k: Path(v) if v else None for k, v in values.items()})

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError("a client certificate needs its key, and the key its certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA file"),
            private_key=_read(self.key, "client key"),
            certificate_chain=_read(self.cert, "client certificate"),
        )


def channel(
    address: str,
    tls: ClientTls | None,
    options: list[tuple[str, int]] | None = None,
    interceptors: list[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A channel to ``address``: over TLS when ``tls`` is given, else plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(
        address, tls.credentials(), options=options, interceptors=interceptors
    )
