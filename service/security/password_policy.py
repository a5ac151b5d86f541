"""PASSWORD_POLICY and PWNED_PASSWORDS_URL: which new passwords are refused.

`length` (the default) leaves it to the schemas' 8..128 characters, as Flask.
`common` also refuses what zxcvbn (Dropbox's estimator, with its lists of
common and leaked passwords, names and words) finds easy to guess, and a
password built mostly from the account's own address or names.

zxcvbn keeps the user's words in a module-level dictionary, so two calls at
once could see each other's words: every call runs on one thread of its own,
one after another, off the event loop. It refuses input past 72 characters by
default (its cost grows fast with length); a longer password is judged by its
first 72 characters.

PWNED_PASSWORDS_URL asks a range service of the HIBP form: only the first five
hex digits of the password's SHA-1 leave the service (`GET {url}/{prefix}`,
asking for padding), and the suffix is looked for in the `SUFFIX:COUNT` lines
it answers. A service that does not answer within PWNED_PASSWORDS_TIMEOUT
costs the check, not the request: the password is accepted, the miss logged
and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx
from zxcvbn import zxcvbn

from service.config import Settings
from service.errors import validation_error

logger = logging.getLogger("service.passwords")
TOO_COMMON = "This password is too common."
ZXCVBN_MAX_LENGTH = 72
# zxcvbn's scores run 0..4; 3 is "safely unguessable" against online attacks
# and throttled offline ones (under 10^10 guesses is below it).
MIN_SCORE = 3
# A password whose matches against the user's own words cover at least this
# share of it is built from them.
OWN_WORDS_SHARE = 0.5
WORD_SEPARATORS = re.compile(r"[^\w]+|_")


def own_words(email: str, names: Iterable[str]) -> list[str]:
    """The account's words a password must not be built from."""
    local, _, domain = email.lower().partition("@")
    words = {email.lower(), local, *WORD_SEPARATORS.split(local)}
    words.update(domain.split(".")[:-1])
    for name in names:
        words.add(name.lower())
        words.update(WORD_SEPARATORS.split(name.lower()))
    words.add("".join(name.lower() for name in names))
    return sorted(word for word in words if len(word) >= 3)


def is_guessable(password: str, words: list[str]) -> bool:
    """zxcvbn's verdict (blocking: run it through PasswordPolicy's thread)."""
    judged = password[:ZXCVBN_MAX_LENGTH]
    result = zxcvbn(judged, user_inputs=words, max_length=ZXCVBN_MAX_LENGTH)
    return result["score"] < MIN_SCORE or built_from(judged, words)


def built_from(password: str, words: list[str]) -> bool:
    """Whether the words (or their reverses) cover at least OWN_WORDS_SHARE of
    the password's characters, in any letter case."""
    folded = password.lower()
    covered = [False] * len(folded)
    for word in words:
        for form in (word, word[::-1]):
            start = folded.find(form)
            while start != -1:
                covered[start : start + len(form)] = [True] * len(form)
                start = folded.find(form, start + 1)
    return sum(covered) >= OWN_WORDS_SHARE * len(folded)


class PasswordPolicy:
    def __init__(
        self, settings: Settings, *, on_miss: Callable[[], None] | None = None
    ) -> None:
        self.common = settings.password_policy == "common"  # noqa: S105 (a name)
        self.range_url = (settings.pwned_passwords_url or "").rstrip("/") or None
        self.timeout = settings.pwned_passwords_timeout
        self.on_miss = on_miss or (lambda: None)
        self._estimator: ThreadPoolExecutor | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def active(self) -> bool:
        return self.common or self.range_url is not None

    async def check(
        self, password: str, *, field: str, email: str, names: Iterable[str]
    ) -> None:
        """Raises the contract's 400 on `field` for a refused password."""
        if self.common and await self._guessable(password, own_words(email, names)):
            raise validation_error(field, TOO_COMMON)
        if self.range_url is not None and await self.seen_in_breaches(
            password, self.range_url
        ):
            raise validation_error(field, TOO_COMMON)

    async def _guessable(self, password: str, words: list[str]) -> bool:
        if self._estimator is None:
            self._estimator = ThreadPoolExecutor(1, thread_name_prefix="zxcvbn")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._estimator, is_guessable, password, words
        )

    async def seen_in_breaches(self, password: str, range_url: str) -> bool:
        """Whether the range service lists the password (False: no answer)."""
        digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest()
        prefix, suffix = digest[:5].upper(), digest[5:].upper()
        if self._http is None:
            self._http = httpx.AsyncClient()
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.get(
                    f"{range_url}/{prefix}", headers={"Add-Padding": "true"}
                )
                response.raise_for_status()
                text = response.text
        except (TimeoutError, httpx.HTTPError) as error:
            self.on_miss()
            logger.warning(
                "the pwned-passwords range service did not answer (%s); "
                "the password was accepted unchecked",
                type(error).__name__ if isinstance(error, TimeoutError) else error,
                extra={"fields": {"event": "pwned_passwords_miss"}},
            )
            return False
        return listed(text, suffix)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._estimator is not None:
            self._estimator.shutdown(wait=False, cancel_futures=True)
            self._estimator = None


def listed(text: str, suffix: str) -> bool:
    """Whether `suffix` is among the `SUFFIX:COUNT` lines with a count above 0
    (padding lines count 0)."""
    for line in text.splitlines():
        found, _, count = line.strip().partition(":")
        if found.upper() == suffix:
            try:
                return int(count) > 0
            except ValueError:
                return False
    return False
