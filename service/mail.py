"""Outgoing mail: an async SMTP client, or the log when mail to the log is chosen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from service.config import Settings

logger = logging.getLogger(__name__)

# Enough of a token to match a log line to a request; too little to use it.
SHOWN_SECRET_CHARS = 8


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    # What the text carries that must not reach a production log (a reset token).
    secret: str = ""


def masked(text: str, secret: str) -> str:
    if not secret:
        return text
    return text.replace(secret, f"{secret[:SHOWN_SECRET_CHARS]}…(masked)")


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        smtp_url = None if settings.mails_to_log else settings.smtp_url
        self.url = urlsplit(smtp_url) if smtp_url else None
        # A developer resets a password from the link in the log; in production
        # whoever reads the log must not be able to.
        self.mask_secrets = settings.env == "production"

    async def send(self, mail: Mail) -> None:
        if self.url is None:
            text = masked(mail.text, mail.secret) if self.mask_secrets else mail.text
            logger.info("mail to %s: %s\n%s", mail.to, mail.subject, text)
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.text)
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
            logger.exception("mail to %s could not be sent", mail.to)
