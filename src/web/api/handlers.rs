//! The `/api/v1` routes. Each is the page's handler in JSON: the same parsing (shared with the
//! page), one flow on a blocking thread (through the hashing pool where argon2 runs), the same
//! throttles, log events and metrics. The path and method of each come from its actix macro,
//! which `utoipa` reads too, so the spec cannot drift from the route table.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Bearer, ErrorBody, UserBody, present};
use crate::accounts::activity::SignInMethod;
use crate::accounts::{Channel, CheckError, IdentifierChanges, User};
use crate::domain::password::NewPassword;
use crate::domain::{Email, Phone, Username};
use crate::flows::{ApiFlow, CodeSignIn, FlowKind, Form, ResetCheck, SecondStep, Sent, SignIn};
use crate::metrics::{self, SignInResult, Throttle};
use crate::web::AppState;
use crate::web::pages::account;
use crate::web::pages::reset::answer_no_sooner_than_the_floor;
use crate::web::pages::sign_up as sign_up_page;
use crate::web::views::FormErrors;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(sign_up)
        .service(sign_in)
        .service(sign_in_two_factor)
        .service(sign_in_code)
        .service(sign_in_code_verify)
        .service(sign_out)
        .service(me)
        .service(update_me)
        .service(change_password)
        .service(send_code)
        .service(verify_address)
        .service(password_reset)
        .service(password_reset_verify)
        .service(password_reset_complete);
}

const ENTER_IDENTIFIER: &str = "Enter your username, email address or phone number.";
const WRONG_CODE: &str = "That code is wrong or has expired.";
const UNKNOWN_FLOW: &str = "This flow is unknown or has expired: start again.";

/// A signed-in answer: a new token and the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    /// The bearer token: send it as `Authorization: Bearer TOKEN`. A server-side session, with
    /// a browser session's timeouts; shown once.
    pub token: String,
    pub user: UserBody,
}

/// The second step is needed: finish at `POST /api/v1/sign-in/two-factor` within 5 minutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct TwoFactorNeeded {
    pub two_factor: String,
}

/// A sign-in's answer: a token, or a second step to take.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignInAnswer {
    SignedIn(SignedIn),
    TwoFactor(TwoFactorNeeded),
}

/// A pending reset or code sign-in: the same shape whether or not the account exists.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowBody {
    pub flow: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct SignUpBody {
    pub username: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct SignInBody {
    pub identifier: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct IdentifierBody {
    pub identifier: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct FlowCodeBody {
    pub flow: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct CodeBody {
    pub code: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct ResetCompleteBody {
    pub flow: Option<String>,
    pub new_password: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct PasswordBody {
    pub current_password: Option<String>,
    pub new_password: Option<String>,
}

/// Absent: unchanged; `null` (or blank): removed; text: set.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct UpdateMeBody {
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// Needed to change or remove an email or phone when the account has a usable password.
    pub current_password: Option<String>,
}

/// `email` or `phone`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelName {
    Email,
    Phone,
}

impl From<ChannelName> for Channel {
    fn from(name: ChannelName) -> Channel {
        match name {
            ChannelName::Email => Channel::Email,
            ChannelName::Phone => Channel::Phone,
        }
    }
}

/// A required text field: 422 naming it when absent.
fn required<'a>(value: &'a Option<String>, name: &str, message: &str) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| ApiError::field(name, message))
}

fn log_ip(state: &AppState, req: &HttpRequest) -> Option<tracing::field::DisplayValue<std::net::IpAddr>> {
    state.ip_limit.client_ip(req).map(tracing::field::display)
}

/// A new token for `user`, first used from `req`, with the user: `{"token", "user"}` with
/// `status`.
async fn signed_in(
    state: &AppState,
    req: &HttpRequest,
    user: &User,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let (id, ctx) = (user.id, crate::web::session::client_context(req, state));
    let token = state.flow(move |flows| flows.issue_token(id, &ctx)).await?;
    let body = SignedIn { token: token.expose().to_owned(), user: UserBody::of(state, user).await? };
    Ok(HttpResponse::build(status).json(SignInAnswer::SignedIn(body)))
}

/// The one place where a proven first factor (a password, a sign-in code: `method`) becomes
/// the API's answer: a token (the sign-in recorded), or for an account with a second factor a
/// FLOW of the second step (200 `{"two_factor": FLOW}`, valid 5 minutes; recorded once the step
/// passes, `Flows::check_second_step`). API clients have no trusted browser.
async fn api_finish_first_factor(
    state: &AppState,
    req: &HttpRequest,
    user: &User,
    method: SignInMethod,
) -> Result<HttpResponse, ApiError> {
    let (checked, ctx) = (user.clone(), crate::web::session::client_context(req, state));
    let second_step = state
        .flow(move |flows| {
            if !flows.has_second_factor(&checked)? {
                flows.signed_in(checked.id, method, &ctx)?;
                return Ok(None);
            }
            Ok(Some(flows.start_flow(&flows.pending_second_step(&checked, method)?)?))
        })
        .await?;
    match second_step {
        Some(flow) => Ok(HttpResponse::Ok().json(SignInAnswer::TwoFactor(TwoFactorNeeded { two_factor: flow }))),
        None => signed_in(state, req, user, StatusCode::OK).await,
    }
}

/// Sign up: a new account, signed in.
///
/// Any non-empty subset of `username`, `email`, `phone` (each `null` or absent when not
/// given), and a `password`. A code is sent to the email and one to the phone, as for the page.
#[utoipa::path(
    tag = "sign-in",
    request_body = SignUpBody,
    responses(
        (status = 201, description = "Signed up and signed in", body = SignedIn),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Invalid or taken identifiers, or a password refused", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "Busy", body = ErrorBody),
    )
)]
#[post("/sign-up")]
async fn sign_up(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<SignUpBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let form = sign_up_page::SignUpForm {
        username: body.username,
        email: body.email,
        phone: body.phone,
        password: body.password,
    };
    let (new, password) = sign_up_page::parse(&form, state.settings.default_region).map_err(|e| ApiError::from(&e))?;
    let ctx = crate::web::session::client_context(&req, &state);
    match state.hashing(move |flows| flows.sign_up(new, &flows.hash(&password)?, &ctx)).await? {
        Form::Done(user) => {
            tracing::info!(event = "sign_up", api = true, user_id = user.id, ip = log_ip(&state, &req), "signed up");
            signed_in(&state, &req, &user, StatusCode::CREATED).await
        }
        Form::Invalid(errors) => Err(ApiError::from(&errors)),
        Form::NoUser => Err(ApiError::Unexpected(anyhow::anyhow!("the new user vanished"))),
    }
}

/// Sign in with a password.
///
/// The same throttle per identifier as the page, known or not; an unknown account answers as
/// a wrong password.
#[utoipa::path(
    tag = "sign-in",
    request_body = SignInBody,
    responses(
        (status = 200, description = "Signed in, or a second step to take", body = SignInAnswer),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`, the same for unknown accounts", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "A field missing", body = ErrorBody),
        (status = 429, description = "Throttled", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "Busy", body = ErrorBody),
    )
)]
#[post("/sign-in")]
async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<SignInBody>,
) -> Result<HttpResponse, ApiError> {
    let identifier = required(&body.0.identifier, "identifier", ENTER_IDENTIFIER)?.to_owned();
    let password = required(&body.0.password, "password", "Enter your password.")?.to_owned();
    let ctx = crate::web::session::client_context(&req, &state);
    match state.hashing(move |flows| flows.sign_in(&identifier, &password, &ctx)).await? {
        SignIn::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::sign_in(SignInResult::Throttled);
            tracing::info!(
                event = "sign_in_throttled",
                api = true,
                ip = log_ip(&state, &req),
                retry_after = secs,
                "sign-in throttled"
            );
            Err(ApiError::throttled(secs, "Too many failed attempts."))
        }
        SignIn::Wrong => {
            metrics::sign_in(SignInResult::Wrong);
            tracing::info!(event = "sign_in_failed", api = true, ip = log_ip(&state, &req), "sign-in failed");
            Err(ApiError::InvalidCredentials)
        }
        SignIn::SignedIn(user) => {
            metrics::sign_in(SignInResult::SignedIn);
            tracing::info!(event = "sign_in", api = true, user_id = user.id, ip = log_ip(&state, &req), "signed in");
            api_finish_first_factor(&state, &req, &user, SignInMethod::Password).await
        }
    }
}

/// The second step of a sign-in: an authenticator code or an unused recovery code.
#[utoipa::path(
    tag = "sign-in",
    request_body = FlowCodeBody,
    responses(
        (status = 200, description = "Signed in", body = SignedIn),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong code, or an unknown or expired flow", body = ErrorBody),
        (status = 429, description = "Throttled", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/sign-in/two-factor")]
async fn sign_in_two_factor(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<FlowCodeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = required(&body.0.flow, "flow", UNKNOWN_FLOW)?.to_owned();
    let code = body.0.code.clone().unwrap_or_default();
    let loaded = id.clone();
    let Some(flow) = state.flow(move |flows| flows.flow(&loaded, FlowKind::TwoFactor)).await? else {
        return Err(ApiError::field("flow", UNKNOWN_FLOW));
    };
    let ApiFlow::TwoFactor(pending) = flow.clone() else { return Err(ApiError::field("flow", UNKNOWN_FLOW)) };
    let ctx = crate::web::session::client_context(&req, &state);
    match state.flow(move |flows| flows.check_second_step(&pending, &code, &ctx)).await? {
        SecondStep::Proven(user) => {
            // the step is taken once: the FLOW goes with it
            if !state.flow(move |flows| flows.take_flow(&id, &flow)).await? {
                return Err(ApiError::field("flow", UNKNOWN_FLOW));
            }
            tracing::info!(
                event = "sign_in",
                api = true,
                method = "two_factor",
                user_id = user.id,
                ip = log_ip(&state, &req),
                "signed in"
            );
            signed_in(&state, &req, &user, StatusCode::OK).await
        }
        SecondStep::Wrong => Err(ApiError::field("code", WRONG_CODE)),
        SecondStep::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            Err(ApiError::throttled(secs, "Too many wrong codes."))
        }
    }
}

/// Ask for a sign-in code (no password).
///
/// The answer is the same, in status, body shape and timing, whether or not the account exists;
/// the code goes to the email (an email, or a username with an email) or the phone, within the
/// send limits.
#[utoipa::path(
    tag = "sign-in",
    request_body = IdentifierBody,
    responses(
        (status = 202, description = "A FLOW for the code", body = FlowBody),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "No identifier", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/sign-in/code")]
async fn sign_in_code(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<IdentifierBody>,
) -> Result<HttpResponse, ApiError> {
    code_requested(&state, &req, &body.0.identifier, "code_sign_in_requested", |flows, identifier| {
        let pending = flows.request_sign_in_code(identifier)?;
        Ok((pending.user_id(), ApiFlow::CodeSignIn(pending)))
    })
    .await
}

/// Makes a pending request for a code from what was typed: the account's id (for the log) and
/// the FLOW's content.
type StartCodeFlow = fn(&crate::flows::Flows, &str) -> anyhow::Result<(Option<i64>, ApiFlow)>;

/// Both requests for a code (a sign-in, a reset): `start` makes the pending request, which a
/// FLOW then holds. 202 with the FLOW, the same for known and unknown accounts (a random id
/// either way) and no sooner than the floor; `event` names the log line.
async fn code_requested(
    state: &AppState,
    req: &HttpRequest,
    identifier: &Option<String>,
    event: &'static str,
    start: StartCodeFlow,
) -> Result<HttpResponse, ApiError> {
    let identifier = typed_identifier(identifier)?;
    let started = std::time::Instant::now();
    let (flow, user_id) = state
        .flow(move |flows| {
            let (user_id, pending) = start(flows, &identifier)?;
            Ok((flows.start_flow(&pending)?, user_id))
        })
        .await?;
    tracing::info!(event, api = true, user_id, ip = log_ip(state, req), "code requested");
    answer_no_sooner_than_the_floor(started).await;
    Ok(HttpResponse::Accepted().json(FlowBody { flow }))
}

fn typed_identifier(identifier: &Option<String>) -> Result<String, ApiError> {
    match identifier.as_deref() {
        Some(text) if !text.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(ApiError::field("identifier", ENTER_IDENTIFIER)),
    }
}

/// Sign in with the code sent for a FLOW of `POST /api/v1/sign-in/code`.
///
/// The code is checked only against the account that was asked for, and used up; for an unknown
/// account it answers exactly as for a wrong code, backoff included.
#[utoipa::path(
    tag = "sign-in",
    request_body = FlowCodeBody,
    responses(
        (status = 200, description = "Signed in, or a second step to take", body = SignInAnswer),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong or expired code, or an unknown or expired flow", body = ErrorBody),
        (status = 429, description = "Throttled", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/sign-in/code/verify")]
async fn sign_in_code_verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<FlowCodeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = required(&body.0.flow, "flow", UNKNOWN_FLOW)?.to_owned();
    let code = body.0.code.clone().unwrap_or_default();
    let started = std::time::Instant::now();
    let loaded = id.clone();
    let Some(flow) = state.flow(move |flows| flows.flow(&loaded, FlowKind::CodeSignIn)).await? else {
        return Err(ApiError::field("flow", UNKNOWN_FLOW));
    };
    let ApiFlow::CodeSignIn(pending) = flow.clone() else { return Err(ApiError::field("flow", UNKNOWN_FLOW)) };
    let ctx = crate::web::session::client_context(&req, &state);
    let checked = state.flow(move |flows| flows.sign_in_with_code(&pending, &code, &ctx)).await?;
    answer_no_sooner_than_the_floor(started).await;
    match checked {
        CodeSignIn::Proven(user) => {
            // the code was spent exactly once (its token's compare-and-swap); the FLOW goes too
            state.flow(move |flows| flows.take_flow(&id, &flow)).await?;
            tracing::info!(
                event = "sign_in",
                api = true,
                method = "code",
                user_id = user.id,
                ip = log_ip(&state, &req),
                "signed in"
            );
            api_finish_first_factor(&state, &req, &user, SignInMethod::Code).await
        }
        CodeSignIn::Wrong => Err(ApiError::field("code", WRONG_CODE)),
        CodeSignIn::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::throttle_refusal(Throttle::SignInCode);
            Err(ApiError::throttled(secs, "Too many wrong codes."))
        }
    }
}

/// Sign out: this token ends.
#[utoipa::path(
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The token is dead"),
        (status = 401, description = "No live token", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/sign-out")]
async fn sign_out(state: web::Data<AppState>, req: HttpRequest, bearer: Bearer) -> Result<HttpResponse, ApiError> {
    let Bearer { user, token } = bearer;
    state.flow(move |flows| flows.end_token(&token)).await?;
    tracing::info!(event = "sign_out", api = true, user_id = user.id, ip = log_ip(&state, &req), "signed out");
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in user.
#[utoipa::path(
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserBody),
        (status = 401, description = "No live token", body = ErrorBody),
    )
)]
#[get("/me")]
async fn me(state: web::Data<AppState>, bearer: Bearer) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(UserBody::of(&state, &bearer.user).await?))
}

/// Change identifiers, with the page's rules.
///
/// An absent field is left as it is; `null` (or blank) removes that identifier; a value equal to
/// the stored one changes nothing and stays verified. Changing or removing an email or phone
/// needs `current_password` when the account has a usable password; a changed address becomes
/// unverified and is sent a code, and the old one is told.
#[utoipa::path(
    tag = "account",
    security(("bearer" = [])),
    request_body = UpdateMeBody,
    responses(
        (status = 200, description = "The user, changed", body = UserBody),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No live token", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Taken, invalid, none left, or a wrong or missing `current_password`", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "Busy", body = ErrorBody),
    )
)]
#[patch("/me")]
async fn update_me(
    state: web::Data<AppState>,
    req: HttpRequest,
    bearer: Bearer,
    body: ApiJson<UpdateMeBody>,
) -> Result<HttpResponse, ApiError> {
    let (user, body) = (bearer.user, body.0);
    // the page's reading of a field: None keeps, "" removes, text sets
    let as_form = |field: Option<Option<String>>| field.map(Option::unwrap_or_default);
    let region = state.settings.default_region;
    let mut errors = FormErrors::default();
    let changes = IdentifierChanges {
        username: account::change(&as_form(body.username), Username::parse, "username", &mut errors),
        email: account::change(&as_form(body.email), Email::parse, "email", &mut errors),
        phone: account::change(&as_form(body.phone), |t| Phone::parse(t, region), "phone", &mut errors),
    };
    if !errors.is_empty() {
        return Err(ApiError::from(&errors));
    }
    let (checked, current) = (user.clone(), body.current_password.unwrap_or_default());
    let ctx = crate::web::session::client_context(&req, &state);
    match state.hashing(move |flows| flows.change_identifiers(&checked, changes, &current, &ctx)).await? {
        Form::Done(updated) => {
            if updated.before != updated.after {
                tracing::info!(
                    event = "identifiers_changed",
                    api = true,
                    user_id = user.id,
                    ip = log_ip(&state, &req),
                    "identifiers changed"
                );
            }
            let id = user.id;
            let Some(user) = state.flow(move |flows| flows.user(id)).await? else { return Err(ApiError::Unauthorized) };
            Ok(HttpResponse::Ok().json(UserBody::of(&state, &user).await?))
        }
        Form::Invalid(errors) => Err(ApiError::from(&errors)),
        Form::NoUser => Err(ApiError::Unauthorized),
    }
}

/// Change the password: every other session and token of the user ends; this token stays.
#[utoipa::path(
    tag = "account",
    security(("bearer" = [])),
    request_body = PasswordBody,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No live token", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong current password, or the new one refused", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "Busy", body = ErrorBody),
    )
)]
#[post("/me/password")]
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    bearer: Bearer,
    body: ApiJson<PasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let Bearer { user, token } = bearer;
    let current = body.0.current_password.unwrap_or_default();
    let raw_new = body.0.new_password.unwrap_or_default();
    let new_password: NewPassword =
        account::parse_password_change(&user, &current, &raw_new).map_err(|e| ApiError::from(&e))?;
    let checked = user.clone();
    let ctx = crate::web::session::client_context(&req, &state);
    if !state.hashing(move |flows| flows.change_password(&checked, &current, &new_password, &ctx)).await? {
        return Err(ApiError::field("current_password", account::WRONG_CURRENT));
    }
    // every session of the user ended; this token carries on, as the page's session does
    let id = user.id;
    let ctx = crate::web::session::client_context(&req, &state);
    state.flow(move |flows| flows.keep_token(&token, id, &ctx)).await?;
    tracing::info!(
        event = "password_changed",
        api = true,
        user_id = user.id,
        ip = log_ip(&state, &req),
        "password changed"
    );
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in user's unverified token of `channel`, or 404.
async fn unverified(
    state: &AppState,
    user: &User,
    channel: ChannelName,
) -> Result<crate::accounts::OtpToken, ApiError> {
    let (user_id, channel) = (user.id, Channel::from(channel));
    state.flow(move |flows| flows.unverified_token(user_id, channel)).await?.ok_or(ApiError::NotFound)
}

/// Send a new code to the email or phone.
#[utoipa::path(
    tag = "account",
    security(("bearer" = [])),
    params(("channel" = ChannelName, Path, description = "`email` or `phone`")),
    responses(
        (status = 202, description = "A new code is on its way"),
        (status = 401, description = "No live token", body = ErrorBody),
        (status = 404, description = "No such address, or already verified", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "A body that is not JSON", body = ErrorBody),
        (status = 429, description = "Within the resend cooldown or past the daily cap", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/me/{channel}/send")]
async fn send_code(
    state: web::Data<AppState>,
    bearer: Bearer,
    channel: web::Path<ChannelName>,
) -> Result<HttpResponse, ApiError> {
    let token = unverified(&state, &bearer.user, channel.into_inner()).await?;
    match state.flow(move |flows| Ok(flows.resend(&token))).await? {
        Ok(Sent::Queued) => Ok(HttpResponse::Accepted().finish()),
        Ok(Sent::Refused(refusal)) => {
            metrics::throttle_refusal(Throttle::CodeSend);
            Err(ApiError::throttled(refusal.retry_after_secs(), "No new code can be sent yet."))
        }
        Err(CheckError::NoToken) => Err(ApiError::NotFound),
        Err(CheckError::Unexpected(e)) => Err(ApiError::Unexpected(e)),
        Err(e @ CheckError::Throttled(_)) => {
            Err(ApiError::Unexpected(anyhow::Error::new(e).context("resending a code")))
        }
    }
}

/// Verify the email or phone with the code it was sent.
#[utoipa::path(
    tag = "account",
    security(("bearer" = [])),
    params(("channel" = ChannelName, Path, description = "`email` or `phone`")),
    request_body = CodeBody,
    responses(
        (status = 200, description = "Verified", body = UserBody),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No live token", body = ErrorBody),
        (status = 404, description = "No such address, or already verified", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong or expired code, or none live", body = ErrorBody),
        (status = 429, description = "Throttled", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/me/{channel}/verify")]
async fn verify_address(
    state: web::Data<AppState>,
    req: HttpRequest,
    bearer: Bearer,
    channel: web::Path<ChannelName>,
    body: ApiJson<CodeBody>,
) -> Result<HttpResponse, ApiError> {
    let token = unverified(&state, &bearer.user, channel.into_inner()).await?;
    let code = body.0.code.unwrap_or_default();
    let checked = token.clone();
    match state.flow(move |flows| Ok(flows.accounts.check_password(&checked, &code))).await? {
        Ok(true) => {
            tracing::info!(event = "verified", api = true, user_id = token.user_id, channel = %token.channel, ip = log_ip(&state, &req), "address verified");
            let id = bearer.user.id;
            let Some(user) = state.flow(move |flows| flows.user(id)).await? else { return Err(ApiError::Unauthorized) };
            Ok(HttpResponse::Ok().json(UserBody::of(&state, &user).await?))
        }
        Ok(false) => Err(ApiError::field("code", "That code is wrong or has expired. Check it, or send a new one.")),
        Err(CheckError::Throttled(throttled)) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::throttle_refusal(Throttle::Code);
            Err(ApiError::throttled(secs, "Too many wrong codes."))
        }
        Err(CheckError::NoToken) => Err(ApiError::NotFound),
        Err(CheckError::Unexpected(e)) => Err(ApiError::Unexpected(e)),
    }
}

/// Ask for a password reset.
///
/// The answer is the same, in status, body shape and timing, whether or not the account exists;
/// a code goes to the email (an email, or a username with an email) or the phone.
#[utoipa::path(
    tag = "password-reset",
    request_body = IdentifierBody,
    responses(
        (status = 202, description = "A FLOW for the code", body = FlowBody),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "No identifier", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/password-reset")]
async fn password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<IdentifierBody>,
) -> Result<HttpResponse, ApiError> {
    code_requested(&state, &req, &body.0.identifier, "password_reset_requested", |flows, identifier| {
        let pending = flows.request_reset(identifier)?;
        Ok((pending.user_id(), ApiFlow::Reset(pending)))
    })
    .await
}

/// Prove a reset with its code: the same FLOW, now proven, may set the password once within the
/// code lifetime.
#[utoipa::path(
    tag = "password-reset",
    request_body = FlowCodeBody,
    responses(
        (status = 200, description = "The same FLOW, now proven", body = FlowBody),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "Wrong or expired code (unknown accounts alike), or an unknown or expired flow", body = ErrorBody),
        (status = 429, description = "Throttled", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
#[post("/password-reset/verify")]
async fn password_reset_verify(
    state: web::Data<AppState>,
    body: ApiJson<FlowCodeBody>,
) -> Result<HttpResponse, ApiError> {
    let id = required(&body.0.flow, "flow", UNKNOWN_FLOW)?.to_owned();
    let code = body.0.code.clone().unwrap_or_default();
    let started = std::time::Instant::now();
    let loaded = id.clone();
    let Some(flow) = state.flow(move |flows| flows.flow(&loaded, FlowKind::Reset)).await? else {
        return Err(ApiError::field("flow", UNKNOWN_FLOW));
    };
    let ApiFlow::Reset(pending) = flow.clone() else { return Err(ApiError::field("flow", UNKNOWN_FLOW)) };
    let checked = state.flow(move |flows| flows.verify_reset(&pending, &code)).await?;
    answer_no_sooner_than_the_floor(started).await;
    match checked {
        ResetCheck::Proven(proven) => {
            let answer = id.clone();
            if !state.flow(move |flows| flows.advance_flow(&id, &flow, &ApiFlow::Reset(proven))).await? {
                return Err(ApiError::field("flow", UNKNOWN_FLOW));
            }
            Ok(HttpResponse::Ok().json(FlowBody { flow: answer }))
        }
        ResetCheck::Wrong => Err(ApiError::field("code", WRONG_CODE)),
        ResetCheck::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::throttle_refusal(Throttle::ResetCode);
            Err(ApiError::throttled(secs, "Too many wrong codes."))
        }
    }
}

/// Set the new password of a proven reset: every session and token of the user ends.
#[utoipa::path(
    tag = "password-reset",
    request_body = ResetCompleteBody,
    responses(
        (status = 204, description = "The password is set"),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "A flow not proven (or void, or used), or the password refused", body = ErrorBody),
        (status = 429, description = "Per-IP limit", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "Busy", body = ErrorBody),
    )
)]
#[post("/password-reset/complete")]
async fn password_reset_complete(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<ResetCompleteBody>,
) -> Result<HttpResponse, ApiError> {
    const NOT_PROVEN: &str = "This flow is not a proven reset (or it expired, or was used): start again.";
    let id = required(&body.0.flow, "flow", NOT_PROVEN)?.to_owned();
    let raw = body.0.new_password.clone().unwrap_or_default();
    let loaded = id.clone();
    let proven = state
        .flow(move |flows| {
            let Some(flow @ ApiFlow::Reset(_)) = flows.flow(&loaded, FlowKind::Reset)? else { return Ok(None) };
            let ApiFlow::Reset(pending) = &flow else { return Ok(None) };
            if !flows.reset_holds(pending)? {
                return Ok(None);
            }
            let user = pending.user_id().map(|id| flows.user(id)).transpose()?.flatten();
            Ok(user.map(|user| (flow, user)))
        })
        .await?;
    let Some((flow, user)) = proven else { return Err(ApiError::field("flow", NOT_PROVEN)) };
    let password =
        NewPassword::parse(&raw, user.username.as_ref().map(Username::as_str), user.email.as_ref().map(Email::as_str))
            .map_err(|problems| {
                let mut errors = FormErrors::default();
                crate::web::pages::password_problems(&mut errors, "new_password", problems);
                ApiError::from(&errors)
            })?;
    let ApiFlow::Reset(pending) = flow.clone() else { return Err(ApiError::field("flow", NOT_PROVEN)) };
    let ctx = crate::web::session::client_context(&req, &state);
    let done = state.hashing(move |flows| flows.complete_reset(&pending, &flows.hash(&password)?, &ctx)).await?;
    if !done {
        tracing::info!(
            event = "password_reset_void",
            api = true,
            user_id = user.id,
            ip = log_ip(&state, &req),
            "password reset void"
        );
        return Err(ApiError::field("flow", NOT_PROVEN));
    }
    state.flow(move |flows| flows.take_flow(&id, &flow)).await?;
    tracing::info!(
        event = "password_reset",
        api = true,
        user_id = user.id,
        ip = log_ip(&state, &req),
        "password reset; all sessions ended"
    );
    Ok(HttpResponse::NoContent().finish())
}
