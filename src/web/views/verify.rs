//! `GET|POST /verify/{channel}`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

/// `GET|POST /verify/{channel}`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "verify.html")]
pub struct VerifyView {
    pub chrome: Chrome,
    /// `"email"` or `"phone"`: also the path segment of the form actions.
    pub channel: &'static str,
    /// Where the code was sent.
    pub address: String,
    pub errors: FormErrors,
    pub notice: Option<String>,
}

impl VerifyView {
    /// "email address" or "phone number", for headings and sentences.
    pub fn channel_noun(&self) -> &'static str {
        if self.channel == "phone" { "phone number" } else { "email address" }
    }
}

page_with_chrome!(VerifyView);
