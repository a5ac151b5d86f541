// A front end's use of every operation, written against the types that
// openapi-typescript generates from /openapi.json (./api.d.ts, made by
// tests/system/test_clients.py) and checked with `tsc --strict`. No casts, and no
// null checks on fields the document says are always sent: if one of them
// became optional again, `tsc` would reject this file.
import type { components, paths } from "./api";

type Schemas = components["schemas"];
type Method = "get" | "put" | "post" | "patch" | "delete";

// "post /api/v1/auth/login", ...: every operation the document has.
export type OperationKey = {
  [P in keyof paths]: {
    [M in Method]: paths[P][M] extends undefined ? never : `${M} ${P & string}`;
  }[Method];
}[keyof paths];

type Operation<K extends OperationKey> = K extends `${infer M extends Method} ${infer P extends keyof paths}`
  ? NonNullable<paths[P][M]>
  : never;

type JsonOf<T> = T extends { content: { "application/json": infer Body } } ? Body : undefined;
type SuccessStatus = 200 | 201 | 202 | 204;

// What a call sends: its JSON body, path and query parameters, each when it has them.
type Input<K extends OperationKey> = (Operation<K> extends { requestBody: infer Body }
  ? { body: JsonOf<Body> }
  : unknown) &
  (Operation<K>["parameters"] extends { path: infer Path } ? { path: Path } : unknown) &
  (Operation<K>["parameters"] extends { query?: infer Query } ? { query?: Query } : unknown);

// What a call answers when it succeeds (undefined for 204).
type Answer<K extends OperationKey> = {
  [S in SuccessStatus & keyof Operation<K>["responses"]]: JsonOf<Operation<K>["responses"][S]>;
}[SuccessStatus & keyof Operation<K>["responses"]];

// What a call answers when it fails: every error shape has `error`.
type Failure<K extends OperationKey> = {
  [S in Exclude<keyof Operation<K>["responses"], SuccessStatus>]: JsonOf<Operation<K>["responses"][S]>;
}[Exclude<keyof Operation<K>["responses"], SuccessStatus>];

interface Call<K extends OperationKey> {
  input: Input<K>;
  onSuccess: (answer: Answer<K>) => string;
  onFailure: (answer: Failure<K>) => string;
}

// ---------------------------------------------------------------- the views

let accessToken = "";
let refreshToken = "";

function keepTokens(access: string, refresh: string): string {
  accessToken = access;
  refreshToken = refresh;
  return `${accessToken.length + refreshToken.length} characters of tokens kept`;
}

function userLine(user: Schemas["User"]): string {
  const role = user.is_admin ? "admin" : "member";
  const state = user.is_active ? "active" : "deactivated";
  const since = user.created_at.slice(0, 10);
  return `#${user.id.toFixed(0)} ${user.full_name} <${user.email.toLowerCase()}> ` +
    `${user.first_name.charAt(0)}.${user.last_name.charAt(0)}. ${role}, ${state}, ` +
    `since ${since}, changed ${user.updated_at.slice(0, 10)}`;
}

function postLine(post: Schemas["Post"]): string {
  const edited = post.updated_at !== post.created_at ? " (edited)" : "";
  return `#${post.id.toFixed(0)} ${post.title.trim()} by ${post.author.full_name} ` +
    `(#${post.author.id.toFixed(0)} = #${post.author_id.toFixed(0)}): ` +
    `${post.content.slice(0, 80)}${edited}`;
}

function pager(page: { page: number; pages: number; per_page: number; total: number }): string {
  const last = Math.max(page.pages, 1);
  return `page ${page.page} of ${last}, ${page.per_page} a page, ${page.total} in all`;
}

function sessionLine(session: Schemas["Session"]): string {
  const where = session.ip ?? "an unknown address";
  const client = session.user_agent ?? "an unknown client";
  const mark = session.current ? " (this one)" : "";
  return `${session.id.slice(0, 8)} from ${where} with ${client}, started ` +
    `${session.created_at}, last used ${session.last_used_at}${mark}`;
}

function eventLine(event: Schemas["SecurityEvent"]): string {
  const detail = event.detail === null ? "" : ` (${event.detail})`;
  const where = event.ip ?? "an unknown address";
  const client = event.user_agent ?? "an unknown client";
  return `#${event.id.toFixed(0)} ${event.created_at} ${event.type}${detail} from ${where} with ${client}`;
}

function passkeyLine(passkey: Schemas["Passkey"]): string {
  const used = passkey.last_used_at ?? "never";
  return `${passkey.name} (${passkey.id.slice(0, 8)}), added ${passkey.created_at}, last used ${used}`;
}

// What the browser's PublicKeyCredential.toJSON() gives, sent back as it is.
const madeCredential: Schemas["NewPasskey"]["credential"] = { id: "from-navigator.credentials.create" };
const signedCredential: Schemas["PasskeyLogin"]["credential"] = { id: "from-navigator.credentials.get" };

function problem(answer: Schemas["Error"]): string {
  return answer.error;
}

function fieldProblems(answer: Schemas["ValidationError"]): string {
  const fields = Object.entries(answer.errors ?? {}).map(
    ([field, messages]) => `${field}: ${messages.join(" ")}`,
  );
  return [answer.error, ...fields].join("\n");
}

function tokenProblem(answer: Schemas["AuthError"] | Schemas["TokenError"]): string {
  // flask-jwt-extended's clients read `msg`; it is only in token errors.
  return answer.msg ?? answer.error;
}

// ----------------------------------------------------------- every operation

const newPost: Schemas["PostCreate"] = {
  title: "Notes on the Analytical Engine",
  content: "It might act upon other things besides number.",
};

export const frontEnd: { [K in OperationKey]: Call<K> } = {
  "post /api/v1/auth/login": {
    input: { body: { email: "ada@example.com", password: "a longer passphrase" } },
    onSuccess: (tokens) => `${tokens.token_type}: ${keepTokens(tokens.access_token, tokens.refresh_token)}`,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "post /api/v1/auth/login/mfa": {
    input: { body: { mfa_token: "from-the-login-401", code: "123456" } },
    onSuccess: (tokens) => `${tokens.token_type}: ${keepTokens(tokens.access_token, tokens.refresh_token)}`,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "post /api/v1/auth/fresh": {
    input: { body: { password: "a longer passphrase" } },
    onSuccess: () => "Fresh: security changes are open for ten minutes",
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "get /api/v1/auth/account": {
    input: {},
    onSuccess: (account) =>
      `${account.email}${account.email_verified ? " (verified)" : ""}: TOTP ${account.totp ? "on" : "off"}, ` +
      `${account.passkeys.toFixed(0)} passkeys, ${account.recovery_codes_left.toFixed(0)} recovery codes left`,
    onFailure: problem,
  },
  "post /api/v1/auth/totp": {
    input: {},
    onSuccess: (enrolment) => `Scan ${enrolment.otpauth_uri}, or type ${enrolment.secret.toUpperCase()}`,
    onFailure: problem,
  },
  "post /api/v1/auth/totp/confirm": {
    input: { body: { code: "123456" } },
    onSuccess: (answer) => `TOTP on; keep these: ${answer.recovery_codes.join(" ")}`,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "delete /api/v1/auth/totp": {
    input: {},
    onSuccess: () => "TOTP off",
    onFailure: problem,
  },
  "post /api/v1/auth/recovery-codes": {
    input: {},
    onSuccess: (answer) => `The old codes are dead; keep these: ${answer.recovery_codes.join(" ")}`,
    onFailure: problem,
  },
  "post /api/v1/auth/refresh": {
    input: {},
    // With rotation on, the answer carries the next refresh token.
    onSuccess: (tokens) => keepTokens(tokens.access_token, tokens.refresh_token ?? refreshToken),
    onFailure: tokenProblem,
  },
  "post /api/v1/auth/logout": {
    input: {},
    onSuccess: (answer) => keepTokens("", "") + `: ${answer.message}`,
    onFailure: problem,
  },
  "post /api/v1/auth/password": {
    input: { body: { current_password: "a longer passphrase", new_password: "an even longer one" } },
    onSuccess: () => "Password changed: log in again",
    onFailure: problem,
  },
  "post /api/v1/auth/password/forgot": {
    input: { body: { email: "ada@example.com" } },
    onSuccess: (answer) => answer.message,
    onFailure: problem,
  },
  "post /api/v1/auth/password/reset": {
    input: { body: { token: "from-the-mail", new_password: "an even longer one" } },
    onSuccess: () => "Password set: log in",
    onFailure: problem,
  },
  "get /api/v1/auth/sessions": {
    input: {},
    onSuccess: (list) => list.sessions.map(sessionLine).join("\n"),
    onFailure: tokenProblem,
  },
  "delete /api/v1/auth/sessions": {
    input: {},
    onSuccess: () => "Every other session ended",
    onFailure: problem,
  },
  "delete /api/v1/auth/sessions/{session_id}": {
    input: { path: { session_id: "0b9f3c1e-6d2a-4c5b-9a7e-3f1d2c4b5a69" } },
    onSuccess: () => "Session ended",
    onFailure: problem,
  },
  "get /api/v1/auth/events": {
    input: { query: { page: 1, per_page: 20 } },
    onSuccess: (page) => [...page.events.map(eventLine), pager(page)].join("\n"),
    onFailure: problem,
  },
  "post /api/v1/auth/email/verify/request": {
    input: {},
    onSuccess: (answer) => answer.message,
    onFailure: problem,
  },
  "post /api/v1/auth/email/verify": {
    input: { body: { token: "from-the-mail" } },
    onSuccess: () => "Address verified",
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "post /api/v1/auth/email": {
    input: { body: { new_email: "ada.king@example.com" } },
    onSuccess: (answer) => answer.message,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "post /api/v1/auth/email/confirm": {
    input: { body: { token: "from-the-mail" } },
    onSuccess: (user) => `Address changed: ${userLine(user)}`,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "get /api/v1/users/{user_id}/events": {
    input: { path: { user_id: 42 }, query: { page: 1 } },
    onSuccess: (page) => [...page.events.map(eventLine), pager(page)].join("\n"),
    onFailure: problem,
  },
  "get /api/v1/users/{user_id}/sessions": {
    input: { path: { user_id: 42 } },
    onSuccess: (list) => list.sessions.map(sessionLine).join("\n"),
    onFailure: problem,
  },
  "delete /api/v1/users/{user_id}/sessions": {
    input: { path: { user_id: 42 } },
    onSuccess: () => "Every session of the user ended",
    onFailure: problem,
  },
  "post /api/v1/auth/passkeys/options": {
    input: {},
    onSuccess: (options) =>
      `Creating a passkey for ${options.user.displayName} <${options.user.name}> on ` +
      `${options.rp.name} (${options.rp.id}), ${options.excludeCredentials.length} excluded, ` +
      `user verification ${options.authenticatorSelection.userVerification}, ` +
      `within ${(options.timeout / 1000).toFixed(0)} s: ${options.challenge.length} ` +
      `characters of challenge, ${options.pubKeyCredParams.map((each) => each.alg).join(", ")}, ` +
      `attestation ${options.attestation}, ${options.authenticatorSelection.residentKey} ` +
      `${options.authenticatorSelection.requireResidentKey}`,
    onFailure: problem,
  },
  "post /api/v1/auth/passkeys": {
    input: { body: { credential: madeCredential, name: "Laptop" } },
    onSuccess: passkeyLine,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "get /api/v1/auth/passkeys": {
    input: {},
    onSuccess: (list) => list.passkeys.map(passkeyLine).join("\n"),
    onFailure: tokenProblem,
  },
  "patch /api/v1/auth/passkeys/{passkey_id}": {
    input: { path: { passkey_id: "6f1c2d3e-4a5b-4c7d-8e9f-0a1b2c3d4e5f" }, body: { name: "Work laptop" } },
    onSuccess: passkeyLine,
    onFailure: problem,
  },
  "delete /api/v1/auth/passkeys/{passkey_id}": {
    input: { path: { passkey_id: "6f1c2d3e-4a5b-4c7d-8e9f-0a1b2c3d4e5f" } },
    onSuccess: () => "Passkey deleted",
    onFailure: problem,
  },
  "post /api/v1/auth/passkeys/login/options": {
    input: { body: {} },
    onSuccess: (options) =>
      `Sign in on ${options.rpId} within ${(options.timeout / 1000).toFixed(0)} s with ` +
      `${options.allowCredentials.map((each) => `${each.type} ${each.id} ${(each.transports ?? []).join("/")}`).join(", ") || "any passkey"}, ` +
      `user verification ${options.userVerification}: ${options.challenge.length} characters of challenge`,
    onFailure: problem,
  },
  "post /api/v1/auth/passkeys/login": {
    input: { body: { credential: signedCredential } },
    onSuccess: (tokens) => `${tokens.token_type}: ${keepTokens(tokens.access_token, tokens.refresh_token)}`,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "get /api/v1/users": {
    input: { query: { page: 2, per_page: 50, active_only: "false" } },
    onSuccess: (page) => [...page.users.map(userLine), pager(page)].join("\n"),
    onFailure: tokenProblem,
  },
  "post /api/v1/users": {
    input: {
      body: {
        email: "ada@example.com",
        password: "a longer passphrase",
        first_name: "Ada",
        last_name: "Lovelace",
      },
    },
    onSuccess: (user) => `Welcome, ${user.first_name}: ${userLine(user)}`,
    onFailure: (answer) => ("errors" in answer ? fieldProblems(answer) : problem(answer)),
  },
  "get /api/v1/users/me": {
    input: {},
    onSuccess: userLine,
    onFailure: tokenProblem,
  },
  "get /api/v1/users/{user_id}": {
    input: { path: { user_id: 42 } },
    onSuccess: userLine,
    onFailure: problem,
  },
  "patch /api/v1/users/{user_id}": {
    input: { path: { user_id: 42 }, body: { first_name: "Augusta Ada", is_active: true } },
    onSuccess: userLine,
    onFailure: problem,
  },
  "delete /api/v1/users/{user_id}": {
    input: { path: { user_id: 42 } },
    onSuccess: () => "User deleted",
    onFailure: problem,
  },
  "get /api/v1/users/{user_id}/posts": {
    input: { path: { user_id: 42 }, query: { page: 1 } },
    onSuccess: (page) => [...page.posts.map(postLine), pager(page)].join("\n"),
    onFailure: problem,
  },
  "post /api/v1/users/{user_id}/restore": {
    input: { path: { user_id: 42 } },
    onSuccess: (user) => `Restored: ${userLine(user)}`,
    onFailure: problem,
  },
  "get /api/v1/posts": {
    input: { query: { per_page: 100 } },
    onSuccess: (page) => [...page.posts.map(postLine), pager(page)].join("\n"),
    onFailure: tokenProblem,
  },
  "post /api/v1/posts": {
    input: { body: newPost },
    onSuccess: postLine,
    onFailure: problem,
  },
  "get /api/v1/posts/{post_id}": {
    input: { path: { post_id: 7 } },
    onSuccess: postLine,
    onFailure: problem,
  },
  "patch /api/v1/posts/{post_id}": {
    input: { path: { post_id: 7 }, body: { title: "Notes on the Engine" } },
    onSuccess: postLine,
    onFailure: problem,
  },
  "delete /api/v1/posts/{post_id}": {
    input: { path: { post_id: 7 } },
    onSuccess: () => "Post deleted",
    onFailure: problem,
  },
  "get /healthz": {
    input: {},
    onSuccess: (health) => health.status,
    onFailure: problem,
  },
  "get /readyz": {
    input: {},
    onSuccess: (ready) =>
      [
        ready.status,
        ...(ready.replicas ?? []).map(
          (replica) =>
            `${replica.name}: ${replica.ready ? "ready" : (replica.reason ?? "not ready")}, ` +
            `${replica.lag_ms === null ? "unreachable" : `${replica.lag_ms.toFixed(0)} ms behind`}`,
        ),
      ].join("\n"),
    onFailure: problem,
  },
};
