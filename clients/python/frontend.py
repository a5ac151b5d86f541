"""A Python program's use of every operation, through the client that
openapi-python-client generates from /openapi.json (the package `api_client`,
made by tests/system/test_clients.py), checked with `mypy --strict`.

No casts, and no checks for None or Unset on fields the document says are
always sent: if one of them became optional again, mypy would reject this file.
tests/system/test_clients.py also holds that every generated operation is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import TypeVar

from api_client import AuthenticatedClient, Client
from api_client.api.authentication import (
    change_password,
    forgot_password,
    login,
    login_mfa,
    logout,
    refresh,
    reset_password,
)
from api_client.api.operations import healthz, readyz
from api_client.api.passkeys import (
    delete_passkey,
    list_passkeys,
    passkey_login,
    passkey_login_options,
    passkey_options,
    register_passkey,
    rename_passkey,
)
from api_client.api.posts import (
    create_post,
    delete_post,
    get_post,
    list_posts,
    update_post,
)
from api_client.api.second_factors import (
    account,
    confirm_totp,
    disable_totp,
    regenerate_recovery_codes,
    start_totp,
)
from api_client.api.security import (
    change_email,
    confirm_email,
    list_own_events,
    list_user_events,
    request_verification,
    verify_email,
)
from api_client.api.sessions import (
    end_user_sessions,
    list_sessions,
    list_user_sessions,
    make_fresh,
    revoke_other_sessions,
    revoke_session,
)
from api_client.api.users import (
    create_user,
    delete_user,
    get_current_user,
    get_user,
    list_user_posts,
    list_users,
    restore_user,
    update_user,
)
from api_client.models import (
    Account,
    AuthError,
    Code,
    CreationOptions,
    EmailChange,
    EmailToken,
    Error,
    ForgotPassword,
    Fresh,
    Login,
    Message,
    MfaLogin,
    NewPasskey,
    NewPasskeyCredential,
    Passkey,
    PasskeyList,
    PasskeyLogin,
    PasskeyLoginCredential,
    PasskeyLoginOptions,
    PasskeyRename,
    PasswordChange,
    PasswordReset,
    Post,
    PostCreate,
    PostPage,
    PostUpdate,
    Readiness,
    RecoveryCodes,
    RefreshedTokens,
    RequestOptions,
    SecondFactorRequired,
    SecurityEvent,
    SecurityEventPage,
    Session,
    SessionList,
    Status,
    TokenError,
    TokenPair,
    TotpEnrolment,
    User,
    UserCreate,
    UserPage,
    UserUpdate,
    ValidationError,
)
from api_client.types import Response, Unset

BASE_URL = "http://127.0.0.1:8000"
T = TypeVar("T")
# The browser's navigator.credentials.create() or .get() on the options' JSON,
# answering what PublicKeyCredential.toJSON() gives.
Ceremony = Callable[[dict[str, object]], dict[str, object]]
Failure = Error | AuthError | TokenError | ValidationError


class ApiError(Exception):
    """An error answer, or one the caller did not expect."""

    def __init__(self, answer: object) -> None:
        if not isinstance(answer, Failure):
            super().__init__(f"an answer the caller did not expect: {answer!r}")
            return
        lines = [answer.error]
        if isinstance(answer, ValidationError) and not isinstance(answer.errors, Unset):
            for field, messages in answer.errors.additional_properties.items():
                lines.append(f"{field}: {' '.join(messages)}")
        if isinstance(answer, AuthError | TokenError) and isinstance(answer.msg, str):
            lines.append(f"(flask-jwt-extended: {answer.msg})")
        super().__init__("\n".join(lines))


def expect(answer: T | Failure | None, kind: type[T]) -> T:
    """The answer, if it is the success the caller expects."""
    if isinstance(answer, kind):
        return answer
    raise ApiError(answer)


def no_content(response: Response[object]) -> None:
    if response.status_code != HTTPStatus.NO_CONTENT:
        raise ApiError(response.parsed)


# ------------------------------------------------------------------ the views


def user_line(user: User) -> str:
    role = "admin" if user.is_admin else "member"
    state = "active" if user.is_active else "deactivated"
    return (
        f"#{user.id:d} {user.full_name} <{user.email.lower()}> "
        f"{user.first_name[:1]}.{user.last_name[:1]}. {role}, {state}, "
        f"since {user.created_at[:10]}, changed {user.updated_at[:10]}"
    )


def post_line(post: Post) -> str:
    edited = " (edited)" if post.updated_at != post.created_at else ""
    return (
        f"#{post.id:d} {post.title.strip()} by {post.author.full_name} "
        f"(#{post.author.id:d} = #{post.author_id:d}): {post.content[:80]}{edited}"
    )


def pager(page: UserPage | PostPage | SecurityEventPage) -> str:
    last = max(page.pages, 1)
    return f"page {page.page:d} of {last:d}, {page.per_page:d} a page, {page.total:d}"


def session_line(session: Session) -> str:
    where = session.ip if session.ip is not None else "an unknown address"
    agent = session.user_agent if session.user_agent is not None else "unknown"
    mark = " (this one)" if session.current else ""
    return (
        f"{session.id[:8]} from {where} with {agent}, started {session.created_at}, "
        f"last used {session.last_used_at}{mark}"
    )


def event_line(event: SecurityEvent) -> str:
    detail = f" ({event.detail})" if event.detail is not None else ""
    where = event.ip if event.ip is not None else "an unknown address"
    agent = event.user_agent if event.user_agent is not None else "unknown"
    what = f"{event.type_}{detail}"
    return f"#{event.id:d} {event.created_at} {what} from {where} with {agent}"


# ------------------------------------------------------------ every operation


def sign_in(
    email: str, password: str, code: Callable[[], str]
) -> tuple[AuthenticatedClient, str]:
    """The access token's client, and the refresh token; `code` is the
    authenticator app's, asked for when the account has a second factor."""
    anyone = Client(base_url=BASE_URL)
    first = login.sync(client=anyone, body=Login(email=email, password=password))
    if isinstance(first, SecondFactorRequired):
        if not isinstance(first.mfa_token, str):
            raise ApiError(first)
        second = MfaLogin(mfa_token=first.mfa_token, code=code())
        answer = expect(login_mfa.sync(client=anyone, body=second), TokenPair)
    else:
        answer = expect(first, TokenPair)
    if answer.token_type.lower() != "bearer":
        raise ApiError(None)
    access = AuthenticatedClient(base_url=BASE_URL, token=answer.access_token)
    return access, answer.refresh_token


def refreshed(refresh_token: str) -> tuple[AuthenticatedClient, str]:
    holder = AuthenticatedClient(base_url=BASE_URL, token=refresh_token)
    answer = expect(refresh.sync(client=holder), RefreshedTokens)
    # With rotation on, the answer carries the next refresh token.
    if isinstance(answer.refresh_token, str):
        refresh_token = answer.refresh_token
    access = AuthenticatedClient(base_url=BASE_URL, token=answer.access_token)
    return access, refresh_token


def sign_out(access: AuthenticatedClient) -> str:
    answer = expect(logout.sync(client=access), Message)
    return answer.message


def passwords(
    access: AuthenticatedClient, anyone: Client, current: str, new: str, mailed: str
) -> str:
    change = PasswordChange(current_password=current, new_password=new)
    no_content(change_password.sync_detailed(client=access, body=change))
    sent = expect(
        forgot_password.sync(
            client=anyone, body=ForgotPassword(email="ada@example.com")
        ),
        Message,
    )
    reset = PasswordReset(token=mailed, new_password=new)
    no_content(reset_password.sync_detailed(client=anyone, body=reset))
    return sent.message


def second_factors(
    access: AuthenticatedClient, password: str, code: Callable[[str], str]
) -> list[str]:
    """Turn TOTP on (`code(secret)` is what the authenticator app shows), make
    new recovery codes, then turn it off again; each from a fresh session."""
    no_content(make_fresh.sync_detailed(client=access, body=Fresh(password=password)))
    enrolment = expect(start_totp.sync(client=access), TotpEnrolment)
    confirmed = expect(
        confirm_totp.sync(client=access, body=Code(code=code(enrolment.secret))),
        RecoveryCodes,
    )
    renewed = expect(regenerate_recovery_codes.sync(client=access), RecoveryCodes)
    state = expect(account.sync(client=access), Account)
    no_content(disable_totp.sync_detailed(client=access))
    verified = " (verified)" if state.email_verified else ""
    return [
        f"Scan {enrolment.otpauth_uri}",
        f"Keep these: {' '.join(confirmed.recovery_codes)}",
        f"Or these, the first ones are dead: {' '.join(renewed.recovery_codes)}",
        f"{state.email}{verified}: TOTP {'on' if state.totp else 'off'}, "
        f"{state.passkeys:d} passkeys, {state.recovery_codes_left:d} codes left",
    ]


def sessions(access: AuthenticatedClient) -> list[str]:
    listed = expect(list_sessions.sync(client=access), SessionList)
    others = [each.id for each in listed.sessions if not each.current]
    for session_id in others[:1]:
        no_content(revoke_session.sync_detailed(session_id, client=access))
    no_content(revoke_other_sessions.sync_detailed(client=access))
    return [session_line(each) for each in listed.sessions]


def security(
    access: AuthenticatedClient, admin: AuthenticatedClient, user_id: int
) -> list[str]:
    mine = expect(
        list_own_events.sync(client=access, page=1, per_page=20), SecurityEventPage
    )
    theirs = expect(list_user_events.sync(user_id, client=admin), SecurityEventPage)
    live = expect(list_user_sessions.sync(user_id, client=admin), SessionList)
    no_content(end_user_sessions.sync_detailed(user_id, client=admin))
    return [
        *(event_line(each) for each in mine.events),
        pager(mine),
        *(event_line(each) for each in theirs.events),
        *(session_line(each) for each in live.sessions),
    ]


def address(access: AuthenticatedClient, anyone: Client, mailed: str) -> list[str]:
    """Verify the address, then move the account to another one."""
    asked = expect(request_verification.sync(client=access), Message)
    no_content(verify_email.sync_detailed(client=anyone, body=EmailToken(mailed)))
    change = EmailChange(new_email="ada.king@example.com")
    moving = expect(change_email.sync(client=access, body=change), Message)
    moved = expect(confirm_email.sync(client=anyone, body=EmailToken(mailed)), User)
    return [asked.message, moving.message, user_line(moved)]


def passkey_line(passkey: Passkey) -> str:
    used = passkey.last_used_at if passkey.last_used_at is not None else "never"
    return (
        f"{passkey.name} ({passkey.id[:8]}), added {passkey.created_at}, "
        f"last used {used}"
    )


def passkeys(
    access: AuthenticatedClient, anyone: Client, create: Ceremony, get: Ceremony
) -> list[str]:
    """Register a passkey, sign in with it alone, rename it, delete it."""
    options = expect(passkey_options.sync(client=access), CreationOptions)
    made = NewPasskeyCredential.from_dict(create(options.to_dict()))
    body = NewPasskey(credential=made, name=f"{options.user.display_name}'s laptop")
    added = expect(register_passkey.sync(client=access, body=body), Passkey)
    request = expect(
        passkey_login_options.sync(client=anyone, body=PasskeyLoginOptions()),
        RequestOptions,
    )
    signed = PasskeyLoginCredential.from_dict(get(request.to_dict()))
    tokens = expect(
        passkey_login.sync(client=anyone, body=PasskeyLogin(credential=signed)),
        TokenPair,
    )
    renamed = expect(
        rename_passkey.sync(
            added.id, client=access, body=PasskeyRename(name="Work laptop")
        ),
        Passkey,
    )
    listed = expect(list_passkeys.sync(client=access), PasskeyList)
    no_content(delete_passkey.sync_detailed(added.id, client=access))
    return [
        f"On {options.rp.name} ({options.rp.id}) as {options.user.name}, "
        f"{len(options.exclude_credentials):d} excluded, within "
        f"{options.timeout // 1000:d} s, user verification "
        f"{options.authenticator_selection.user_verification}",
        f"Signed in on {request.rp_id} ({request.user_verification}, "
        f"{len(request.allow_credentials):d} allowed, {len(request.challenge):d} "
        f"characters of challenge): {tokens.token_type}",
        *(passkey_line(each) for each in listed.passkeys),
        passkey_line(renamed),
    ]


def users(access: AuthenticatedClient, anyone: Client, password: str) -> list[str]:
    body = UserCreate(
        email="ada@example.com",
        password=password,
        first_name="Ada",
        last_name="Lovelace",
    )
    created = expect(create_user.sync(client=anyone, body=body), User)
    me = expect(get_current_user.sync(client=access), User)
    page = expect(
        list_users.sync(client=access, page=2, per_page=50, active_only="false"),
        UserPage,
    )
    one = expect(get_user.sync(created.id, client=access), User)
    renamed = expect(
        update_user.sync(
            created.id, client=access, body=UserUpdate(first_name="Augusta Ada")
        ),
        User,
    )
    no_content(delete_user.sync_detailed(created.id, client=access))
    restored = expect(restore_user.sync(created.id, client=access), User)
    return [
        f"Welcome, {created.first_name}",
        user_line(me),
        *(user_line(each) for each in page.users),
        pager(page),
        user_line(one),
        user_line(renamed),
        f"Restored: {user_line(restored)}",
    ]


def posts(access: AuthenticatedClient, author_id: int) -> list[str]:
    created = expect(
        create_post.sync(
            client=access,
            body=PostCreate(
                title="Notes on the Analytical Engine",
                content="It might act upon other things besides number.",
            ),
        ),
        Post,
    )
    page = expect(list_posts.sync(client=access, per_page=100), PostPage)
    theirs = expect(list_user_posts.sync(author_id, client=access, page=1), PostPage)
    one = expect(get_post.sync(created.id, client=access), Post)
    retitled = expect(
        update_post.sync(
            created.id, client=access, body=PostUpdate(title="Notes on the Engine")
        ),
        Post,
    )
    no_content(delete_post.sync_detailed(created.id, client=access))
    return [
        *(post_line(each) for each in page.posts),
        pager(page),
        *(post_line(each) for each in theirs.posts),
        post_line(one),
        post_line(retitled),
    ]


def probes(anyone: Client) -> list[str]:
    health = healthz.sync(client=anyone)
    health = expect(healthz.sync(client=anyone), Status)
    ready = expect(readyz.sync(client=anyone), Readiness)
    lines = [health.status, ready.status]
    if not isinstance(ready.replicas, Unset):
        for replica in ready.replicas:
            reason = replica.reason if isinstance(replica.reason, str) else "not ready"
            lag = "unreachable" if replica.lag_ms is None else f"{replica.lag_ms:d} ms"
            lines.append(
                f"{replica.name}: {'ready' if replica.ready else reason}, {lag}"
            )
    return lines
