//! `GET/POST /sign-in` and `POST /sign-out`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{seconds, too_many, typed};
use crate::accounts::activity::SignInMethod;
use crate::flows::SignIn;
use crate::metrics::{self, SignInResult};
use crate::web::error::AppError;
use crate::web::views::{FormErrors, SignInView, html};
use crate::web::visitor::{Visitor, local_path};
use crate::web::{AppState, finish_first_factor, signed_out_response};

/// One message for every failure, so nothing tells which accounts exist.
const NO_MATCH: &str = "That username, email or phone number and password do not match an account.";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    identifier: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

pub async fn show(state: web::Data<AppState>, visitor: Visitor, query: web::Query<SignInQuery>) -> HttpResponse {
    let view = SignInView {
        chrome: visitor.chrome(),
        identifier: String::new(),
        next: query.next.clone().filter(|n| local_path(n).is_some()).unwrap_or_default(),
        errors: FormErrors::default(),
        passkeys: state.flows.passkeys_offered(),
    };
    html(StatusCode::OK, &view)
}

pub async fn submit(
    state: web::Data<AppState>,
    visitor: Visitor,
    req: HttpRequest,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let identifier = typed(&form.identifier);
    let password = typed(&form.password);
    let next = form.next.clone().unwrap_or_default();
    let reshow = |status: StatusCode, message: String| {
        let view = SignInView {
            chrome: visitor.chrome(),
            identifier: identifier.clone(),
            next: local_path(&next).map(str::to_owned).unwrap_or_default(),
            errors: FormErrors::default().with_general(message),
            passkeys: state.flows.passkeys_offered(),
        };
        html(status, &view)
    };

    let (typed_identifier, ctx) = (identifier.clone(), visitor.context());
    match state.hashing(move |flows| flows.sign_in(&typed_identifier, &password, &ctx)).await? {
        SignIn::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            metrics::sign_in(SignInResult::Throttled);
            tracing::info!(event = "sign_in_throttled", ip = visitor.log_ip(), retry_after = secs, "sign-in throttled");
            let page = reshow(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed attempts. Try again in {}.", seconds(secs)),
            );
            Ok(too_many(page, secs))
        }
        SignIn::Wrong => {
            metrics::sign_in(SignInResult::Wrong);
            tracing::info!(event = "sign_in_failed", ip = visitor.log_ip(), "sign-in failed");
            Ok(reshow(StatusCode::UNAUTHORIZED, NO_MATCH.to_owned()))
        }
        SignIn::SignedIn(user) => {
            metrics::sign_in(SignInResult::SignedIn);
            tracing::info!(event = "sign_in", user_id = user.id, ip = visitor.log_ip(), "password proven");
            finish_first_factor(&state, &visitor, &req, user, SignInMethod::Password, &next).await
        }
    }
}

pub async fn sign_out(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    if let Some(user) = &visitor.user {
        let (user_id, public_id, ctx) = (user.id, visitor.session.public_id(), visitor.context());
        state.flow(move |flows| flows.sign_out(user_id, public_id.as_deref(), &ctx)).await?;
        tracing::info!(event = "sign_out", user_id, ip = visitor.log_ip(), "signed out");
    }
    visitor.session.sign_out();
    Ok(signed_out_response(&state, "/"))
}
