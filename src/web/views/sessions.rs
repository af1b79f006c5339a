//! `GET /account/sessions` and `GET /account/activity`.

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Utc};

use super::{Chrome, Page};

/// A moment as pages show it: machine-readable and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// "3 Dec 2026, 07:15 UTC".
    pub text: String,
}

impl When {
    pub fn at(t: DateTime<Utc>) -> When {
        When { iso: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(), text: t.format("%-d %b %Y, %H:%M UTC").to_string() }
    }
}

/// One live session of the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// What its "end" form posts (empty: it cannot be ended from here).
    pub public_id: String,
    pub began: When,
    pub last_used: Option<When>,
    /// The IP address it was last used from, or "unknown".
    pub ip: String,
    /// The browser and system it was last used with, e.g. "Firefox on Linux".
    pub browser: String,
    /// The session of this very browser.
    pub current: bool,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "sessions.html")]
pub struct SessionsView {
    pub chrome: Chrome,
    pub sessions: Vec<SessionRow>,
}

page_with_chrome!(SessionsView);

/// One security event of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// What happened, in words: "Signed in with a password", "3 failed sign-in attempts".
    pub what: String,
    pub when: When,
    pub ip: String,
    pub browser: String,
    /// A warning sign beside it (failed sign-ins).
    pub warning: bool,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "activity.html")]
pub struct ActivityView {
    pub chrome: Chrome,
    pub events: Vec<EventRow>,
    /// Which page of events this is (1: the newest), and the pages of newer and older ones.
    pub page: usize,
    pub newer: Option<usize>,
    pub older: Option<usize>,
}

page_with_chrome!(ActivityView);
