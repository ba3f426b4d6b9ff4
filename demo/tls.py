"""A local certificate authority for the demo and the tests: generated once, kept on disk.

The demo connection points ``verify`` at ``ca.pem``; it never turns verification off.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class LocalCA:
    """Paths of a local CA certificate and of a server certificate it issued for the loopback names."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the issued certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def ensure_local_ca(directory: Path) -> LocalCA:
    """Create the CA and a server certificate under ``directory`` unless they already exist."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = LocalCA(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    if not (ca.ca_cert.exists() and ca.server_cert.exists() and ca.server_key.exists()):
        import trustme  # demo/test dependency, imported only when a CA must be made

        authority = trustme.CA(organization_name="airflow-campaign-provider demo CA")
        issued = authority.issue_cert(*LOCAL_NAMES)
        authority.cert_pem.write_to_path(str(ca.ca_cert))
        issued.private_key_pem.write_to_path(str(ca.server_key))
        ca.server_cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        ca.server_key.chmod(0o600)
    return ca
