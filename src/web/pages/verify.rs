//! `GET/POST /verify/{email,phone}` and `POST /verify/{email,phone}/send`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{seconds, too_many, typed};
use crate::accounts::{Channel, CheckError, OtpToken};
use crate::flows::Sent;
use crate::metrics::{self, Throttle};
use crate::web::AppState;
use crate::web::error::{AppError, error_page};
use crate::web::views::{FormErrors, VerifyView, html};
use crate::web::visitor::{Visitor, see_other};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: Option<String>,
}

/// The signed-in user's unverified token for this channel; otherwise a redirect (sign in
/// first, or back to the account for an address that is absent or already verified).
async fn token(state: &AppState, visitor: &Visitor, segment: &str) -> Result<OtpToken, AppError> {
    let Ok(channel) = segment.parse::<Channel>() else { return Err(AppError::NotFound) };
    let user_id = visitor.require_user(&format!("/verify/{segment}"))?.id;
    state
        .flow(move |flows| flows.unverified_token(user_id, channel))
        .await?
        .ok_or_else(|| AppError::Redirect("/account".into()))
}

fn view(visitor: &Visitor, token: &OtpToken, errors: FormErrors) -> VerifyView {
    VerifyView {
        chrome: visitor.chrome(),
        channel: token.channel.as_str(),
        address: token.address.clone(),
        errors,
        notice: None,
    }
}

pub async fn show(
    state: web::Data<AppState>,
    visitor: Visitor,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token(&state, &visitor, &path).await?;
    Ok(html(StatusCode::OK, &view(&visitor, &token, FormErrors::default())))
}

pub async fn send(
    state: web::Data<AppState>,
    visitor: Visitor,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token(&state, &visitor, &path).await?;
    let flows = state.flows.clone();
    let channel = token.channel;
    match web::block(move || flows.resend(&token)).await? {
        Ok(Sent::Queued) => Ok(see_other(&format!("/verify/{channel}"))),
        Ok(Sent::Refused(refusal)) => {
            metrics::throttle_refusal(Throttle::CodeSend);
            Ok(error_page(StatusCode::TOO_MANY_REQUESTS, Some(visitor.chrome()), Some(refusal.retry_after_secs())))
        }
        Err(CheckError::NoToken) => Ok(see_other("/account")),
        Err(CheckError::Unexpected(e)) => Err(AppError::Unexpected(e)),
        Err(e @ CheckError::Throttled(_)) => {
            Err(AppError::Unexpected(anyhow::Error::new(e).context("resending a code")))
        }
    }
}

pub async fn check(
    state: web::Data<AppState>,
    visitor: Visitor,
    path: web::Path<String>,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let token = token(&state, &visitor, &path).await?;
    let code = typed(&form.code);
    let (flows, checked, ctx) = (state.flows.clone(), token.clone(), visitor.context());
    match web::block(move || flows.verify_address(&checked, &code, &ctx)).await? {
        Ok(true) => {
            tracing::info!(event = "verified", user_id = token.user_id, channel = %token.channel, ip = visitor.log_ip(), "address verified");
            Ok(see_other("/account"))
        }
        Ok(false) => {
            let errors = FormErrors::default()
                .with_field("code", "That code is wrong or has expired. Check it, or send a new one.");
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, &view(&visitor, &token, errors)))
        }
        Err(CheckError::Throttled(throttled)) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::throttle_refusal(Throttle::Code);
            tracing::info!(event = "code_throttled", user_id = token.user_id, channel = %token.channel, ip = visitor.log_ip(), "code check throttled");
            Ok(too_many(html(StatusCode::TOO_MANY_REQUESTS, &view(&visitor, &token, wait_errors(secs))), secs))
        }
        Err(CheckError::NoToken) => Ok(see_other("/account")),
        Err(CheckError::Unexpected(e)) => Err(AppError::Unexpected(e)),
    }
}

/// The form message for a backoff window.
pub(crate) fn wait_errors(secs: u64) -> FormErrors {
    FormErrors::default().with_field("code", format!("Too many wrong codes. Try again in {}.", seconds(secs)))
}
