//! `GET|POST /account/delete`.

use askama::Template;
use askama_web::WebTemplate;

use super::{Chrome, FormErrors, Page};

/// `GET|POST /account/delete`: what will be lost, and the form.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "account_delete.html")]
pub struct DeleteView {
    pub chrome: Chrome,
    /// The identifiers that go (and become free for anyone to sign up with).
    pub identifiers: Vec<String>,
    /// How many sessions end (this one included).
    pub sessions: usize,
    /// With a usable password the form asks for it; without one it needs a recent sign-in.
    pub has_usable_password: bool,
    /// What was typed in `confirm` when re-shown.
    pub confirm: String,
    pub errors: FormErrors,
}

impl DeleteView {
    /// What happens to the sessions, in words.
    pub fn sessions_text(&self) -> String {
        match self.sessions {
            0 | 1 => "you are signed out".to_owned(),
            n => format!("your {n} signed-in sessions end, this one included"),
        }
    }

    /// The alert box (without a password input, a message for it goes into the box).
    pub fn alert_lines(&self) -> Vec<String> {
        if self.has_usable_password {
            self.errors.alert_lines()
        } else {
            self.errors.alert_lines_hiding(&["current_password"])
        }
    }
}

page_with_chrome!(DeleteView);
