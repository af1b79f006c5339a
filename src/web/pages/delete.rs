//! The account's own data: `GET/POST /account/delete` and `GET /account/export`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{form_errors, seconds, too_many, typed};
use crate::accounts::User;
use crate::flows::Deletion;
use crate::web::error::AppError;
use crate::web::views::{DeleteView, FormErrors, html};
use crate::web::visitor::{Visitor, see_other};
use crate::web::{AppState, signed_out_response};

const DELETE: &str = "/account/delete";
const EXPORT: &str = "/account/export";
/// What the `confirm` field must hold (trimmed, in any case: a phone keyboard may capitalize it).
const CONFIRM_WORD: &str = "delete";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteForm {
    current_password: Option<String>,
    confirm: Option<String>,
}

/// The delete page: what goes (the identifiers, the sessions) and the form.
async fn page(
    state: &AppState,
    visitor: &Visitor,
    user: &User,
    confirm: String,
    errors: FormErrors,
) -> Result<DeleteView, AppError> {
    let id = user.id;
    let sessions = state.flow(move |flows| flows.export_user(id)).await?.map_or(0, |export| export.sessions.len());
    let identifiers = [
        user.username.as_ref().map(|u| u.as_str().to_owned()),
        user.email.as_ref().map(|e| e.as_str().to_owned()),
        user.phone.as_ref().map(|p| p.as_str().to_owned()),
    ];
    Ok(DeleteView {
        chrome: visitor.chrome(),
        identifiers: identifiers.into_iter().flatten().collect(),
        sessions,
        has_usable_password: user.has_usable_password(),
        confirm,
        errors,
    })
}

pub async fn show(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(DELETE)?;
    Ok(html(StatusCode::OK, &page(&state, &visitor, user, String::new(), FormErrors::default()).await?))
}

pub async fn delete(
    state: web::Data<AppState>,
    visitor: Visitor,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, AppError> {
    let user = visitor.require_user(DELETE)?.clone();
    let confirm = typed(&form.confirm);
    let current = typed(&form.current_password);
    let reshow = async |status: StatusCode, errors: FormErrors| -> Result<HttpResponse, AppError> {
        Ok(html(status, &page(&state, &visitor, &user, confirm.clone(), errors).await?))
    };
    let mut errors = FormErrors::default();
    if !confirm.trim().eq_ignore_ascii_case(CONFIRM_WORD) {
        errors.field("confirm", "Type the word delete to confirm.");
    }
    if user.has_usable_password() && current.is_empty() {
        errors.field("current_password", "Enter your current password.");
    }
    if !errors.is_empty() {
        // nothing checked or counted: the password is not even looked at
        return reshow(StatusCode::UNPROCESSABLE_ENTITY, errors).await;
    }
    let (checked, signed_in_at) = (user.clone(), visitor.session.signed_in_at());
    let work = move |flows: &crate::flows::Flows| flows.delete_account(&checked, &current, signed_in_at);
    let outcome = if user.has_usable_password() { state.hashing(work).await? } else { state.flow(work).await? };
    match outcome {
        Deletion::Deleted => {
            tracing::info!(event = "account_deleted", user_id = user.id, ip = visitor.log_ip(), "account deleted");
            visitor.session.sign_out();
            Ok(signed_out_response(&state, "/"))
        }
        Deletion::Invalid(field_errors) => reshow(StatusCode::UNPROCESSABLE_ENTITY, form_errors(&field_errors)).await,
        Deletion::Throttled(throttled) => {
            let secs = throttled.retry_after_secs(state.flows.accounts.now());
            crate::metrics::throttle_refusal(crate::metrics::Throttle::SignIn);
            let errors = FormErrors::default()
                .with_field("current_password", format!("Too many wrong passwords. Try again in {}.", seconds(secs)));
            Ok(too_many(reshow(StatusCode::TOO_MANY_REQUESTS, errors).await?, secs))
        }
    }
}

/// `GET /account/export`: what is kept about the account, as a JSON file to save.
pub async fn export(state: web::Data<AppState>, visitor: Visitor) -> Result<HttpResponse, AppError> {
    let id = visitor.require_user(EXPORT)?.id;
    let Some(export) = state.flow(move |flows| flows.export_user(id)).await? else {
        return Ok(see_other("/sign-in"));
    };
    let body = serde_json::to_vec_pretty(&export).map_err(|e| AppError::Unexpected(e.into()))?;
    let name = format!("flex-user-account-{}.json", export.exported_at.format("%Y-%m-%d"));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .body(body))
}
