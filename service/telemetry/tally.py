"""Counts of things that went wrong out of sight (mail retried or lost, a range
service that did not answer), kept per app and exposed at /metrics."""

from __future__ import annotations

from collections import Counter

# Every name counted, with what it counts: /metrics lists each, zero or not.
COUNTED = {
    "mail_sent": "Mails the mail server accepted",
    "mail_retried": "Mail sends that failed and were tried again later",
    "mail_failed": "Mails given up on after their last try, or refused for good",
    "mail_dropped": "Mails not queued because the mail queue was full",
    "pwned_passwords_misses": (
        "Password checks the range service did not answer in time (password accepted)"
    ),
}


class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, name: str) -> None:
        if name not in COUNTED:
            raise KeyError(name)
        self.counts[name] += 1

    def __getitem__(self, name: str) -> int:
        return self.counts[name]
