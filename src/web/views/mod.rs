//! One askama view struct per page. Handlers fill a view and answer it with [`html`] (any
//! status) or, for a plain 200, return it directly (every view is an actix `Responder`).
//!
//! Templates live in `templates/` and all extend `base.html`; HTML escaping is on, so every
//! value here is plain text. No template holds a script or an inline style (the CSP forbids
//! both), and no template ever writes a password back into a form.
//!
//! A module per page; the types are re-exported here, so handlers import
//! `crate::web::views::XxxView`. Sample pages and the HTML checks live in the tests
//! (`tests/views.rs`, `tests/pages.rs`), not here.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use askama::Template;

/// The header and forms of every page reach the chrome through this.
trait Page {
    fn page_chrome(&self) -> Option<&Chrome>;

    /// The site's name for the title and header (the default on pages without chrome).
    fn site_name(&self) -> &str {
        self.page_chrome().map_or(DEFAULT_SITE_NAME, |c| c.site_name.as_str())
    }
}

/// `impl Page` for views whose `chrome` field is always there.
macro_rules! page_with_chrome {
    ($($t:ty),* $(,)?) => {$(
        impl Page for $t {
            fn page_chrome(&self) -> Option<&Chrome> {
                Some(&self.chrome)
            }
        }
    )*};
}

mod account;
mod code;
mod delete;
mod error;
mod home;
mod reset;
mod sessions;
mod sign_in;
mod sign_up;
mod two_factor;
mod verify;

pub use account::{AccountView, AddressView};
pub use code::{CodeRequestView, CodeVerifyView};
pub use delete::DeleteView;
pub use error::ErrorView;
pub use home::HomeView;
pub use reset::{ResetNewView, ResetRequestView, ResetVerifyView};
pub use sessions::{ActivityView, EventRow, SessionRow, SessionsView, When};
pub use sign_in::SignInView;
pub use sign_up::SignUpView;
pub use two_factor::{
    PasskeyRow, PasskeysPart, RecoveryCodesView, SecondStepView, StepFactors, TotpSetupView, TwoFactorView, qr_svg,
};
pub use verify::VerifyView;

/// What every page needs for its header and forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chrome {
    /// The session's CSRF token: written into every form as the hidden `csrf_token` input.
    pub csrf_token: String,
    /// The signed-in user's display name (username, else email, else phone); `None` when signed out.
    pub signed_in_as: Option<String>,
    /// `FLEX_USER_SITE_NAME`, in the title and header of every page.
    pub site_name: String,
}

/// The site's name when the settings give none.
pub const DEFAULT_SITE_NAME: &str = "flex-user";

impl Chrome {
    pub fn signed_out(csrf_token: impl Into<String>) -> Self {
        Chrome { csrf_token: csrf_token.into(), signed_in_as: None, site_name: DEFAULT_SITE_NAME.into() }
    }

    pub fn signed_in(csrf_token: impl Into<String>, display_name: impl Into<String>) -> Self {
        Chrome {
            csrf_token: csrf_token.into(),
            signed_in_as: Some(display_name.into()),
            site_name: DEFAULT_SITE_NAME.into(),
        }
    }

    /// The same chrome under the site's own name.
    pub fn named(mut self, site_name: &str) -> Self {
        self.site_name = site_name.to_owned();
        self
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

    /// The lines of the alert box at the top of the form: the general messages, then a pointer
    /// to the fields marked below.
    pub fn alert_lines(&self) -> Vec<String> {
        self.alert_lines_hiding(&[])
    }

    /// Like [`FormErrors::alert_lines`] for a form that does not show the inputs named in
    /// `hidden`: their messages go into the alert box, since there is no field to put them by.
    pub fn alert_lines_hiding(&self, hidden: &[&str]) -> Vec<String> {
        let mut lines = self.generals.clone();
        let mut marked = 0;
        for (name, msg) in &self.fields {
            if hidden.contains(name) {
                lines.push(msg.clone());
            } else {
                marked += 1;
            }
        }
        match marked {
            0 => {}
            1 => lines.push("Please correct the field marked below.".into()),
            _ => lines.push("Please correct the fields marked below.".into()),
        }
        lines
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.generals.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_errors_api() {
        let mut e = FormErrors::default();
        assert!(e.is_empty());
        e.field("email", "One.");
        e.field("email", "Two.");
        e.general("General.");
        assert_eq!(e.get("email"), Some("One. Two."));
        assert_eq!(e.get("phone"), None);
        assert_eq!(e.generals(), ["General.".to_string()]);
        assert_eq!(e.alert_lines(), ["General.", "Please correct the field marked below."]);
        assert_eq!(e.alert_lines_hiding(&["email"]), ["General.", "One. Two."]);
        e.field("phone", "Three.");
        assert_eq!(e.alert_lines().last().unwrap(), "Please correct the fields marked below.");
        assert!(!e.is_empty() && e.has_field_errors());
    }
}
