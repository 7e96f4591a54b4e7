"""A real mosquitto on a free loopback port, stoppable and restartable by tests."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.wait import wait_until

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in MOSQUITTO_PATHS if Path(p).exists()), None)
    if not found:
        raise RuntimeError("mosquitto is not installed: run scripts/ensure-system-packages")
    return found


@dataclass(frozen=True)
class Pki:
    """Files of a test CA and the certificates it signed (keys are mode 0600)."""

    dir: Path

    def ca(self) -> str:
        return str(self.dir / "ca.crt")

    def cert(self, name: str) -> str:
        return str(self.dir / f"{name}.crt")

    def key(self, name: str) -> str:
        return str(self.dir / f"{name}.key")


def make_pki(directory: Path, names: list[str], server: str = "broker") -> Pki:
    """A fresh CA, a server certificate for localhost/127.0.0.1 and a client
    certificate per name (CN = the name: mosquitto's use_identity_as_username)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def subject(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(name: str, key: ec.EllipticCurvePrivateKey) -> None:
        path = directory / f"{name}.key"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject(f"smsgw test CA {directory.name}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_key("ca", ca_key)
    for name in [server, *names]:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if name == server else \
            ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (x509.CertificateBuilder().subject_name(subject(name)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if name == server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(name, key)
    return Pki(directory)


class Broker:
    """mosquitto with persistence, so sessions and queued batches survive its restart.

    With `pki`, the listener takes TLS only and requires a client certificate signed by
    that CA, whose CN becomes the username; with `acl`, that text is the ACL file.
    """

    def __init__(self, workdir: Path, pki: Pki | None = None, acl: str | None = None) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.log_file = self.dir / "broker.log"
        text = (
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'false' if pki else 'true'}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 100000\n"
        )
        if pki is not None:
            text += (f"cafile {pki.ca()}\ncertfile {pki.cert('broker')}\n"
                     f"keyfile {pki.key('broker')}\nrequire_certificate true\n"
                     "use_identity_as_username true\n")
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            text += f"acl_file {self.dir / 'acl'}\n"
        # Logs only for the TLS/ACL tests (they read them); the default stays silent.
        text += (f"log_dest file {self.log_file}\nlog_type all\n" if pki or acl
                 else "log_dest none\n")
        if os.geteuid() == 0:
            # Started as root, mosquitto becomes `mosquitto` and could not read our 0600
            # keys, the ACL or its log file in a private test directory, nor write its
            # persistence file there: a restart then lost every session, and whether HQ
            # heard the statuses republished after an outage became a race.
            text += "user root\n"
        self.conf.write_text(text)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.dir / "mosquitto.log", "ab")  # noqa: SIM115 - closed with the process
        self._proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                      stdout=log, stderr=log)
        wait_until(self._accepts, 10, "mosquitto to listen")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        wait_until(lambda: not self._accepts(), 5, "mosquitto to stop")
        time.sleep(0)  # yield
