//! The account's security events (CONTRACT.md, "Sessions, activity, notices"): an append-only
//! table, written by [`record`] inside the transaction of the change it records, read newest
//! first by [`activity_of`], and pruned after the retention period (at least 90 days).
//!
//! Failed sign-ins to an existing account are counted, not logged one by one: one row per
//! account per hour holds how many there were (and the IP address and browser of the latest),
//! so a flood of guesses costs one row an hour. Unknown accounts record nothing (there is no
//! account to show them to).
//!
//! Each event is stored as a `kind` and an optional `detail`, both fixed names parsed back by
//! [`Event::from_parts`], which refuses what it does not know.

use chrono::{DateTime, DurationRound as _, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;

use super::tokens::Channel;
use crate::db::schema::activity;
use crate::db::{AnyConnection, db_time};
pub use crate::domain::RequestContext;

/// How someone signed in. (Carried by a half sign-in until its second step: the first factor's
/// method is what the sign-in is recorded as, unless a recovery code finishes it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum SignInMethod {
    #[default]
    Password,
    /// A one-time code by email or SMS (emitted by the code sign-in, `/sign-in/code`).
    Code,
    /// A passkey on its own (emitted by the passkey sign-in).
    Passkey,
    /// A recovery code as the second step (emitted by `/sign-in/two-factor`).
    RecoveryCode,
}

/// Which identifier an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentifierKind {
    Username,
    Email,
    Phone,
}

impl From<Channel> for IdentifierKind {
    fn from(channel: Channel) -> IdentifierKind {
        match channel {
            Channel::Email => IdentifierKind::Email,
            Channel::Phone => IdentifierKind::Phone,
        }
    }
}

/// A second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Factor {
    AuthenticatorApp,
    Passkey,
}

/// A security event of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Signed up (emitted by `Flows::sign_up`).
    AccountCreated,
    /// Emitted by `Flows::signed_in`, which every way of signing in calls.
    SignedIn(SignInMethod),
    /// A wrong password (or code) for this account; counted per hour (emitted by `Flows::sign_in`).
    SignInFailed,
    /// Emitted by `Flows::sign_out`.
    SignedOut,
    /// Emitted by `Flows::change_password`.
    PasswordChanged,
    /// Emitted by `Flows::complete_reset`.
    PasswordReset,
    /// Emitted by `Flows::change_identifiers`.
    IdentifierAdded(IdentifierKind),
    IdentifierChanged(IdentifierKind),
    IdentifierRemoved(IdentifierKind),
    /// An email or phone proven by a code (emitted by `Flows::verify_address` and
    /// `Flows::complete_reset`).
    IdentifierVerified(IdentifierKind),
    /// Emitted by the second-factor setup (TOTP, passkeys).
    SecondFactorAdded(Factor),
    /// Emitted by the second-factor removal, and by a reset through an unverified channel.
    SecondFactorRemoved(Factor),
    /// A new set of recovery codes (emitted by the recovery-codes page).
    RecoveryCodesMade,
    /// One other session ended from the sessions page (emitted by `Flows::end_session`).
    SessionEnded,
    /// Every other session ended from the sessions page (emitted by `Flows::end_other_sessions`).
    OtherSessionsEnded,
}

impl SignInMethod {
    fn name(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::Code => "code",
            SignInMethod::Passkey => "passkey",
            SignInMethod::RecoveryCode => "recovery_code",
        }
    }
}

impl IdentifierKind {
    fn name(self) -> &'static str {
        match self {
            IdentifierKind::Username => "username",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
        }
    }
}

impl Factor {
    fn name(self) -> &'static str {
        match self {
            Factor::AuthenticatorApp => "totp",
            Factor::Passkey => "passkey",
        }
    }
}

const SIGNED_IN: &str = "signed_in";
const SIGN_IN_FAILED: &str = "sign_in_failed";

impl Event {
    /// `(kind, detail)` as stored.
    pub fn parts(self) -> (&'static str, Option<&'static str>) {
        match self {
            Event::AccountCreated => ("account_created", None),
            Event::SignedIn(method) => (SIGNED_IN, Some(method.name())),
            Event::SignInFailed => (SIGN_IN_FAILED, None),
            Event::SignedOut => ("signed_out", None),
            Event::PasswordChanged => ("password_changed", None),
            Event::PasswordReset => ("password_reset", None),
            Event::IdentifierAdded(what) => ("identifier_added", Some(what.name())),
            Event::IdentifierChanged(what) => ("identifier_changed", Some(what.name())),
            Event::IdentifierRemoved(what) => ("identifier_removed", Some(what.name())),
            Event::IdentifierVerified(what) => ("identifier_verified", Some(what.name())),
            Event::SecondFactorAdded(factor) => ("second_factor_added", Some(factor.name())),
            Event::SecondFactorRemoved(factor) => ("second_factor_removed", Some(factor.name())),
            Event::RecoveryCodesMade => ("recovery_codes_made", None),
            Event::SessionEnded => ("session_ended", None),
            Event::OtherSessionsEnded => ("other_sessions_ended", None),
        }
    }

    /// The event a stored `(kind, detail)` names; anything else is refused.
    pub fn from_parts(kind: &str, detail: Option<&str>) -> Result<Event, UnknownEvent> {
        let unknown = || UnknownEvent { kind: kind.to_owned(), detail: detail.map(str::to_owned) };
        let method = || {
            [SignInMethod::Password, SignInMethod::Code, SignInMethod::Passkey, SignInMethod::RecoveryCode]
                .into_iter()
                .find(|m| Some(m.name()) == detail)
                .ok_or_else(unknown)
        };
        let identifier = || {
            [IdentifierKind::Username, IdentifierKind::Email, IdentifierKind::Phone]
                .into_iter()
                .find(|i| Some(i.name()) == detail)
                .ok_or_else(unknown)
        };
        let factor = || {
            [Factor::AuthenticatorApp, Factor::Passkey]
                .into_iter()
                .find(|f| Some(f.name()) == detail)
                .ok_or_else(unknown)
        };
        let plain = |event: Event| if detail.is_none() { Ok(event) } else { Err(unknown()) };
        match kind {
            "account_created" => plain(Event::AccountCreated),
            SIGNED_IN => method().map(Event::SignedIn),
            SIGN_IN_FAILED => plain(Event::SignInFailed),
            "signed_out" => plain(Event::SignedOut),
            "password_changed" => plain(Event::PasswordChanged),
            "password_reset" => plain(Event::PasswordReset),
            "identifier_added" => identifier().map(Event::IdentifierAdded),
            "identifier_changed" => identifier().map(Event::IdentifierChanged),
            "identifier_removed" => identifier().map(Event::IdentifierRemoved),
            "identifier_verified" => identifier().map(Event::IdentifierVerified),
            "second_factor_added" => factor().map(Event::SecondFactorAdded),
            "second_factor_removed" => factor().map(Event::SecondFactorRemoved),
            "recovery_codes_made" => plain(Event::RecoveryCodesMade),
            "session_ended" => plain(Event::SessionEnded),
            "other_sessions_ended" => plain(Event::OtherSessionsEnded),
            _ => Err(unknown()),
        }
    }

    /// Every event there is (for tests and the export).
    pub fn all() -> Vec<Event> {
        use Event::*;
        let ids = [IdentifierKind::Username, IdentifierKind::Email, IdentifierKind::Phone];
        let factors = [Factor::AuthenticatorApp, Factor::Passkey];
        let mut all = vec![AccountCreated, SignInFailed, SignedOut, PasswordChanged, PasswordReset];
        all.extend(
            [SignInMethod::Password, SignInMethod::Code, SignInMethod::Passkey, SignInMethod::RecoveryCode]
                .map(SignedIn),
        );
        for id in ids {
            all.extend([IdentifierAdded(id), IdentifierChanged(id), IdentifierRemoved(id), IdentifierVerified(id)]);
        }
        for factor in factors {
            all.extend([SecondFactorAdded(factor), SecondFactorRemoved(factor)]);
        }
        all.extend([RecoveryCodesMade, SessionEnded, OtherSessionsEnded]);
        all
    }
}

/// A stored event this build does not know (written by a newer one, or damaged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activity event {kind:?} ({detail:?})")]
pub struct UnknownEvent {
    kind: String,
    detail: Option<String>,
}

/// Records `event` for the user, from the request `ctx`, at `now`. Call it inside the
/// transaction of the change it records, so that both commit or neither does.
///
/// [`Event::SignInFailed`] is counted: the account's row for this hour gets one more (a single
/// upsert, atomic on both databases), with the latest attempt's IP address and browser.
pub fn record(
    conn: &mut AnyConnection,
    user_id: i64,
    event: Event,
    ctx: &RequestContext,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let (kind, detail) = event.parts();
    let ip = ctx.ip_text();
    let user_agent = ctx.user_agent_text();
    if event != Event::SignInFailed {
        diesel::insert_into(activity::table)
            .values((
                activity::user_id.eq(user_id),
                activity::kind.eq(kind),
                activity::detail.eq(detail),
                activity::ip.eq(&ip),
                activity::user_agent.eq(user_agent),
                activity::at.eq(db_time(now)),
                activity::count.eq(1),
            ))
            .execute(conn)?;
        return Ok(());
    }
    let hour = db_time(now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now));
    let upsert = diesel::insert_into(activity::table)
        .values((
            activity::user_id.eq(user_id),
            activity::kind.eq(kind),
            activity::ip.eq(&ip),
            activity::user_agent.eq(user_agent),
            activity::at.eq(db_time(now)),
            activity::hour.eq(hour),
            activity::count.eq(1),
        ))
        .on_conflict((activity::user_id, activity::kind, activity::hour))
        .do_update()
        .set((
            activity::count.eq(activity::count + 1),
            activity::at.eq(db_time(now)),
            activity::ip.eq(&ip),
            activity::user_agent.eq(user_agent),
        ));
    // Diesel's multi-backend connection has no upsert, hence one arm per backend.
    match conn {
        AnyConnection::Postgresql(pg) => upsert.execute(pg)?,
        AnyConnection::Sqlite(lite) => upsert.execute(lite)?,
    };
    Ok(())
}

/// One event as the activity page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub event: Event,
    /// When it happened (for counted failures: the latest of the hour).
    pub at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// How many times (failed sign-ins in that hour), else 1.
    pub count: u32,
}

/// The newest events of an account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Newest first, at most the limit asked for.
    pub entries: Vec<Entry>,
    /// True when older events exist beyond them.
    pub more: bool,
}

/// The account's events, newest first, skipping the newest `skip` and taking `limit` (rows this
/// build cannot read are skipped with a warning).
pub fn activity_of(conn: &mut AnyConnection, user_id: i64, skip: usize, limit: usize) -> QueryResult<Page> {
    type Row = (String, Option<String>, Option<String>, Option<String>, NaiveDateTime, i32);
    let rows: Vec<Row> = activity::table
        .filter(activity::user_id.eq(user_id))
        .order((activity::at.desc(), activity::id.desc()))
        .offset(i64::try_from(skip).unwrap_or(i64::MAX))
        .limit(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
        .select((activity::kind, activity::detail, activity::ip, activity::user_agent, activity::at, activity::count))
        .load(conn)?;
    let more = rows.len() > limit;
    let entries = rows
        .into_iter()
        .take(limit)
        .filter_map(|(kind, detail, ip, user_agent, at, count)| match Event::from_parts(&kind, detail.as_deref()) {
            Ok(event) => {
                Some(Entry { event, at: at.and_utc(), ip, user_agent, count: u32::try_from(count).unwrap_or(1).max(1) })
            }
            Err(e) => {
                tracing::warn!(user_id, error = %e, "skipped an activity row");
                None
            }
        })
        .collect();
    Ok(Page { entries, more })
}

/// Deletes up to `max_rows` events older than `before` (a bounded pass: housekeeping runs
/// every minute, so a large backlog goes over several passes without one long lock).
pub fn prune(conn: &mut AnyConnection, before: DateTime<Utc>, max_rows: i64) -> QueryResult<usize> {
    let old = activity::table
        .filter(activity::at.lt(db_time(before)))
        .order(activity::id)
        .select(activity::id)
        .limit(max_rows);
    let ids: Vec<i64> = old.load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(activity::table.filter(activity::id.eq_any(ids))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_as_itself() {
        let all = Event::all();
        assert_eq!(all.len(), 28);
        for event in all {
            let (kind, detail) = event.parts();
            assert_eq!(Event::from_parts(kind, detail), Ok(event), "{kind} {detail:?}");
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(Event::from_parts("signed_in", Some("carrier_pigeon")).is_err());
        assert!(Event::from_parts("signed_in", None).is_err());
        assert!(Event::from_parts("signed_out", Some("password")).is_err());
        assert!(Event::from_parts("launched_rockets", None).is_err());
    }
}
