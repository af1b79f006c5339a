//! `GET|POST /sign-up`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

/// `GET|POST /sign-up`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_up.html")]
pub struct SignUpView {
    pub chrome: Chrome,
    pub username: String,
    pub email: String,
    pub phone: String,
    pub errors: FormErrors,
}

page_with_chrome!(SignUpView);
