"""TOTP codes at chosen times, recovery codes, and the sealing of secrets."""

from __future__ import annotations

import base64

import pyotp
import pytest

from service.security.totp import (
    RECOVERY_CODE_COUNT,
    SecretBox,
    code_at,
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    recovery_code_hash,
)

# RFC 6238's SHA-1 seed, "12345678901234567890", in base32.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
KEY = "mfa-key-for-the-tests-0123456789abcdef"
OLD_KEY = "an-older-mfa-key-for-the-tests-0123456789"
STEP_START = 1_800_000_000 - 1_800_000_000 % 30  # a step's first second


def test_rfc_6238_vector_sha1_six_digits() -> None:
    # RFC 6238 appendix B: T = 59 s gives 94287082; six digits are its last six.
    assert code_at(RFC_SECRET, 59) == "287082"
    assert matching_step(RFC_SECRET, "287082", now=59) == 1


def test_codes_of_one_step_either_side_match_two_steps_do_not() -> None:
    secret = new_secret()
    step = STEP_START // 30

    def code(offset: int) -> str:
        return pyotp.TOTP(secret).at(STEP_START + offset * 30)

    assert matching_step(secret, code(0), now=STEP_START) == step
    assert matching_step(secret, code(-1), now=STEP_START) == step - 1
    assert matching_step(secret, code(1), now=STEP_START) == step + 1
    assert matching_step(secret, code(-2), now=STEP_START) is None
    assert matching_step(secret, code(2), now=STEP_START) is None


def test_the_step_changes_on_the_thirty_second_edge() -> None:
    secret = new_secret()
    before = pyotp.TOTP(secret).at(STEP_START - 31)  # two steps before the edge's

    # One second before the edge it is the step before's neighbour; at the edge, not.
    assert matching_step(secret, before, now=STEP_START - 0.001) is not None
    assert matching_step(secret, before, now=STEP_START) is None


def test_a_used_step_and_every_earlier_one_never_match_again() -> None:
    secret = new_secret()
    step = STEP_START // 30
    now_code = code_at(secret, STEP_START)
    earlier = pyotp.TOTP(secret).at(STEP_START - 30)
    later = pyotp.TOTP(secret).at(STEP_START + 30)

    assert matching_step(secret, now_code, now=STEP_START, after=step) is None
    assert matching_step(secret, earlier, now=STEP_START, after=step) is None
    assert matching_step(secret, later, now=STEP_START, after=step) == step + 1


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5", "-12345"]
)
def test_malformed_codes_never_match(code: str) -> None:
    assert matching_step(RFC_SECRET, code, now=59) is None


def test_spaces_inside_a_code_are_ignored() -> None:
    assert matching_step(RFC_SECRET, "287 082", now=59) == 1


def test_provisioning_uri_names_the_account_and_issuer() -> None:
    uri = provisioning_uri(RFC_SECRET, account="ada@example.com", issuer="Acme")

    assert uri.startswith("otpauth://totp/Acme:ada%40example.com?")
    assert f"secret={RFC_SECRET}" in uri
    assert "issuer=Acme" in uri


def test_ten_distinct_recovery_codes_of_80_bits() -> None:
    codes = new_recovery_codes()

    assert len(set(codes)) == RECOVERY_CODE_COUNT == 10
    for code in codes:
        groups = code.split("-")
        assert [len(group) for group in groups] == [4, 4, 4, 4]


def test_a_recovery_code_hash_ignores_case_spaces_and_hyphens() -> None:
    assert recovery_code_hash("ab12-cd34-ef56-gh78") == recovery_code_hash(
        " AB12CD34 EF56GH78 "
    )
    assert recovery_code_hash("ab12-cd34-ef56-gh78") != recovery_code_hash(
        "ab12-cd34-ef56-gh79"
    )


def test_a_sealed_secret_opens_under_its_key_and_context_only() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("JBSWY3DPEHPK3PXP", context="totp:1")

    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, context="totp:1") == ("JBSWY3DPEHPK3PXP", True)
    with pytest.raises(ValueError, match="no MFA encryption key"):
        box.open(sealed, context="totp:2")
    with pytest.raises(ValueError, match="no MFA encryption key"):
        SecretBox(OLD_KEY).open(sealed, context="totp:1")


def test_a_fallback_key_opens_what_it_sealed_and_says_so() -> None:
    sealed = SecretBox(OLD_KEY).seal("JBSWY3DPEHPK3PXP", context="totp:1")

    rotated = SecretBox(KEY, [OLD_KEY])

    assert rotated.open(sealed, context="totp:1") == ("JBSWY3DPEHPK3PXP", False)


def test_two_seals_of_one_secret_differ() -> None:
    box = SecretBox(KEY)

    assert box.seal("S", context="c") != box.seal("S", context="c")
