//! The durable outbox: a request records a message here, inside the transaction of the change
//! that causes it; the [`super::worker`] delivers it.
//!
//! Row life: `pending` → `sent` | `replaced` | `expired`. Every change bumps `version`, so a
//! worker holding a claim (a lease at a version) notices when the row changed under it. The
//! text (which holds the code) is blanked whenever a row leaves `pending`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::accounts::Channel;
use crate::db::schema::outbox;
use crate::db::{AnyConnection, db_time};

pub const PENDING: &str = "pending";
pub const SENT: &str = "sent";
pub const REPLACED: &str = "replaced";
pub const EXPIRED: &str = "expired";

/// A message to record.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Email or Phone.
    pub channel: Channel,
    /// An email address or an E.164 phone number.
    pub recipient: String,
    /// Email only.
    pub subject: Option<String>,
    pub body_text: String,
    /// Email only.
    pub body_html: Option<String>,
    /// The OTP token whose code it carries; `None` for notices.
    pub token_id: Option<i64>,
    /// Give up after this: the code's expiry, or for notices about a day from now.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewMessage {
    /// Shows no text: it may hold a code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("channel", &self.channel)
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Inserts a pending message, due now, and returns its id. If `token_id` is set, earlier pending
/// messages of that token are first marked `replaced` and their text blanked (a newer code
/// replaces them). Call it inside the caller's write transaction.
pub fn enqueue(conn: &mut AnyConnection, msg: &NewMessage, now: DateTime<Utc>) -> QueryResult<i64> {
    if let Some(token_id) = msg.token_id {
        cancel_for_token(conn, token_id, now)?;
    }
    let email = msg.channel == Channel::Email;
    let now = db_time(now);
    diesel::insert_into(outbox::table)
        .values((
            outbox::channel.eq(msg.channel.as_str()),
            outbox::recipient.eq(&msg.recipient),
            outbox::subject.eq(msg.subject.as_deref().filter(|_| email)),
            outbox::body_text.eq(&msg.body_text),
            outbox::body_html.eq(msg.body_html.as_deref().filter(|_| email)),
            outbox::token_id.eq(msg.token_id),
            outbox::status.eq(PENDING),
            outbox::created_at.eq(now),
            outbox::expires_at.eq(db_time(msg.expires_at)),
            outbox::next_attempt_at.eq(now),
            outbox::attempts.eq(0),
            outbox::version.eq(0),
        ))
        .returning(outbox::id)
        .get_result(conn)
}

/// Marks the pending messages of a token `replaced` and blanks their text (a newer code, or the
/// address changed or was removed). Returns how many there were.
pub fn cancel_for_token(conn: &mut AnyConnection, token_id: i64, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::token_id.eq(token_id)).filter(outbox::status.eq(PENDING)))
        .set((
            outbox::status.eq(REPLACED),
            outbox::body_text.eq(None::<String>),
            outbox::body_html.eq(None::<String>),
            outbox::finished_at.eq(db_time(now)),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::version.eq(outbox::version + 1),
        ))
        .execute(conn)
}

/// Marks pending messages past their expiry `expired` and blanks their text; a row a worker is
/// delivering right now (its lease still running) is left to that worker. Returns how many.
pub fn expire_due(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    let now = db_time(now);
    diesel::update(
        outbox::table
            .filter(outbox::status.eq(PENDING))
            .filter(outbox::expires_at.le(now))
            .filter(outbox::lease_until.is_null().or(outbox::lease_until.le(now))),
    )
    .set((
        outbox::status.eq(EXPIRED),
        outbox::body_text.eq(None::<String>),
        outbox::body_html.eq(None::<String>),
        outbox::finished_at.eq(now),
        outbox::lease_until.eq(None::<NaiveDateTime>),
        outbox::version.eq(outbox::version + 1),
    ))
    .execute(conn)
}

/// Deletes finished rows (sent, replaced, expired: their text is already gone) that finished
/// before `before`. Returns how many.
pub fn purge_finished(conn: &mut AnyConnection, before: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(outbox::table.filter(outbox::status.ne(PENDING)).filter(outbox::finished_at.lt(db_time(before))))
        .execute(conn)
}

/// How many messages are pending, and when the oldest of them was recorded (for the metrics):
/// one query.
pub fn pending_summary(conn: &mut AnyConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    use diesel::dsl::{count_star, min};
    let (count, oldest) = outbox::table
        .filter(outbox::status.eq(PENDING))
        .select((count_star(), min(outbox::created_at)))
        .first::<(i64, Option<NaiveDateTime>)>(conn)?;
    Ok((count, oldest.map(|t| t.and_utc())))
}

/// A row as the worker and tests see it.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub channel: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub token_id: Option<i64>,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub next_attempt_at: NaiveDateTime,
    pub attempts: i32,
    pub lease_until: Option<NaiveDateTime>,
    pub version: i32,
    pub finished_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
}

impl OutboxRow {
    pub fn channel(&self) -> Channel {
        if self.channel == "phone" { Channel::Phone } else { Channel::Email }
    }
}

impl std::fmt::Debug for OutboxRow {
    /// Shows no text and no recipient.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRow")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("token_id", &self.token_id)
            .field("status", &self.status)
            .field("has_text", &self.body_text.is_some())
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One row by id.
pub fn get(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<OutboxRow>> {
    outbox::table.find(id).select(OutboxRow::as_select()).first(conn).optional()
}

/// Pending rows due by `due_by` (their next attempt is not later), neither expired nor leased at
/// `now`, oldest first.
pub(crate) fn due(
    conn: &mut AnyConnection,
    due_by: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<OutboxRow>> {
    let now = db_time(now);
    outbox::table
        .filter(outbox::status.eq(PENDING))
        .filter(outbox::next_attempt_at.le(db_time(due_by)))
        .filter(outbox::expires_at.gt(now))
        .filter(outbox::lease_until.is_null().or(outbox::lease_until.le(now)))
        .order((outbox::next_attempt_at.asc(), outbox::id.asc()))
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Takes a lease on a row read at `version`: true when this caller won it. The row's content
/// is then exactly what was read (any change bumps the version).
pub(crate) fn claim(conn: &mut AnyConnection, id: i64, version: i32, lease_until: DateTime<Utc>) -> QueryResult<bool> {
    let changed = diesel::update(
        outbox::table.filter(outbox::id.eq(id)).filter(outbox::version.eq(version)).filter(outbox::status.eq(PENDING)),
    )
    .set((
        outbox::version.eq(version.wrapping_add(1)),
        outbox::lease_until.eq(db_time(lease_until)),
        outbox::attempts.eq(outbox::attempts + 1),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// After a successful send: `sent`, text blanked. False when the row changed meanwhile (e.g. a
/// newer code replaced it; its text is blanked already).
pub(crate) fn mark_sent(conn: &mut AnyConnection, id: i64, version: i32, now: DateTime<Utc>) -> QueryResult<bool> {
    finish(conn, id, version, SENT, None, now)
}

/// Gives up: `expired`, text blanked, with the last error.
pub(crate) fn mark_expired(
    conn: &mut AnyConnection,
    id: i64,
    version: i32,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    finish(conn, id, version, EXPIRED, error, now)
}

fn finish(
    conn: &mut AnyConnection,
    id: i64,
    version: i32,
    status: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let changed = diesel::update(outbox::table.filter(outbox::id.eq(id)).filter(outbox::version.eq(version)))
        .set((
            outbox::status.eq(status),
            outbox::body_text.eq(None::<String>),
            outbox::body_html.eq(None::<String>),
            outbox::finished_at.eq(db_time(now)),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::last_error.eq(error),
            outbox::version.eq(version.wrapping_add(1)),
        ))
        .execute(conn)?;
    Ok(changed == 1)
}

/// After a failed send: release the lease and try again at `next_attempt_at`.
pub(crate) fn reschedule(
    conn: &mut AnyConnection,
    id: i64,
    version: i32,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> QueryResult<bool> {
    let changed = diesel::update(outbox::table.filter(outbox::id.eq(id)).filter(outbox::version.eq(version)))
        .set((
            outbox::next_attempt_at.eq(db_time(next_attempt_at)),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::last_error.eq(error),
            outbox::version.eq(version.wrapping_add(1)),
        ))
        .execute(conn)?;
    Ok(changed == 1)
}
