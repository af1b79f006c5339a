//! `GET /account/activity`: the account's security events, newest first.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::accounts::activity::{Entry, Event, Factor, IdentifierKind, SignInMethod};
use crate::domain::client::describe_user_agent;
use crate::web::AppState;
use crate::web::error::AppError;
use crate::web::views::{ActivityView, EventRow, When, html};
use crate::web::visitor::Visitor;

const PATH: &str = "/account/activity";
/// Events per page.
pub const SHOWN: usize = 100;
/// The last page that can be asked for (a year of a busy account is far fewer pages).
const MAX_PAGE: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActivityQuery {
    /// 1 for the newest events; anything unreadable or out of range is page 1.
    page: Option<String>,
}

/// What an event says to the account's owner, and whether it deserves a warning sign.
pub fn describe(event: Event, count: u32) -> (String, bool) {
    let identifier = |kind: IdentifierKind| match kind {
        IdentifierKind::Username => "username",
        IdentifierKind::Email => "email address",
        IdentifierKind::Phone => "phone number",
    };
    let factor = |f: Factor| match f {
        Factor::AuthenticatorApp => "authenticator app",
        Factor::Passkey => "passkey",
    };
    let text = match event {
        Event::AccountCreated => "Account created".to_owned(),
        Event::SignedIn(method) => match method {
            SignInMethod::Password => "Signed in with a password",
            SignInMethod::Code => "Signed in with a one-time code",
            SignInMethod::Passkey => "Signed in with a passkey",
            SignInMethod::RecoveryCode => "Signed in with a recovery code",
        }
        .to_owned(),
        Event::SignInFailed if count == 1 => "1 failed sign-in attempt".to_owned(),
        Event::SignInFailed => format!("{count} failed sign-in attempts within the hour"),
        Event::SignedOut => "Signed out".to_owned(),
        Event::PasswordChanged => "Password changed".to_owned(),
        Event::PasswordReset => "Password reset with a code".to_owned(),
        Event::IdentifierAdded(kind) => format!("Added a {}", identifier(kind)),
        Event::IdentifierChanged(kind) => format!("Changed the {}", identifier(kind)),
        Event::IdentifierRemoved(kind) => format!("Removed the {}", identifier(kind)),
        Event::IdentifierVerified(kind) => format!("Verified the {}", identifier(kind)),
        Event::SecondFactorAdded(f) => format!("Added a second factor: {}", factor(f)),
        Event::SecondFactorRemoved(f) => format!("Removed a second factor: {}", factor(f)),
        Event::RecoveryCodesMade => "Made new recovery codes".to_owned(),
        Event::SessionEnded => "Ended a session from another browser".to_owned(),
        Event::OtherSessionsEnded => "Ended every other session".to_owned(),
    };
    (text, event == Event::SignInFailed)
}

fn row(entry: Entry) -> EventRow {
    let (what, warning) = describe(entry.event, entry.count);
    EventRow {
        what,
        when: When::at(entry.at),
        ip: entry.ip.unwrap_or_else(|| "Unknown".into()),
        browser: describe_user_agent(entry.user_agent.as_deref()),
        warning,
    }
}

pub async fn show(
    state: web::Data<AppState>,
    visitor: Visitor,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, AppError> {
    let user_id = visitor.require_user(PATH)?.id;
    let number = query.page.as_deref().and_then(|p| p.parse::<usize>().ok()).filter(|p| (1..=MAX_PAGE).contains(p));
    let number = number.unwrap_or(1);
    let page = state.flow(move |flows| flows.activity_of(user_id, (number - 1) * SHOWN, SHOWN)).await?;
    let view = ActivityView {
        chrome: visitor.chrome(),
        events: page.entries.into_iter().map(row).collect(),
        page: number,
        newer: (number > 1).then(|| number - 1),
        older: (page.more && number < MAX_PAGE).then_some(number + 1),
    };
    Ok(html(StatusCode::OK, &view))
}
