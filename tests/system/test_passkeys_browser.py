"""Passkeys in a real browser: Debian's headless `chromium`, driven over the
DevTools protocol, with a virtual platform authenticator (WebAuthn.enable,
WebAuthn.addVirtualAuthenticator: CTAP2, internal transport, resident keys,
user verification). A small page served from http://localhost:PORT (a secure
context) calls the API with fetch and hands its options to
navigator.credentials.create()/get() through the browser's own JSON parsers
(PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON),
sending back what PublicKeyCredential.toJSON() gives: the forms the contract
promises, checked by the browser itself. A passkey signs in alone, and as the
second factor of a password login.

The instance is what `make run` serves (migrated, seeded: admin@example.com /
admin123), with the page's origin as its WebAuthn origin and CORS origin.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from tests.support import ROOT
from tests.system.browser import CHROMIUM, SKIP_REASON, Page, launch, serve_html
from tests.system.harness import ServedApp, clean_environment, run_entry_point

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)

ADMIN = ("admin@example.com", "admin123")
# Seeded too; each test signs in as an account of its own.
MEMBERS = [(f"user{n}@example.com", "password123") for n in (1, 2)]
# The page: the API's calls, and the two ceremonies as a front end writes them.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>passkeys</title>
<script>
const API = "%(api)s/api/v1";

async function call(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function login(email, password) {
  return call("POST", "/auth/login", { body: { email, password } });
}

async function addPasskey(token, name) {
  const options = await call("POST", "/auth/passkeys/options", { token });
  if (options.status !== 200) return options;
  const credential = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.body),
  });
  return call("POST", "/auth/passkeys", {
    token,
    body: { credential: credential.toJSON(), name },
  });
}

// A passkey alone (no mfaToken), or the second factor of a password login.
async function signInWithPasskey(mfaToken) {
  const step = mfaToken === undefined ? {} : { mfa_token: mfaToken };
  const options = await call("POST", "/auth/passkeys/login/options", { body: step });
  if (options.status !== 200) return options;
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.body),
  });
  return call("POST", "/auth/passkeys/login", {
    body: { credential: credential.toJSON(), ...step },
  });
}

async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return error.name;
  }
}
</script>
"""
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@pytest.fixture(scope="module")
def page_and_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page's URL, its API served beside it with the page's origin trusted."""
    folder = tmp_path_factory.mktemp("passkeys-browser")
    api_port = free_port()
    with serve_html(PAGE % {"api": f"http://127.0.0.1:{api_port}"}) as origin:
        env = clean_environment(
            DATABASE_URL=f"sqlite:///{folder / 'service.db'}",
            WEBAUTHN_RP_ID="localhost",
            WEBAUTHN_RP_NAME="service under test",
            WEBAUTHN_ORIGINS=origin,
            # The page at its loopback address too (another origin, no passkeys).
            CORS_ORIGINS=f"{origin},{origin.replace('//localhost:', '//127.0.0.1:')}",
        )
        config = str(ROOT / "pyproject.toml")
        run_entry_point("alembic", "-c", config, "upgrade", "head", env=env, cwd=folder)
        run_entry_point("quart", "--app", "service.asgi", "seed-db", env=env, cwd=ROOT)
        with ServedApp(env, cwd=ROOT, log_folder=folder, port=api_port):
            yield f"{origin}/passkeys"


@pytest.fixture
async def page(page_and_api: str, tmp_path: Path) -> AsyncIterator[tuple[Page, str]]:
    """The page in a fresh browser, and its virtual authenticator's id."""
    async with launch(tmp_path / "profile") as browser:
        tab = await browser.new_page(page_and_api)
        await tab.send("WebAuthn.enable", {"enableUI": False})
        added = await tab.send(
            "WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR}
        )
        yield tab, added["authenticatorId"]


async def run(page: Page, script: str) -> Any:
    return await page.evaluate(f"(async () => {{ {script} }})()")


async def password_login(page: Page, account: tuple[str, str]) -> Any:
    email, password = map(json.dumps, account)
    return await run(page, f"return await login({email}, {password});")


async def access_token(page: Page, account: tuple[str, str]) -> str:
    """The access token of an account without a second factor, as a literal."""
    answer = await password_login(page, account)
    assert answer["status"] == 200, answer
    return json.dumps(answer["body"]["access_token"])


async def test_a_passkey_registered_and_signed_in_with_in_chromium(
    page: tuple[Page, str],
) -> None:
    tab, authenticator_id = page
    token = await access_token(tab, ADMIN)

    added = await run(tab, f"return await addPasskey({token}, 'Chromium');")
    [stored] = (
        await tab.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    )["credentials"]
    signed_in = await run(tab, "return await signInWithPasskey();")
    passkey_token = json.dumps(signed_in["body"]["access_token"])
    me = await run(
        tab, f"return await call('GET', '/users/me', {{ token: {passkey_token} }});"
    )
    listed = await run(
        tab, f"return await call('GET', '/auth/passkeys', {{ token: {token} }});"
    )

    assert added["status"] == 201, added
    assert added["body"]["name"] == "Chromium"
    # A discoverable credential for this relying party, made with user verification.
    assert (stored["isResidentCredential"], stored["rpId"]) == (True, "localhost")
    assert signed_in["status"] == 200, signed_in
    assert set(signed_in["body"]) == {"access_token", "refresh_token", "token_type"}
    assert (me["status"], me["body"]["email"]) == (200, ADMIN[0])
    [passkey] = [
        each for each in listed["body"]["passkeys"] if each["id"] == added["body"]["id"]
    ]
    assert passkey["last_used_at"] is not None


async def test_chromium_will_not_make_a_second_passkey_on_one_authenticator(
    page: tuple[Page, str],
) -> None:
    """The creation options exclude the account's passkeys, in the form the browser
    reads: the authenticator that holds one refuses to make another."""
    tab, _ = page
    token = await access_token(tab, MEMBERS[0])
    first = await run(tab, f"return await addPasskey({token}, 'First');")

    refused = await run(tab, f"return await failure(addPasskey({token}, 'Again'));")

    assert first["status"] == 201, first
    assert refused == "InvalidStateError"


async def test_a_passkey_as_the_second_factor_of_a_password_login_in_chromium(
    page: tuple[Page, str],
) -> None:
    tab, _ = page
    token = await access_token(tab, MEMBERS[1])
    added = await run(tab, f"return await addPasskey({token}, 'Second factor');")

    asked = await password_login(tab, MEMBERS[1])
    mfa_token = json.dumps(asked["body"]["mfa_token"])
    finished = await run(tab, f"return await signInWithPasskey({mfa_token});")
    me = await run(
        tab,
        "return await call('GET', '/users/me', "
        f"{{ token: {json.dumps(finished['body']['access_token'])} }});",
    )

    assert added["status"] == 201, added
    assert asked["status"] == 401, asked
    assert asked["body"]["error"] == "Second factor required"
    assert asked["body"]["methods"] == ["passkey"]
    assert finished["status"] == 200, finished
    assert (me["status"], me["body"]["email"]) == (200, MEMBERS[1][0])


async def test_an_assertion_from_a_page_of_another_origin_does_not_sign_in(
    page: tuple[Page, str], page_and_api: str
) -> None:
    """The same page at 127.0.0.1 (not a WEBAUTHN_ORIGINS origin) gets options
    for RP ID localhost, which the browser refuses to use there."""
    tab, _ = page
    await tab.navigate(page_and_api.replace("//localhost:", "//127.0.0.1:"))

    refused = await run(tab, "return await failure(signInWithPasskey());")

    assert refused == "SecurityError"
