//! One askama view struct per page. Handlers fill a view and answer it with [`html`] (any
//! status) or, for a plain 200, return it directly (every view is an actix `Responder`).
//!
//! Templates live in `templates/` and all extend `base.html`; HTML escaping is on, so every
//! value here is plain text. No template holds a script or an inline style (the CSP forbids
//! both), and no template ever writes a password back into a form.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use askama::Template;
use askama_web::WebTemplate;

/// What every page needs for its header and forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chrome {
    /// The session's CSRF token: written into every form as the hidden `csrf_token` input.
    pub csrf_token: String,
    /// The signed-in user's display name (username, else email, else phone); `None` when signed out.
    pub signed_in_as: Option<String>,
}

impl Chrome {
    pub fn signed_out(csrf_token: impl Into<String>) -> Self {
        Chrome { csrf_token: csrf_token.into(), signed_in_as: None }
    }

    pub fn signed_in(csrf_token: impl Into<String>, display_name: impl Into<String>) -> Self {
        Chrome { csrf_token: csrf_token.into(), signed_in_as: Some(display_name.into()) }
    }

    /// The display name when signed in.
    pub fn display_name(&self) -> Option<&str> {
        self.signed_in_as.as_deref()
    }
}

/// Field messages and form-wide messages for a re-shown form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormErrors {
    fields: Vec<(&'static str, String)>,
    generals: Vec<String>,
}

impl FormErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A message for the input named `name` (its form field name, e.g. `"email"`). A second
    /// message for the same field is appended to the first.
    pub fn field(&mut self, name: &'static str, msg: impl Into<String>) {
        let msg = msg.into();
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(' ');
                existing.push_str(&msg);
            }
            None => self.fields.push((name, msg)),
        }
    }

    /// A message about the whole form, shown in an alert box at its top.
    pub fn general(&mut self, msg: impl Into<String>) {
        self.generals.push(msg.into());
    }

    /// Builder form of [`FormErrors::field`].
    pub fn with_field(mut self, name: &'static str, msg: impl Into<String>) -> Self {
        self.field(name, msg);
        self
    }

    /// Builder form of [`FormErrors::general`].
    pub fn with_general(mut self, msg: impl Into<String>) -> Self {
        self.general(msg);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, m)| m.as_str())
    }

    pub fn generals(&self) -> &[String] {
        &self.generals
    }

    /// Field messages in the order they were added.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields.iter().map(|(n, m)| (*n, m.as_str()))
    }

    pub fn has_field_errors(&self) -> bool {
        !self.fields.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.generals.is_empty()
    }
}

/// `GET /`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomeView {
    pub chrome: Chrome,
}

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

/// `GET|POST /sign-in`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "sign_in.html")]
pub struct SignInView {
    pub chrome: Chrome,
    pub identifier: String,
    /// Where to go after signing in (the hidden `next` input); empty for the default.
    pub next: String,
    pub errors: FormErrors,
}

/// An email address or phone number of the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressView {
    pub address: String,
    pub verified: bool,
}

/// `GET|POST /account` and the re-shown `POST /account/password`.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountView {
    pub chrome: Chrome,
    pub username: Option<String>,
    pub email: Option<AddressView>,
    pub phone: Option<AddressView>,
    pub has_usable_password: bool,
    /// The identifiers form (`POST /account`): the stored values, or the typed ones when re-shown.
    pub form_username: String,
    pub form_email: String,
    pub form_phone: String,
    pub identifier_errors: FormErrors,
    /// The change-password form (`POST /account/password`).
    pub password_errors: FormErrors,
    /// A status line at the top of the page, e.g. "We sent a code to …".
    pub notice: Option<String>,
}

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

/// 403, 404, 413, 429, 500. `chrome` may be None when the page is made outside a handler (no
/// session known); then the header shows no sign-in state and no sign-out button.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorView {
    pub chrome: Option<Chrome>,
    pub status: u16,
    pub title: String,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ErrorView {
    pub fn new(chrome: Option<Chrome>, status: u16, title: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorView { chrome, status, title: title.into(), message: message.into(), retry_after_secs: None }
    }

    /// 403: a POST without the right CSRF token.
    pub fn forbidden(chrome: Option<Chrome>) -> Self {
        Self::new(
            chrome,
            403,
            "This form has expired",
            "The form was old or did not come from this site, so nothing was changed. \
             Go back, reload the page and try again.",
        )
    }

    /// 404.
    pub fn not_found(chrome: Option<Chrome>) -> Self {
        Self::new(chrome, 404, "Page not found", "There is no page at this address. Check it for typing mistakes.")
    }

    /// 413: a request body over the limit.
    pub fn payload_too_large(chrome: Option<Chrome>) -> Self {
        Self::new(chrome, 413, "Too much data", "What was sent was too large, so nothing was changed.")
    }

    /// 429, with the wait in seconds (also sent as `Retry-After` by [`ErrorView::response`]).
    pub fn too_many_requests(chrome: Option<Chrome>, retry_after_secs: u64) -> Self {
        ErrorView {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(chrome, 429, "Too many attempts", "To keep accounts safe, this has to wait a little.")
        }
    }

    /// 500: never says anything about the internals.
    pub fn internal(chrome: Option<Chrome>) -> Self {
        Self::new(
            chrome,
            500,
            "Something went wrong",
            "The server could not finish this request. Nothing you typed was shown to anyone. Please try again.",
        )
    }

    /// "Try again in N seconds." (or minutes for long waits), when a wait is known.
    pub fn retry_text(&self) -> Option<String> {
        self.retry_after_secs.map(|s| match s {
            0 | 1 => "Try again in 1 second.".to_string(),
            s if s < 120 => format!("Try again in {s} seconds."),
            s => format!("Try again in {s} seconds (about {} minutes).", s.div_ceil(60)),
        })
    }

    /// The page with its own status, and a `Retry-After` header when `retry_after_secs` is set.
    pub fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = html(status, self);
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut().insert(RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Renders `view` as a `text/html` response with `status`. A template that fails to render
/// (it cannot with these views, but never panic) gives a bare 500.
pub fn html<T: Template>(status: StatusCode, view: &T) -> HttpResponse {
    match view.render() {
        Ok(body) => HttpResponse::build(status).insert_header((CONTENT_TYPE, "text/html; charset=utf-8")).body(body),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            HttpResponse::InternalServerError()
                .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body("Internal Server Error")
        }
    }
}

/// The header and forms of every page reach the chrome through this.
trait Page {
    fn page_chrome(&self) -> Option<&Chrome>;
}

macro_rules! page_with_chrome {
    ($($t:ty),* $(,)?) => {$(
        impl Page for $t {
            fn page_chrome(&self) -> Option<&Chrome> {
                Some(&self.chrome)
            }
        }
    )*};
}

page_with_chrome!(HomeView, SignUpView, SignInView, AccountView, VerifyView, ResetRequestView, ResetVerifyView, ResetNewView);

impl Page for ErrorView {
    fn page_chrome(&self) -> Option<&Chrome> {
        self.chrome.as_ref()
    }
}
