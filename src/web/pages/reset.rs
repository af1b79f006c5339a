//! The password reset: `/password-reset` (ask), `/password-reset/verify` (the code),
//! `/password-reset/new` (the new password). The request answers the same whether or not the
//! account exists; what was asked is kept in this session only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::verify::wait_errors;
use super::{password_problems, too_many, typed};
use crate::domain::password::NewPassword;
use crate::domain::{Email, Username};
use crate::flows::{PendingReset, ResetCheck};
use crate::metrics::{self, Throttle};
use crate::web::error::AppError;
use crate::web::views::{FormErrors, ResetNewView, ResetRequestView, ResetVerifyView, html};
use crate::web::visitor::{Visitor, see_other};
use crate::web::{AppState, signed_out_response};

/// The least time a reset request or code check takes to answer (well above the work of either
/// case): a known account costs a few more reads and writes than an unknown one (the code and
/// its message; the token's check), and answering no sooner than this hides the difference.
/// The code sign-in's request and check answer no sooner than this too, for the same reason.
const RESET_FLOOR: std::time::Duration = std::time::Duration::from_millis(40);

pub(crate) async fn answer_no_sooner_than_the_floor(started: std::time::Instant) {
    actix_web::rt::time::sleep(RESET_FLOOR.saturating_sub(started.elapsed())).await;
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RequestForm {
    identifier: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewPasswordForm {
    new_password: Option<String>,
}

pub async fn show_request(visitor: Visitor) -> HttpResponse {
    let view = ResetRequestView { chrome: visitor.chrome(), identifier: String::new(), errors: FormErrors::default() };
    html(StatusCode::OK, &view)
}

pub async fn request(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<RequestForm>,
) -> Result<HttpResponse, AppError> {
    let identifier = typed(&form.identifier);
    if identifier.trim().is_empty() {
        let view = ResetRequestView {
            chrome: visitor.chrome(),
            identifier,
            errors: FormErrors::default()
                .with_field("identifier", "Enter your username, email address or phone number."),
        };
        return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &view));
    }
    let started = std::time::Instant::now();
    let pending = state.flow(move |flows| flows.request_reset(&identifier)).await?;
    // the account (when one matched) is for the operator's log only; the answer is the same
    tracing::info!(
        event = "password_reset_requested",
        user_id = pending.user_id(),
        ip = visitor.log_ip(),
        "password reset requested"
    );
    visitor.session.set_reset(&pending)?;
    answer_no_sooner_than_the_floor(started).await;
    Ok(see_other("/password-reset/verify"))
}

pub async fn show_verify(visitor: Visitor) -> HttpResponse {
    if visitor.session.reset().is_none() {
        return see_other("/password-reset");
    }
    html(StatusCode::OK, &ResetVerifyView { chrome: visitor.chrome(), errors: FormErrors::default() })
}

pub async fn verify(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let Some(pending) = visitor.session.reset() else { return Ok(see_other("/password-reset")) };
    let code = typed(&form.code);
    let started = std::time::Instant::now();
    let checked = state.flow(move |flows| flows.verify_reset(&pending, &code)).await?;
    answer_no_sooner_than_the_floor(started).await;
    match checked {
        ResetCheck::Proven(proven) => {
            // a new session id for the proven state, as at sign-in
            visitor.session.renew();
            visitor.session.set_reset(&proven)?;
            Ok(see_other("/password-reset/new"))
        }
        ResetCheck::Wrong => {
            let errors = FormErrors::default().with_field("code", "That code is wrong or has expired.");
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &ResetVerifyView { chrome: visitor.chrome(), errors }))
        }
        ResetCheck::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::throttle_refusal(Throttle::ResetCode);
            let view = ResetVerifyView { chrome: visitor.chrome(), errors: wait_errors(secs) };
            Ok(too_many(html(StatusCode::TOO_MANY_REQUESTS, &view), secs))
        }
    }
}

/// The reset of this session if its code was proven within the code's lifetime and nothing it
/// depends on has changed since. (Completing it checks again, in its own transaction.)
async fn proven(state: &AppState, visitor: &Visitor) -> Result<Option<PendingReset>, AppError> {
    let Some(pending) = visitor.session.reset() else { return Ok(None) };
    let checked = pending.clone();
    let holds = state.flow(move |flows| flows.reset_holds(&checked)).await?;
    Ok(holds.then_some(pending))
}

pub async fn show_new(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    if proven(&state, &visitor).await?.is_none() {
        return Ok(see_other("/password-reset"));
    }
    Ok(html(StatusCode::OK, &ResetNewView { chrome: visitor.chrome(), errors: FormErrors::default() }))
}

pub async fn set_new(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<NewPasswordForm>,
) -> Result<HttpResponse, AppError> {
    let Some(pending) = proven(&state, &visitor).await? else { return Ok(see_other("/password-reset")) };
    let user_id = pending.user_id().unwrap_or_default();
    let Some(user) = state.flow(move |flows| flows.user(user_id)).await? else {
        visitor.session.clear_reset();
        return Ok(see_other("/password-reset"));
    };
    let raw = typed(&form.new_password);
    let password = match NewPassword::parse(
        &raw,
        user.username.as_ref().map(Username::as_str),
        user.email.as_ref().map(Email::as_str),
    ) {
        Ok(password) => password,
        Err(problems) => {
            let mut errors = FormErrors::default();
            password_problems(&mut errors, "new_password", problems);
            return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &ResetNewView { chrome: visitor.chrome(), errors }));
        }
    };
    let ctx = visitor.context();
    let done = state.hashing(move |flows| flows.complete_reset(&pending, &flows.hash(&password)?, &ctx)).await?;
    if !done {
        // void: the account's credentials or that channel changed, or this proof was used
        visitor.session.clear_reset();
        tracing::info!(event = "password_reset_void", user_id, ip = visitor.log_ip(), "password reset void");
        return Ok(see_other("/password-reset"));
    }
    tracing::info!(event = "password_reset", user_id, ip = visitor.log_ip(), "password reset; all sessions ended");
    // Every session of the user is gone; this one ends too (it may be anonymous).
    visitor.session.sign_out();
    Ok(signed_out_response(&state, "/sign-in"))
}
