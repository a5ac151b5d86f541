"""Mail transport (service/mail.py) against real SMTP servers started by the test:
STARTTLS required by smtp://, TLS from the start with smtps://, cleartext only by
?starttls=off; and the outbox that sends after the answer, retrying a bounded
number of times."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from service.config import ConfigError, Settings, SmtpEndpoint, smtp_endpoint
from service.mail import Mail, Mailer, MailError, Outbox
from service.models import User
from service.telemetry.tally import Tally
from tests.mailbox import (
    Certificate,
    Inbox,
    Security,
    eventually,
    make_certificate,
    smtp_server,
)
from tests.ports import free_port
from tests.support import FORGOT, AppMaker, cases

MAIL = Mail(to="someone@example.com", subject="Hello", text="A message.\n")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("smtp-tls"))


def mailer(settings: Settings, url: str, **changes: Any) -> Mailer:
    return Mailer(replace(settings, smtp_url=url, **changes))


def mail_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.mail"]


# --- SMTP_URL ------------------------------------------------------------------


ENDPOINTS = {
    "smtp-requires-starttls": (
        "smtp://mail.internal",
        SmtpEndpoint(
            "mail.internal", 25, None, None, implicit_tls=False, starttls=True
        ),
    ),
    "smtp-starttls-on": (
        "smtp://u%40x:p%3Aw@mail.internal:587?starttls=on",
        SmtpEndpoint(
            "mail.internal", 587, "u@x", "p:w", implicit_tls=False, starttls=True
        ),
    ),
    "smtp-starttls-bare-flag": (
        "smtp://mail.internal:587?starttls",
        SmtpEndpoint(
            "mail.internal", 587, None, None, implicit_tls=False, starttls=True
        ),
    ),
    "smtp-cleartext-by-choice": (
        "smtp://127.0.0.1:25?starttls=off",
        SmtpEndpoint("127.0.0.1", 25, None, None, implicit_tls=False, starttls=False),
    ),
    "smtps": (
        "smtps://mail.internal",
        SmtpEndpoint(
            "mail.internal", 465, None, None, implicit_tls=True, starttls=False
        ),
    ),
}


@cases("url, expected", ENDPOINTS)
def test_smtp_url_names_the_endpoint_and_its_protection(
    url: str, expected: SmtpEndpoint
) -> None:
    assert smtp_endpoint(url) == expected


BAD_URLS = {
    "other-scheme": (
        "http://mail.internal",
        r"^SMTP_URL must start with smtp:// or smtps://$",
    ),
    "unknown-parameter": (
        "smtp://mail.internal?tls=no",
        r"^SMTP_URL: unknown parameter 'tls'$",
    ),
    "starttls-maybe": (
        "smtp://mail.internal?starttls=maybe",
        r"^SMTP_URL: starttls is on or off$",
    ),
    "smtps-with-starttls": (
        "smtps://mail.internal?starttls=off",
        r"^SMTP_URL: smtps:// is TLS from the start; drop starttls$",
    ),
    "bad-port": ("smtp://mail.internal:99999", r"^SMTP_URL has an invalid port$"),
}


@cases("url, message", BAD_URLS)
def test_bad_smtp_url_refused_at_start(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"SMTP_URL": url})


def test_missing_smtp_ca_file_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^SMTP_CA_FILE: no file at "):
        Settings.from_env({"SMTP_CA_FILE": str(tmp_path / "none.pem")})


# --- the transport -------------------------------------------------------------


@pytest.mark.parametrize(
    "security",
    [
        pytest.param("starttls", id="smtp-upgrades-with-starttls"),
        pytest.param("tls", id="smtps-tls-from-the-start"),
    ],
)
async def test_mail_goes_over_tls(
    settings: Settings, certificate: Certificate, security: Security
) -> None:
    with smtp_server(security, certificate=certificate) as server:
        ca_file = str(certificate.cert_file)
        await mailer(settings, server.url, smtp_ca_file=ca_file).send(MAIL)

    assert server.inbox.recipients == [[MAIL.to]]
    assert server.inbox.encrypted == [True]


async def test_smtp_url_fails_closed_when_server_offers_no_starttls(
    settings: Settings,
) -> None:
    with (
        smtp_server("cleartext") as server,
        pytest.raises(MailError, match="STARTTLS"),
    ):
        await mailer(settings, f"smtp://127.0.0.1:{server.port}").send(MAIL)

    assert server.inbox.messages == []


async def test_smtp_url_refuses_an_untrusted_certificate(
    settings: Settings, certificate: Certificate
) -> None:
    """No SMTP_CA_FILE: the test's certificate is nobody the system trusts."""
    with (
        smtp_server("starttls", certificate=certificate) as server,
        pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        await mailer(settings, server.url).send(MAIL)

    assert server.inbox.messages == []


async def test_starttls_off_sends_in_cleartext_by_choice(settings: Settings) -> None:
    with smtp_server("cleartext") as server:
        await mailer(settings, server.url).send(MAIL)

    assert server.inbox.recipients == [[MAIL.to]]
    assert server.inbox.encrypted == [False]


async def test_log_backend_writes_the_mail_to_the_log(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.mail")

    await Mailer(replace(settings, mail_backend="log")).send(MAIL)

    [record] = mail_records(caplog)
    assert "someone@example.com: Hello\nA message." in record.getMessage()


# --- the outbox ----------------------------------------------------------------


class Refusing(Inbox):
    """A server that refuses every recipient for good (a 5xx)."""

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        return "550 No such mailbox"


@pytest.fixture
def tally() -> Tally:
    return Tally()


def outbox(settings: Settings, url: str, tally: Tally, **changes: Any) -> Outbox:
    changed = replace(settings, smtp_url=url, **changes)
    return Outbox(Mailer(changed), changed, tally)


async def test_outbox_gives_up_at_once_on_a_lasting_refusal(
    settings: Settings, tally: Tally, caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_server("cleartext", inbox=Refusing()) as server:
        box = outbox(settings, server.url, tally, mail_retry_delay=0.01)
        box.start()
        box.submit(MAIL)
        await eventually(lambda: tally["mail_failed"] == 1)
        await box.close()

    assert (tally["mail_failed"], tally["mail_retried"], tally["mail_sent"]) == (
        1,
        0,
        0,
    )
    [record] = mail_records(caplog)
    assert record.levelno == logging.ERROR
    assert "550" in record.getMessage()


async def test_outbox_full_drops_the_mail_and_counts_it(
    settings: Settings, tally: Tally, caplog: pytest.LogCaptureFixture
) -> None:
    """Not started: nothing drains the queue of one."""
    box = outbox(settings, "smtp://127.0.0.1:25?starttls=off", tally, mail_queue_size=1)

    assert box.submit(MAIL) is True
    assert box.submit(MAIL) is False
    assert tally["mail_dropped"] == 1
    assert "the mail queue is full" in mail_records(caplog)[-1].getMessage()


async def test_outbox_stops_retrying_after_its_bound(
    settings: Settings, tally: Tally, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="service.mail")
    nobody = f"smtp://127.0.0.1:{free_port()}?starttls=off"
    box = outbox(settings, nobody, tally, mail_retries=3, mail_retry_delay=0.01)
    box.start()
    box.submit(MAIL)
    await eventually(lambda: tally["mail_failed"] == 1)
    await box.close()

    assert (tally["mail_retried"], tally["mail_failed"]) == (3, 1)
    levels = [r.levelno for r in mail_records(caplog)]
    assert levels == [logging.WARNING] * 3 + [logging.ERROR]


async def test_mail_server_down_delays_the_mail_not_the_request(
    make_app: AppMaker,
    user: User,
    caplog: pytest.LogCaptureFixture,
    measurements: list[str],
) -> None:
    """The server is down when the reset mail is asked for: 202 at once; the
    mail arrives once the server is up, on a later try."""
    caplog.set_level(logging.WARNING, logger="service.mail")
    port = free_port()
    inbox = Inbox()
    url = f"smtp://127.0.0.1:{port}?starttls=off"
    async with make_app(smtp_url=url, mail_retries=20, mail_retry_delay=0.05) as app:
        started = time.perf_counter()
        response = await app.test_client().post(FORGOT, json={"email": user.email})
        answered = time.perf_counter() - started
        await eventually(lambda: bool(mail_records(caplog)))
        with smtp_server("cleartext", port=port, inbox=inbox):
            await inbox.wait_for()
        tally: Tally = app.extensions["tally"]

    assert response.status_code == 202
    assert answered < 1.0
    assert inbox.recipients == [[user.email]]
    assert tally["mail_retried"] >= 1
    assert (tally["mail_sent"], tally["mail_failed"]) == (1, 0)
    measurements.append(
        f"reset answered in {answered * 1000:.1f} ms with the mail server down"
    )


async def test_stopping_the_app_tries_queued_mail_once_more_without_waiting(
    make_app: AppMaker, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """A retry an hour away does not hold the app's shutdown: one last try, logged."""
    nobody = f"smtp://127.0.0.1:{free_port()}?starttls=off"
    async with make_app(smtp_url=nobody, mail_retry_delay=3600) as app:
        await app.test_client().post(FORGOT, json={"email": user.email})
        await eventually(lambda: bool(mail_records(caplog)))
        started = time.perf_counter()
    stopped = time.perf_counter() - started

    assert stopped < 5
    assert [r.levelno for r in mail_records(caplog)] == [logging.WARNING, logging.ERROR]


async def test_metrics_count_the_mail(make_app: AppMaker, user: User) -> None:
    with smtp_server("cleartext") as server:
        async with make_app(smtp_url=server.url, metrics_token="m" * 32) as app:
            client = app.test_client()
            await client.post(FORGOT, json={"email": user.email})
            await server.inbox.wait_for()
            await eventually(lambda: app.extensions["tally"]["mail_sent"] == 1)
            response = await client.get(
                "/metrics", headers={"Authorization": "Bearer " + "m" * 32}
            )
            text = await response.get_data(as_text=True)

    assert "mail_sent_total 1.0" in text
    assert "mail_failed_total 0.0" in text
    assert "pwned_passwords_misses_total 0.0" in text
