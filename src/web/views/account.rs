//! `GET|POST /account` and the re-shown `POST /account/password`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

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

impl AccountView {
    /// The alert box of the identifiers form (without a usable password there is no
    /// `current_password` input, so a message for it is shown in the box).
    pub fn identifier_alert_lines(&self) -> Vec<String> {
        if self.has_usable_password {
            self.identifier_errors.alert_lines()
        } else {
            self.identifier_errors.alert_lines_hiding(&["current_password"])
        }
    }

    /// The alert box of the password section (without a usable password it has no form, so
    /// every message is shown in the box).
    pub fn password_alert_lines(&self) -> Vec<String> {
        if self.has_usable_password {
            self.password_errors.alert_lines()
        } else {
            self.password_errors.alert_lines_hiding(&["current_password", "new_password"])
        }
    }
}

page_with_chrome!(AccountView);
