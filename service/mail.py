"""Outgoing mail: an async SMTP client, or the log when no server is configured."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from service.config import Settings

logger = logging.getLogger(__name__)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self.url = urlsplit(settings.smtp_url) if settings.smtp_url else None

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        if self.url is None:
            # The development default: read the message (and its link) in the log.
            logger.info("mail (no SMTP_URL set) to %s: %s\n%s", to, subject, text)
            return
        try:
            await aiosmtplib.send(
                message,
                hostname=self.url.hostname or "localhost",
                port=self.url.port or (465 if self.url.scheme == "smtps" else 25),
                username=unquote(self.url.username) if self.url.username else None,
                password=unquote(self.url.password) if self.url.password else None,
                use_tls=self.url.scheme == "smtps",
                start_tls=True if "starttls" in self.url.query else None,
                timeout=10,
            )
        except (aiosmtplib.SMTPException, OSError):
            # Runs after the response was sent: nobody to answer but the log.
            logger.exception("mail to %s could not be sent", to)
