//! The three steps of a password reset: `GET|POST /password-reset`, `…/verify`, `…/new`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

/// `GET|POST /password-reset`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "reset_request.html")]
pub struct ResetRequestView {
    pub chrome: Chrome,
    pub identifier: String,
    pub errors: FormErrors,
}

/// `GET|POST /password-reset/verify`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "reset_verify.html")]
pub struct ResetVerifyView {
    pub chrome: Chrome,
    pub errors: FormErrors,
}

/// `GET|POST /password-reset/new`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "reset_new.html")]
pub struct ResetNewView {
    pub chrome: Chrome,
    pub errors: FormErrors,
}

page_with_chrome!(ResetRequestView, ResetVerifyView, ResetNewView);
