//! Security notices (CONTRACT.md, "Sessions, activity, notices"): the account's verified
//! addresses are told when something happens to it, by email where it has a verified email,
//! else by SMS (a new-browser sign-in by email only). [`queue`] records one in the outbox inside
//! the caller's transaction, like a code; the worker delivers it.
//!
//! A notice carries no code and no run of six digits: it says what happened, when (in words and
//! a 24-hour time), from which IP address and browser, and links to the site's
//! `/password-reset` for "this wasn't me".
//!
//! Notices are not codes: they neither count against nor wait for the code send limits (the
//! cooldown, the daily cap, the deployment's SMS budget). They have their own bound per account
//! instead, kept in `notice_log`: at most [`NEW_BROWSER_PER_HOUR`] new-browser notices and
//! [`OTHER_PER_HOUR`] others an hour, so a flood of sign-ins cannot send unbounded mail.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use url::Url;

use super::messages::{EmailContent, esc, html_document, page_url, site_host};
use super::outbox::{self, NewMessage};
use crate::accounts::Channel;
use crate::accounts::activity::Factor;
use crate::accounts::tokens;
use crate::db::schema::notice_log;
use crate::db::{AnyConnection, db_time};
use crate::domain::RequestContext;

/// New-browser notices per account per hour.
pub const NEW_BROWSER_PER_HOUR: i64 = 3;
/// Every other notice, together, per account per hour.
pub const OTHER_PER_HOUR: i64 = 20;
/// A notice not delivered within this is given up.
const NOTICE_LIFETIME: Duration = Duration::days(1);

/// Something the account's owner is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Emitted by `Flows::change_password`.
    PasswordChanged,
    /// Emitted by `Flows::complete_reset`.
    PasswordReset,
    /// Emitted by the second-factor setup.
    SecondFactorAdded(Factor),
    /// Emitted by the second-factor removal.
    SecondFactorRemoved(Factor),
    /// Emitted by `/sign-in/two-factor` when a recovery code is spent; `left` unused ones remain.
    RecoveryCodeUsed { left: u32 },
    /// Emitted by `Flows::signed_in` for a browser the account does not know (email only).
    NewBrowserSignIn,
}

/// What [`queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Recorded in the outbox for this channel.
    To(Channel),
    /// The account has no verified address this notice may go to.
    NoAddress,
    /// The account's hourly bound for this kind of notice is spent: not sent (logged).
    Bounded,
}

impl Notice {
    /// The bound it counts against.
    fn class(self) -> &'static str {
        match self {
            Notice::NewBrowserSignIn => "new_browser",
            _ => "security",
        }
    }

    fn per_hour(self) -> i64 {
        match self {
            Notice::NewBrowserSignIn => NEW_BROWSER_PER_HOUR,
            _ => OTHER_PER_HOUR,
        }
    }

    fn sms_allowed(self) -> bool {
        self != Notice::NewBrowserSignIn
    }

    /// The subject (after "… on HOST") and the sentence saying what happened.
    fn wording(self, host: &str) -> (String, String) {
        let factor = |f: Factor| match f {
            Factor::AuthenticatorApp => "an authenticator app",
            Factor::Passkey => "a passkey",
        };
        match self {
            Notice::PasswordChanged => (
                format!("Your password on {host} was changed"),
                format!("The password of your account on {host} was changed."),
            ),
            Notice::PasswordReset => (
                format!("Your password on {host} was reset"),
                format!("The password of your account on {host} was reset with a code."),
            ),
            Notice::SecondFactorAdded(f) => (
                format!("A second factor was added to your account on {host}"),
                format!("{} was added as a second factor to your account on {host}.", capitalised(factor(f))),
            ),
            Notice::SecondFactorRemoved(f) => (
                format!("A second factor was removed from your account on {host}"),
                format!("{} was removed from the second factors of your account on {host}.", capitalised(factor(f))),
            ),
            Notice::RecoveryCodeUsed { left } => (
                format!("A recovery code was used on {host}"),
                format!(
                    "A recovery code was used to sign in to your account on {host}. {}",
                    match left {
                        0 => "You have no recovery codes left: make new ones on your account page.".to_owned(),
                        1 => "You have 1 recovery code left.".to_owned(),
                        n => format!("You have {n} recovery codes left."),
                    }
                ),
            ),
            Notice::NewBrowserSignIn => (
                format!("New sign-in to your account on {host}"),
                format!(
                    "Someone signed in to your account on {host} from a browser that had not signed in to it before."
                ),
            ),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// "3 December 2026 at 07:15 UTC": no run of more than four digits.
pub fn when_words(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y at %H:%M UTC").to_string()
}

/// The facts every notice lists.
struct Facts {
    when: String,
    ip: String,
    browser: String,
    reset: Url,
}

impl Facts {
    fn new(ctx: &RequestContext, site: &Url, now: DateTime<Utc>) -> Facts {
        Facts {
            when: when_words(now),
            ip: ctx.ip_text().unwrap_or_else(|| "unknown".into()),
            browser: ctx.browser_name(),
            reset: page_url(site, "password-reset"),
        }
    }
}

/// The email of a notice.
pub fn notice_email(notice: Notice, ctx: &RequestContext, site: &Url, now: DateTime<Utc>) -> EmailContent {
    let host = site_host(site);
    let (subject, what) = notice.wording(&host);
    let f = Facts::new(ctx, site, now);
    let text = format!(
        "{what}\n\nWhen: {when}\nIP address: {ip}\nBrowser: {browser}\n\n\
         If this was you, there is nothing more to do.\n\n\
         If this wasn't you, someone else may be using your account:\nreset your password at\n{reset}\n",
        when = f.when,
        ip = f.ip,
        browser = f.browser,
        reset = f.reset,
    );
    let html = html_document(
        &subject,
        &format!(
            "<p>{}</p>\n<ul>\n<li>When: {}</li>\n<li>IP address: {}</li>\n<li>Browser: {}</li>\n</ul>\n\
             <p>If this was you, there is nothing more to do.</p>\n\
             <p>If this wasn't you, someone else may be using your account: \
             <a href=\"{reset}\">reset your password</a> ({reset}).</p>\n",
            esc(&what),
            esc(&f.when),
            esc(&f.ip),
            esc(&f.browser),
            reset = esc(f.reset.as_str()),
        ),
    );
    EmailContent { subject, text, html }
}

/// The SMS of a notice.
pub fn notice_sms(notice: Notice, ctx: &RequestContext, site: &Url, now: DateTime<Utc>) -> String {
    let host = site_host(site);
    let (_, what) = notice.wording(&host);
    let f = Facts::new(ctx, site, now);
    format!("{what} When: {}, from {} ({}). Not you? Reset your password at {}", f.when, f.ip, f.browser, f.reset)
}

/// Queues `notice` for the account's verified email (else, where allowed, its verified phone),
/// within the account's hourly bound. Call it inside the (write) transaction of the change it
/// tells of, so that both commit or neither does.
pub fn queue(
    conn: &mut AnyConnection,
    user_id: i64,
    notice: Notice,
    ctx: &RequestContext,
    site: &Url,
    now: DateTime<Utc>,
) -> QueryResult<Queued> {
    let verified = |conn: &mut AnyConnection, channel| {
        tokens::find(conn, user_id, channel).map(|t| t.filter(|t| t.state.verified).map(|t| t.address))
    };
    let to = match verified(conn, Channel::Email)? {
        Some(address) => Some((Channel::Email, address)),
        None if notice.sms_allowed() => verified(conn, Channel::Phone)?.map(|a| (Channel::Phone, a)),
        None => None,
    };
    let Some((channel, recipient)) = to else { return Ok(Queued::NoAddress) };

    // the count and the insert as one step: on PostgreSQL under a transaction-scoped lock of
    // the account's notices (SQLite's `BEGIN IMMEDIATE` already serializes every writer)
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7314, $1)")
            .bind::<diesel::sql_types::Integer, _>(user_id as i32)
            .execute(pg)?;
    }
    let sent: i64 = notice_log::table
        .filter(notice_log::user_id.eq(user_id))
        .filter(notice_log::kind.eq(notice.class()))
        .filter(notice_log::sent_at.gt(db_time(now - Duration::hours(1))))
        .count()
        .get_result(conn)?;
    if sent >= notice.per_hour() {
        tracing::warn!(user_id, kind = notice.class(), "notice not sent: the account's hourly bound is reached");
        return Ok(Queued::Bounded);
    }
    diesel::insert_into(notice_log::table)
        .values((
            notice_log::user_id.eq(user_id),
            notice_log::kind.eq(notice.class()),
            notice_log::sent_at.eq(db_time(now)),
        ))
        .execute(conn)?;

    let (subject, body_text, body_html) = match channel {
        Channel::Email => {
            let mail = notice_email(notice, ctx, site, now);
            (Some(mail.subject), mail.text, Some(mail.html))
        }
        Channel::Phone => (None, notice_sms(notice, ctx, site, now), None),
    };
    let message = NewMessage {
        channel,
        recipient,
        subject,
        body_text,
        body_html,
        token_id: None,
        expires_at: now + NOTICE_LIFETIME,
    };
    outbox::enqueue(conn, &message, now)?;
    Ok(Queued::To(channel))
}

/// Forgets notices older than the bound's hour (from the housekeeping tick).
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(notice_log::table.filter(notice_log::sent_at.le(db_time(now - Duration::hours(2))))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::messages::has_digit_run;

    fn every_notice() -> Vec<Notice> {
        let mut all = vec![Notice::PasswordChanged, Notice::PasswordReset, Notice::NewBrowserSignIn];
        for f in [Factor::AuthenticatorApp, Factor::Passkey] {
            all.extend([Notice::SecondFactorAdded(f), Notice::SecondFactorRemoved(f)]);
        }
        all.extend((0..=10).map(|left| Notice::RecoveryCodeUsed { left }));
        all
    }

    #[test]
    fn notices_say_what_when_where_and_hold_no_long_digit_run() {
        let site = Url::parse("https://auth.example.org:8443/").unwrap();
        let ctx = RequestContext {
            ip: Some("2001:db8:1234:5678::1".parse().unwrap()),
            user_agent: crate::domain::UserAgent::parse(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            browser: None,
        };
        let now = DateTime::parse_from_rfc3339("2026-12-03T07:05:09Z").unwrap().to_utc();
        for notice in every_notice() {
            let mail = notice_email(notice, &ctx, &site, now);
            let sms = notice_sms(notice, &ctx, &site, now);
            for text in [&mail.text, &mail.html, &sms] {
                assert!(!has_digit_run(text, 6), "{notice:?}: {text}");
                assert!(text.contains("3 December 2026 at 07:05 UTC"), "{text}");
                assert!(text.contains("2001:db8:1234:5678::1") && text.contains("Firefox on Linux"), "{text}");
                assert!(text.contains("https://auth.example.org:8443/password-reset"), "{text}");
            }
        }
        let (_, what) = Notice::RecoveryCodeUsed { left: 3 }.wording("x");
        assert!(what.contains("3 recovery codes left"));
    }
}
