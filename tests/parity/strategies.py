"""Hypothesis strategies for the operations the harness sends to both servers."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.parity.differential import BASE_USERS, UNKNOWN_ID, Op
from tests.support import PASSWORD

# Account indexes: 0 is the admin, 1..BASE_USERS the seeded users, higher ones
# the users a sequence registered (the harness wraps them around).
ACCOUNTS = st.integers(min_value=0, max_value=BASE_USERS + 3)
NAMES = ["alice", "bob", "user1", "user2", "admin"]
DOMAINS = ["example.com", "Example.COM", "example.org"]
TEXT = st.text(
    alphabet=st.sampled_from("abcXYZ019 -'éßİ日😀"),
    min_size=0,
    max_size=8,
)
GOOD_TEXT = st.sampled_from(["Ann", "Bo", "Zoë", "日本", "😀", "O'Neil", "a" * 100])


def case_variant(text: str, variant: str) -> str:
    return {"lower": text, "upper": text.upper(), "title": text.title()}[variant]


@st.composite
def emails(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    domain = draw(st.sampled_from(DOMAINS))
    variant = draw(st.sampled_from(["lower", "lower", "upper", "title"]))
    return case_variant(f"{name}@{domain}", variant)


ENCODINGS = st.sampled_from(
    ["json"] * 12 + ["json-charset", "malformed", "empty", "text", "form", "none"]
)
BAD_EMAILS = st.sampled_from(
    ["", "not-an-email", "a@", "@b.c", "a b@c.d", "x" * 250 + "@example.com", "é@x.y"]
)
WRONG_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [None, 7, True, [], {}, "", "short", "x" * 129, "a" * 101]
)


@st.composite
def registration(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {
        "email": draw(emails()),
        "password": PASSWORD,
        "first_name": draw(GOOD_TEXT),
        "last_name": draw(GOOD_TEXT),
    }
    broken = draw(
        st.sampled_from(["valid"] * 6 + ["missing", "wrong", "extra", "email", "shape"])
    )
    if broken == "missing":
        del body[draw(st.sampled_from(sorted(body)))]
    elif broken == "wrong":
        body[draw(st.sampled_from(sorted(body)))] = draw(WRONG_VALUES)
    elif broken == "extra":
        body[draw(st.sampled_from(["is_admin", "id", "role"]))] = True
    elif broken == "email":
        body["email"] = draw(BAD_EMAILS)
    elif broken == "shape":
        return draw(st.sampled_from([None, [], "text", 3]))
    return body


@st.composite
def credentials(draw: st.DrawFn) -> Any:
    account = draw(st.integers(min_value=0, max_value=BASE_USERS))
    email = "admin@example.com" if account == 0 else f"user{account}@example.com"
    if draw(st.booleans()):
        email = draw(emails())
    variant = draw(st.sampled_from(["lower"] * 4 + ["upper", "title"]))
    body: dict[str, Any] = {
        "email": case_variant(email, variant),
        "password": draw(st.sampled_from([PASSWORD] * 4 + ["wrong-password", ""])),
    }
    broken = draw(
        st.sampled_from(["valid"] * 8 + ["missing", "wrong", "extra", "shape"])
    )
    if broken == "missing":
        del body[draw(st.sampled_from(sorted(body)))]
    elif broken == "wrong":
        body[draw(st.sampled_from(sorted(body)))] = draw(WRONG_VALUES)
    elif broken == "extra":
        body["remember"] = True
    elif broken == "shape":
        return draw(st.sampled_from([None, [], "text"]))
    return body


@st.composite
def patch_body(draw: st.DrawFn) -> Any:
    keys = draw(
        st.lists(
            st.sampled_from(
                ["first_name", "last_name", "is_active", "email", "is_admin"]
            ),
            unique=True,
            max_size=3,
        )
    )
    body: dict[str, Any] = {}
    for key in keys:
        if key == "is_active":
            body[key] = draw(
                st.sampled_from([True, False, "yes", "no", 1, 0, "maybe", None])
            )
        elif key in ("first_name", "last_name"):
            body[key] = draw(st.one_of(GOOD_TEXT, TEXT, WRONG_VALUES))
        else:
            body[key] = draw(st.sampled_from(["new@example.com", True]))
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from([None, [], "text"]))
    return body


USER_TOKENS = ["access"] * 8 + ["refresh", "minted-access", "minted-refresh"]
BAD_TOKENS = [
    "missing",
    "bad-scheme",
    "bearer-empty",
    "malformed",
    "malformed-dots",
    "claims-admin",
    "expired-access",
    "expired-refresh",
    "wrong-key",
    "alg-none",
    "int-sub",
    "text-sub",
    "unknown-user",
]
TOKENS = st.sampled_from(USER_TOKENS * 3 + BAD_TOKENS)
REFRESH_TOKENS = st.sampled_from(
    ["refresh"] * 8
    + ["access", "minted-refresh", "expired-refresh", "wrong-key", "missing"]
)
TARGETS = st.one_of(
    ACCOUNTS,
    ACCOUNTS,
    ACCOUNTS,
    st.sampled_from([str(UNKNOWN_ID), "0", "-1", "abc", "99999999999999999999"]),
)
PAGES = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=4).map(str),
    st.sampled_from(["abc", "", "1.5", "100000000000000000000", "2147483648"]),
)
PER_PAGES = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=120).map(str),
    st.sampled_from(["abc", "", "0", "1000", "100000000000000000000"]),
)
ACTIVE_ONLY = st.sampled_from([None, "true", "TRUE", "True", "false", "yes", "1", ""])


def operations() -> st.SearchStrategy[Op]:
    """One operation; the hash-costly ones (register, login) weighted lower."""
    return st.one_of(
        # Register and log in share one branch: each costs a password hash
        # (~0.1 s, more on a loaded machine) on both servers.
        st.one_of(
            st.builds(
                lambda body, encoding: Op("register", args=(body, encoding)),
                registration(),
                ENCODINGS,
            ),
            st.builds(
                lambda body, encoding: Op("login", args=(body, encoding)),
                credentials(),
                ENCODINGS,
            ),
        ),
        st.builds(
            lambda a, t: Op("refresh", actor=a, token=t), ACCOUNTS, REFRESH_TOKENS
        ),
        st.builds(lambda a, t: Op("logout", actor=a, token=t), ACCOUNTS, TOKENS),
        st.builds(lambda a, t: Op("me", actor=a, token=t), ACCOUNTS, TOKENS),
        st.builds(
            lambda a, t, page, per_page, active: Op(
                "list",
                actor=a,
                token=t,
                args=(("page", page), ("per_page", per_page), ("active_only", active)),
            ),
            ACCOUNTS,
            TOKENS,
            PAGES,
            PER_PAGES,
            ACTIVE_ONLY,
        ),
        st.builds(
            lambda a, t, g: Op("get", actor=a, token=t, target=g),
            ACCOUNTS,
            TOKENS,
            TARGETS,
        ),
        st.builds(
            lambda a, t, g, body, encoding: Op(
                "patch", actor=a, token=t, target=g, args=(body, encoding)
            ),
            ACCOUNTS,
            TOKENS,
            TARGETS,
            patch_body(),
            ENCODINGS,
        ),
        st.builds(
            lambda a, t, g: Op("delete", actor=a, token=t, target=g),
            st.sampled_from([0, 0, 0, 1, 2]),
            TOKENS,
            TARGETS,
        ),
    )


def sequences(max_size: int = 8) -> st.SearchStrategy[list[Op]]:
    return st.lists(operations(), min_size=1, max_size=max_size)
