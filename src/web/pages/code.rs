//! Sign in with a code: `/sign-in/code` (ask) and `/sign-in/code/verify` (the code). The request
//! answers the same whether or not the account exists, no sooner than the reset's floor (the
//! same work, the same reason); what was asked, and where to go next, is kept in this session.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::reset::answer_no_sooner_than_the_floor;
use super::too_many;
use super::typed;
use super::verify::wait_errors;
use crate::accounts::activity::SignInMethod;
use crate::flows::CodeSignIn;
use crate::metrics::{self, Throttle};
use crate::web::error::AppError;
use crate::web::views::{CodeRequestView, CodeVerifyView, FormErrors, html};
use crate::web::visitor::{Visitor, local_path, see_other};
use crate::web::{AppState, finish_first_factor};

const REQUEST: &str = "/sign-in/code";
const VERIFY: &str = "/sign-in/code/verify";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RequestForm {
    identifier: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: Option<String>,
}

/// A `next` worth keeping: a local path, else nothing (then `/account`).
fn local_next(next: &Option<String>) -> Option<String> {
    next.as_deref().and_then(local_path).map(str::to_owned)
}

pub async fn show_request(visitor: Visitor, query: web::Query<NextQuery>) -> HttpResponse {
    let view = CodeRequestView {
        chrome: visitor.chrome(),
        identifier: String::new(),
        next: local_next(&query.next).unwrap_or_default(),
        errors: FormErrors::default(),
    };
    html(StatusCode::OK, &view)
}

pub async fn request(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<RequestForm>,
) -> Result<HttpResponse, AppError> {
    let identifier = typed(&form.identifier);
    let next = local_next(&form.next);
    if identifier.trim().is_empty() {
        let view = CodeRequestView {
            chrome: visitor.chrome(),
            identifier,
            next: next.unwrap_or_default(),
            errors: FormErrors::default()
                .with_field("identifier", "Enter your username, email address or phone number."),
        };
        return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &view));
    }
    let started = std::time::Instant::now();
    let pending = state.flow(move |flows| flows.request_sign_in_code(&identifier)).await?;
    // the account (when one matched) is for the operator's log only; the answer is the same
    tracing::info!(
        event = "code_sign_in_requested",
        user_id = pending.user_id(),
        ip = visitor.log_ip(),
        "sign-in code requested"
    );
    visitor.session.set_code_sign_in(&pending, next.as_deref())?;
    answer_no_sooner_than_the_floor(started).await;
    Ok(see_other(VERIFY))
}

pub async fn show_verify(visitor: Visitor) -> HttpResponse {
    if visitor.session.code_sign_in().is_none() {
        return see_other(REQUEST);
    }
    html(StatusCode::OK, &CodeVerifyView { chrome: visitor.chrome(), errors: FormErrors::default() })
}

pub async fn verify(
    state: web::Data<AppState>,
    visitor: Visitor,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let Some((pending, next)) = visitor.session.code_sign_in() else { return Ok(see_other(REQUEST)) };
    let code = typed(&form.code);
    let started = std::time::Instant::now();
    let ctx = visitor.context();
    let checked = state.flow(move |flows| flows.sign_in_with_code(&pending, &code, &ctx)).await?;
    answer_no_sooner_than_the_floor(started).await;
    match checked {
        CodeSignIn::Proven(user) => {
            tracing::info!(event = "sign_in", method = "code", user_id = user.id, ip = visitor.log_ip(), "signed in");
            // signed in, or on to the second step when the account has one
            finish_first_factor(&state, &visitor, &req, user, SignInMethod::Code, next.as_deref().unwrap_or("/account"))
                .await
        }
        CodeSignIn::Wrong => {
            let errors = FormErrors::default().with_field("code", "That code is wrong or has expired.");
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &CodeVerifyView { chrome: visitor.chrome(), errors }))
        }
        CodeSignIn::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::throttle_refusal(Throttle::SignInCode);
            let view = CodeVerifyView { chrome: visitor.chrome(), errors: wait_errors(secs) };
            Ok(too_many(html(StatusCode::TOO_MANY_REQUESTS, &view), secs))
        }
    }
}
