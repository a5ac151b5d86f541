"""A real SMTP server in the test process (aiosmtpd), cleartext, offering
STARTTLS, or TLS from the start, with a certificate made for the test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ports import free_port

MAIL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.02
Security = Literal["cleartext", "starttls", "tls"]


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    delay: float = 0.0
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    # Whether each message came over TLS.
    encrypted: list[bool] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        # session.ssl after STARTTLS; the transport's own TLS from the start.
        transport = server.transport
        from_start = transport is not None and transport.get_extra_info("ssl_object")
        self.encrypted.append(session.ssl is not None or bool(from_start))
        return "250 OK"

    async def wait_for(
        self, count: int = 1, *, seconds: float = MAIL_WAIT_SECONDS
    ) -> list[EmailMessage]:
        # The mail is sent by the outbox's task after the response.
        await eventually(lambda: len(self.messages) >= count, seconds=seconds)
        assert len(self.messages) >= count, "the mail did not arrive"
        return self.messages

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


async def eventually(
    condition: Callable[[], bool], *, seconds: float = MAIL_WAIT_SECONDS
) -> None:
    """Poll until `condition` holds or `seconds` pass (the SMTP server runs in its
    own thread, so there is no event to await)."""
    for _ in range(int(seconds / POLL_SECONDS)):
        if condition():
            return
        await asyncio.sleep(POLL_SECONDS)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    content: str = body.get_content()
    return content.replace("\r\n", "\n")


def link_in(message: EmailMessage, pattern: re.Pattern[str]) -> str:
    found = pattern.search(text_of(message))
    assert found is not None, text_of(message)
    return found.group(1)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificate(folder: Path) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@dataclass(frozen=True)
class SmtpServer:
    inbox: Inbox
    port: int
    # The SMTP_URL that reaches it as it is meant to be used.
    url: str


@contextmanager
def smtp_server(
    security: Security = "cleartext",
    *,
    certificate: Certificate | None = None,
    port: int | None = None,
    inbox: Inbox | None = None,
) -> Iterator[SmtpServer]:
    """Serve until the block ends. `cleartext` offers no STARTTLS; `starttls`
    offers it (not required); `tls` speaks TLS from the first byte."""
    inbox = inbox or Inbox()
    port = port or free_port()
    kwargs: dict[str, Any] = {}
    if security != "cleartext":
        assert certificate is not None, "a TLS server needs a certificate"
        context = certificate.server_context()
        kwargs = (
            {"tls_context": context, "require_starttls": False}
            if security == "starttls"
            else {"ssl_context": context}
        )
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    url = {
        "cleartext": f"smtp://127.0.0.1:{port}?starttls=off",
        "starttls": f"smtp://127.0.0.1:{port}",
        "tls": f"smtps://127.0.0.1:{port}",
    }[security]
    try:
        yield SmtpServer(inbox, port, url)
    finally:
        controller.stop()
