//! Handlers, one module per flow. Each parses its form into domain types, calls one flow on a
//! blocking thread, and answers: a redirect, or its page re-shown with the messages.

pub mod account;
pub mod activity;
pub mod code;
pub mod delete;
pub mod passkeys;
pub mod reset;
pub mod sessions;
pub mod sign_in;
pub mod sign_up;
pub mod two_factor;
pub mod verify;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use super::views::{FormErrors, HomeView, html};
use super::visitor::Visitor;
use crate::accounts::FieldErrors;
use crate::domain::Invalid;

pub async fn home(visitor: Visitor) -> HttpResponse {
    html(StatusCode::OK, &HomeView { chrome: visitor.chrome() })
}

/// Library field errors as form messages.
pub(crate) fn form_errors(errors: &FieldErrors) -> FormErrors {
    let mut form = FormErrors::default();
    for (field, message) in &errors.0 {
        match field {
            Some(field) => form.field(field.as_str(), message.clone()),
            None => form.general(message.clone()),
        }
    }
    form
}

/// Password-rule messages on one field.
pub(crate) fn password_problems(form: &mut FormErrors, field: &'static str, problems: Vec<Invalid>) {
    let text = problems.into_iter().map(|p| p.0).collect::<Vec<_>>().join(" ");
    form.field(field, text);
}

/// Adds `Retry-After` to a 429 page.
pub(crate) fn too_many(mut response: HttpResponse, secs: u64) -> HttpResponse {
    response.headers_mut().insert(actix_web::http::header::RETRY_AFTER, secs.into());
    response
}

/// "1 second", "2 seconds".
pub(crate) fn seconds(secs: u64) -> String {
    format!("{secs} second{}", if secs == 1 { "" } else { "s" })
}

/// A form field as typed: absent and blank are both "".
pub(crate) fn typed(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}
