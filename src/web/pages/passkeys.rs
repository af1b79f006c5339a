//! Passkeys: the JSON calls `static/passkey.js` makes around `navigator.credentials` (adding one,
//! signing in with one alone, one as the second step), the remove form, and the script itself.
//!
//! The JSON calls are POSTs like every other: the checks of the middleware come first (413,
//! 429, then 403 without the CSRF token, which the script sends in `X-CSRF-Token`), then the
//! body. They answer JSON: `200 {"challenge", "publicKey"}` for a first call, `200 {"location"}`
//! for a finish (the script goes there; the cookies of a sign-in come with it), and
//! `{"error", "message"}` with a 4xx otherwise (`"location"` too where starting again means
//! another page). Malformed JSON is `400 bad_request`, never a 500.

use actix_web::body::BoxBody;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::seconds;
use super::two_factor::{OVERVIEW, PasswordForm, RECOVERY, Section, overview_page, refused, remember_browser};
use crate::accounts::Throttled;
use crate::flows::Form;
use crate::flows::passkeys::{Challenge, PasskeyAdded, PasskeySignIn};
use crate::flows::two_factor::{Confirmation, SecondStep};
use crate::metrics::{self, SignInResult};
use crate::web::error::AppError;
use crate::web::views::{FormErrors, PasskeyRow, PasskeysPart, StepFactors, When};
use crate::web::visitor::{Visitor, local_path};
use crate::web::{AppState, signed_in_response};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/passkey.js", web::get().to(script))
        .route("/account/passkeys", web::post().to(add_without_script))
        .route("/account/passkeys/register/start", web::post().to(register_start))
        .route("/account/passkeys/register/finish", web::post().to(register_finish))
        .route("/account/passkeys/{id}/delete", web::post().to(remove))
        .route("/sign-in/passkey/start", web::post().to(sign_in_start))
        .route("/sign-in/passkey/finish", web::post().to(sign_in_finish))
        .route("/sign-in/two-factor/passkey/start", web::post().to(second_step_start))
        .route("/sign-in/two-factor/passkey/finish", web::post().to(second_step_finish));
}

/// One message for every failed passkey sign-in, whether or not the credential exists.
const SIGN_IN_FAILED: &str = "That passkey did not sign you in. Try again, or sign in with your password.";
const STALE: &str = "This page is out of date or took too long. Reload it and try again.";

/// The script is part of the binary, as the stylesheet is.
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../../static/passkey.js"))
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status).content_type("application/json").body(body.to_string())
}

/// A ceremony's first answer: the options for `navigator.credentials` and the id to post back.
fn options(challenge: &Challenge) -> Result<HttpResponse, AppError> {
    Ok(json_answer(StatusCode::OK, serde_json::to_value(challenge).map_err(anyhow::Error::new)?))
}

fn refusal(status: StatusCode, error: &str, message: &str) -> HttpResponse {
    json_answer(status, json!({"error": error, "message": message}))
}

/// A refusal that sends the script to another page to start again.
fn start_again(error: &str, message: &str, location: &str) -> HttpResponse {
    json_answer(StatusCode::CONFLICT, json!({"error": error, "message": message, "location": location}))
}

fn throttled(state: &AppState, throttled: Throttled, message: &str) -> HttpResponse {
    let secs = throttled.retry_after_secs(state.flows.accounts.now());
    let mut response =
        refusal(StatusCode::TOO_MANY_REQUESTS, "throttled", &format!("{message} Try again in {}.", seconds(secs)));
    response.headers_mut().insert(header::RETRY_AFTER, secs.into());
    response
}

/// The body as `T`; `None` when it is not the JSON expected (answer [`bad_request`]).
fn parse<T: DeserializeOwned>(body: &web::Bytes) -> Option<T> {
    serde_json::from_slice(body)
        .map_err(|e| tracing::info!(error = %e, "a passkey call's body is not the JSON expected"))
        .ok()
}

fn bad_request() -> HttpResponse {
    refusal(StatusCode::BAD_REQUEST, "bad_request", "The request could not be read. Reload the page and try again.")
}

/// A 303 of a sign-in (its session and cookies) as the `200 {"location"}` the script follows.
fn as_json(response: HttpResponse, location: &str) -> HttpResponse {
    let mut response = response.set_body(BoxBody::new(json!({"location": location}).to_string()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.remove(header::LOCATION);
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// A passkey sign-in done: counted and logged as every sign-in, then signed in (a new session
/// id) for `next` or `/account`. The response (a 303) and where it goes.
fn signed_in(
    state: &AppState,
    visitor: &Visitor,
    user_id: i64,
    next: &str,
    what: &'static str,
) -> Result<(HttpResponse, String), AppError> {
    metrics::sign_in(SignInResult::SignedIn);
    tracing::info!(event = "sign_in", user_id, ip = visitor.log_ip(), method = "passkey", "{what}");
    let location = local_path(next).filter(|n| !n.is_empty()).unwrap_or("/account").to_owned();
    Ok((signed_in_response(state, visitor, user_id, &location)?, location))
}

fn signed_out() -> HttpResponse {
    let location = format!("/sign-in?next={}", crate::web::visitor::url_encode(OVERVIEW));
    json_answer(
        StatusCode::UNAUTHORIZED,
        json!({"error": "unauthorized", "message": "You are signed out. Sign in again.", "location": location}),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterStart {
    name: String,
    current_password: String,
    code: String,
}

#[derive(Deserialize)]
struct RegisterFinish {
    challenge: String,
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize)]
struct SignInFinish {
    challenge: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct SecondStepFinish {
    challenge: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    remember: bool,
}

/// `POST /account/passkeys`: the add form posted without the script (JavaScript off).
async fn add_without_script(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(OVERVIEW)?;
    let message = if state.flows.passkeys_offered() {
        "Adding a passkey needs JavaScript, in a browser that supports passkeys. Nothing was changed."
    } else {
        "Passkeys are not offered on this site."
    };
    let errors = Some((Section::PasskeyAdd, FormErrors::default().with_general(message)));
    overview_page(&state, &visitor, user, StatusCode::UNPROCESSABLE_ENTITY, errors, None).await
}

async fn register_start(
    state: web::Data<AppState>,
    visitor: Visitor,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let Some(user) = visitor.user.clone() else { return Ok(signed_out()) };
    let Some(form) = parse::<RegisterStart>(&body) else { return Ok(bad_request()) };
    match state
        .hashing(move |flows| {
            flows.start_passkey_registration(
                &user,
                &form.name,
                &Confirmation { current_password: form.current_password, code: form.code },
            )
        })
        .await?
    {
        Form::Done(challenge) => options(&challenge),
        Form::Invalid(errors) => {
            let fields: serde_json::Map<String, serde_json::Value> = errors
                .0
                .iter()
                .filter_map(|(field, message)| Some((field.as_ref()?.as_str().to_owned(), message.clone().into())))
                .collect();
            let message = errors.0.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" ");
            Ok(json_answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "message": message, "fields": fields}),
            ))
        }
        Form::NoUser => Ok(signed_out()),
    }
}

async fn register_finish(
    state: web::Data<AppState>,
    visitor: Visitor,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let Some(user) = visitor.user.clone() else { return Ok(signed_out()) };
    let Some(finish) = parse::<RegisterFinish>(&body) else { return Ok(bad_request()) };
    let (user_id, ctx) = (user.id, visitor.context());
    match state
        .flow(move |flows| flows.finish_passkey_registration(&user, &finish.challenge, &finish.credential, &ctx))
        .await?
    {
        PasskeyAdded::Added(codes) => {
            let location = if codes.is_empty() {
                OVERVIEW
            } else {
                visitor.session.set_fresh_codes(&state.flows.seal_fresh_codes(user_id, &codes))?;
                RECOVERY
            };
            Ok(json_answer(StatusCode::OK, json!({"location": location})))
        }
        PasskeyAdded::Refused(message) => Ok(refusal(StatusCode::UNPROCESSABLE_ENTITY, "refused", message)),
        PasskeyAdded::Void => Ok(start_again("expired", STALE, OVERVIEW)),
    }
}

/// `POST /account/passkeys/{id}/delete`.
async fn remove(
    state: web::Data<AppState>,
    visitor: Visitor,
    path: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(OVERVIEW)?.clone();
    let public_id = path.into_inner();
    let (password, ctx, checked, id) = (form.confirmation(), visitor.context(), user.clone(), public_id.clone());
    match state.hashing(move |flows| flows.remove_passkey(&checked, &id, &password, &ctx)).await? {
        Form::Done(true) => Ok(crate::web::visitor::see_other(OVERVIEW)),
        Form::Done(false) => Ok(crate::web::error::error_page(StatusCode::NOT_FOUND, Some(visitor.chrome()), None)),
        Form::Invalid(errors) => refused(&state, &visitor, &user, Section::PasskeyRemove(public_id), &errors).await,
        Form::NoUser => Err(AppError::Redirect("/sign-in".into())),
    }
}

async fn sign_in_start(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    match state.flow(|flows| flows.start_passkey_sign_in()).await? {
        Some(challenge) => options(&challenge),
        None => Ok(refusal(StatusCode::NOT_FOUND, "not_found", "Passkeys are not offered on this site.")),
    }
}

async fn sign_in_finish(
    state: web::Data<AppState>,
    visitor: Visitor,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let Some(finish) = parse::<SignInFinish>(&body) else { return Ok(bad_request()) };
    let ctx = visitor.context();
    let (challenge, credential) = (finish.challenge, finish.credential);
    match state.flow(move |flows| flows.finish_passkey_sign_in(&challenge, &credential, &ctx)).await? {
        PasskeySignIn::SignedIn(user) => {
            let (response, location) = signed_in(&state, &visitor, user.id, &finish.next, "signed in with a passkey")?;
            Ok(as_json(response, &location))
        }
        PasskeySignIn::Failed => {
            metrics::sign_in(SignInResult::Wrong);
            tracing::info!(event = "sign_in_failed", ip = visitor.log_ip(), method = "passkey", "sign-in failed");
            Ok(refusal(StatusCode::UNAUTHORIZED, "invalid_credentials", SIGN_IN_FAILED))
        }
        PasskeySignIn::Throttled(t) => {
            metrics::sign_in(SignInResult::Throttled);
            tracing::info!(event = "sign_in_throttled", ip = visitor.log_ip(), method = "passkey", "sign-in throttled");
            Ok(throttled(&state, t, "Too many failed attempts with this passkey."))
        }
    }
}

/// The passkeys part of `/account/two-factor` for the user.
pub(crate) async fn part(state: &AppState, user_id: i64) -> Result<PasskeysPart, AppError> {
    let offered = state.flows.passkeys_offered();
    let list = state.flow(move |flows| flows.passkeys_of(user_id)).await?;
    let list = list
        .into_iter()
        .map(|p| PasskeyRow {
            public_id: p.public_id,
            name: p.name,
            added: When::at(p.created_at),
            last_used: p.last_used_at.map(When::at),
        })
        .collect();
    Ok(PasskeysPart { offered, list, ..PasskeysPart::default() })
}

/// What `/sign-in/two-factor` offers the account of a half sign-in that holds: the passkey
/// button, the authenticator app's code.
pub(crate) async fn offered_for(state: &AppState, user_id: i64) -> Result<StepFactors, AppError> {
    let (passkey, app) = state.flow(move |flows| flows.second_step_factors(user_id)).await?;
    Ok(StepFactors { passkey, app })
}

async fn second_step_start(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let Some(half) = visitor.session.half_sign_in() else {
        return Ok(start_again("expired", "Sign in with your password again.", "/sign-in"));
    };
    match state.flow(move |flows| flows.start_passkey_second_step(&half)).await? {
        Some(challenge) => options(&challenge),
        // void, or no passkey any more: the page, reloaded, says which
        None => Ok(start_again("expired", STALE, "/sign-in/two-factor")),
    }
}

async fn second_step_finish(
    state: web::Data<AppState>,
    visitor: Visitor,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let Some(half) = visitor.session.half_sign_in() else {
        return Ok(start_again("expired", "Sign in with your password again.", "/sign-in"));
    };
    let Some(finish) = parse::<SecondStepFinish>(&body) else { return Ok(bad_request()) };
    let remember = finish.remember && state.settings.trusted_browser_days > 0;
    let (checked, ctx) = (half.clone(), visitor.context());
    match state
        .flow(move |flows| flows.finish_passkey_second_step(&checked, &finish.challenge, &finish.credential, &ctx))
        .await?
    {
        SecondStep::Void => {
            visitor.session.clear_half_sign_in();
            Ok(start_again("expired", "Sign in with your password again.", "/sign-in"))
        }
        SecondStep::Throttled(t) => {
            metrics::sign_in(SignInResult::Throttled);
            tracing::info!(
                event = "second_step_throttled",
                ip = visitor.log_ip(),
                method = "passkey",
                "second step throttled"
            );
            Ok(throttled(&state, t, "Too many failed attempts."))
        }
        SecondStep::Wrong => {
            metrics::sign_in(SignInResult::Wrong);
            tracing::info!(
                event = "second_step_failed",
                ip = visitor.log_ip(),
                method = "passkey",
                "second step failed"
            );
            Ok(refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "That passkey was not accepted. Try again, or enter a code from your app or a recovery code.",
            ))
        }
        SecondStep::SignedIn { user, .. } => {
            let (mut response, location) =
                signed_in(&state, &visitor, user.id, &half.next, "signed in with a second factor")?;
            if remember {
                remember_browser(&state, &mut response, user.id).await?;
            }
            Ok(as_json(response, &location))
        }
    }
}
