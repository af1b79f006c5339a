//! Sign in with a code: `GET|POST /sign-in/code` and `…/verify`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

/// `GET|POST /sign-in/code`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_in_code.html")]
pub struct CodeRequestView {
    pub chrome: Chrome,
    pub identifier: String,
    /// Where to go after signing in (the hidden `next` input); empty for the default.
    pub next: String,
    pub errors: FormErrors,
}

/// `GET|POST /sign-in/code/verify`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_in_code_verify.html")]
pub struct CodeVerifyView {
    pub chrome: Chrome,
    pub errors: FormErrors,
}

page_with_chrome!(CodeRequestView, CodeVerifyView);
