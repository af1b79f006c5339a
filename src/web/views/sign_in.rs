//! `GET|POST /sign-in`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

/// `GET|POST /sign-in`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_in.html")]
pub struct SignInView {
    pub chrome: Chrome,
    pub identifier: String,
    /// Where to go after signing in (the hidden `next` input); empty for the default.
    pub next: String,
    pub errors: FormErrors,
    /// Passkeys work here: the `#passkey-sign-in` button and the identifier's passkey autofill.
    pub passkeys: bool,
}

impl SignInView {
    /// The identifier field's `autocomplete`: with passkeys, the browser may offer them there
    /// (conditional mediation).
    pub fn identifier_autocomplete(&self) -> &'static str {
        if self.passkeys { "username webauthn" } else { "username" }
    }
}

page_with_chrome!(SignInView);
