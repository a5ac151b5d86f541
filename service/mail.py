"""Outgoing mail: an async SMTP client, or the log when mail to the log is chosen.

Mail leaves through the Outbox, a bounded queue drained by one task while the
app serves: the request that causes a mail never waits for the mail server,
and a server that is down delays the mail (tried again a bounded number of
times), never the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from service.config import Settings, smtp_endpoint
from service.telemetry.tally import Tally

logger = logging.getLogger(__name__)

# Enough of a token to match a log line to a request; too little to use it.
SHOWN_SECRET_CHARS = 8
SMTP_TIMEOUT_SECONDS = 10.0
# How long stopping the app waits for the queue's last mails, each tried once.
DRAIN_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    # What the text carries that must not reach a production log (a reset token).
    secret: str = ""


class MailError(Exception):
    """A send that failed; `lasting` when trying again cannot help (a 5xx)."""

    def __init__(self, reason: str, *, lasting: bool) -> None:
        super().__init__(reason)
        self.lasting = lasting


def masked(text: str, secret: str) -> str:
    if not secret:
        return text
    return text.replace(secret, f"{secret[:SHOWN_SECRET_CHARS]}…(masked)")


class Mailer:
    """One attempt at one mail: SMTP_URL's server, or the log."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        smtp_url = None if settings.mails_to_log else settings.smtp_url
        self.endpoint = smtp_endpoint(smtp_url) if smtp_url else None
        self.tls_context: ssl.SSLContext | None = None
        if self.endpoint is not None and (
            self.endpoint.implicit_tls or self.endpoint.starttls
        ):
            self.tls_context = ssl.create_default_context(
                cafile=settings.smtp_ca_file or None
            )
        # A developer resets a password from the link in the log; in production
        # whoever reads the log must not be able to.
        self.mask_secrets = settings.env == "production"

    async def send(self, mail: Mail) -> None:
        """Raises MailError when the server did not take the mail."""
        if self.endpoint is None:
            text = masked(mail.text, mail.secret) if self.mask_secrets else mail.text
            logger.info("mail to %s: %s\n%s", mail.to, mail.subject, text)
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.text)
        endpoint = self.endpoint
        try:
            await aiosmtplib.send(
                message,
                hostname=endpoint.hostname,
                port=endpoint.port,
                username=endpoint.username,
                password=endpoint.password,
                use_tls=endpoint.implicit_tls,
                # True: a server that offers no STARTTLS gets nothing, not cleartext.
                start_tls=endpoint.starttls,
                tls_context=self.tls_context,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPResponseException as error:
            raise MailError(str(error), lasting=error.code >= 500) from error
        except aiosmtplib.SMTPRecipientsRefused as error:
            lasting = all(each.code >= 500 for each in error.recipients)
            raise MailError(str(error), lasting=lasting) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise MailError(
                str(error) or type(error).__name__, lasting=False
            ) from error


class Outbox:
    """A bounded queue of mails, sent one after another by a task of its own."""

    def __init__(self, mailer: Mailer, settings: Settings, tally: Tally) -> None:
        self.mailer = mailer
        self.tally = tally
        self.retries = settings.mail_retries
        self.retry_delay = settings.mail_retry_delay
        self.queue: asyncio.Queue[Mail] = asyncio.Queue(settings.mail_queue_size)
        self.closing = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    def submit(self, mail: Mail) -> bool:
        """Queue the mail without waiting; False (logged, counted) when full."""
        try:
            self.queue.put_nowait(mail)
        except asyncio.QueueFull:
            self.tally.add("mail_dropped")
            logger.error("mail to %s dropped: the mail queue is full", mail.to)
            return False
        return True

    def start(self) -> None:
        self.closing.clear()
        self.worker = asyncio.create_task(self._run(), name="outbox")

    async def close(self) -> None:
        """Try each queued mail once more, without waiting between tries."""
        self.closing.set()
        if self.worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), DRAIN_SECONDS)
        self.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.worker
        self.worker = None
        while not self.queue.empty():
            lost = self.queue.get_nowait()
            self.queue.task_done()
            self.tally.add("mail_failed")
            logger.error("mail to %s not sent: the service stopped", lost.to)

    async def _run(self) -> None:
        while True:
            mail = await self.queue.get()
            try:
                await self._deliver(mail)
            finally:
                self.queue.task_done()

    async def _deliver(self, mail: Mail) -> None:
        for attempt in range(self.retries + 1):
            try:
                await self.mailer.send(mail)
            except MailError as error:
                if error.lasting or attempt == self.retries or self.closing.is_set():
                    self.tally.add("mail_failed")
                    logger.error(
                        "mail to %s could not be sent (%s); giving up after %d "
                        "attempt(s)",
                        mail.to,
                        error,
                        attempt + 1,
                    )
                    return
                delay = self.retry_delay * 2**attempt
                self.tally.add("mail_retried")
                logger.warning(
                    "mail to %s could not be sent (%s); trying again in %.1f s",
                    mail.to,
                    error,
                    delay,
                )
                # Stopping the app ends the wait: the last try happens at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), delay)
            else:
                if self.mailer.endpoint is not None:
                    self.tally.add("mail_sent")
                return
