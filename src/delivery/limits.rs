//! Send limits (CONTRACT.md, "One-time codes" and `FLEX_USER_SMS_HOURLY_LIMIT`): the resend
//! cooldown and the daily cap per normalized address, and the deployment's hourly SMS limit.
//!
//! Each code sent leaves a `send_log` row keyed by HMAC(secret, "channel:address"), so no
//! address rests there in clear, and removing an address and adding it back resets nothing.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::accounts::Channel;
use crate::config::Settings;
use crate::db::schema::send_log;
use crate::db::{AnyConnection, db_time};
use crate::secret::SecretKey;

/// The window of the daily cap (and how long `send_log` rows are kept).
pub const DAY: chrono::Duration = chrono::Duration::hours(24);
/// The window of the hourly SMS limit.
pub const HOUR: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// No two codes to one address within this.
    pub cooldown: chrono::Duration,
    /// At most this many codes to one address in 24 hours.
    pub daily: u32,
    /// At most this many SMS by the whole deployment in an hour (0: no SMS at all).
    pub sms_hourly: u32,
}

impl SendLimits {
    pub fn from_settings(s: &Settings) -> Self {
        Self { cooldown: s.otp.resend_cooldown, daily: s.otp.daily_limit, sms_hourly: s.sms_hourly_limit }
    }
}

/// Why a code may not be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A code went to this address less than the cooldown ago.
    Cooldown { retry_after_secs: u64 },
    /// The address had its daily number of codes.
    DailyCap { retry_after_secs: u64 },
    /// The deployment sent its hourly number of SMS.
    SmsHourly,
}

impl Refusal {
    /// Seconds to put in `Retry-After`; for the SMS limit, until the hour has surely rolled on.
    pub fn retry_after_secs(&self) -> u64 {
        match *self {
            Refusal::Cooldown { retry_after_secs } | Refusal::DailyCap { retry_after_secs } => retry_after_secs,
            Refusal::SmsHourly => HOUR.num_seconds() as u64,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Cooldown { retry_after_secs } => {
                write!(f, "resend cooldown: a code was sent to this address just now (retry in {retry_after_secs} s)")
            }
            Refusal::DailyCap { retry_after_secs } => {
                write!(f, "daily cap: this address had its codes for today (retry in {retry_after_secs} s)")
            }
            Refusal::SmsHourly => f.write_str("FLEX_USER_SMS_HOURLY_LIMIT reached: no more SMS this hour"),
        }
    }
}

/// The `send_log` key of an address: hex HMAC-SHA256(secret, "channel:address").
pub fn address_key(secret: &SecretKey, channel: Channel, address: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
    mac.update(channel.as_str().as_bytes());
    mac.update(b":");
    mac.update(address.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whole seconds from `now` until `at`, rounded up, at least 1.
fn secs_until(at: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (at - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

/// The advisory lock that serializes the deployment's hourly SMS count on PostgreSQL.
const SMS_HOURLY_LOCK: i64 = 7_314_259_184;

/// Takes a transaction-scoped advisory lock on PostgreSQL (SQLite's `BEGIN IMMEDIATE` already
/// serializes every writer).
fn lock(conn: &mut AnyConnection, id: i64) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<diesel::sql_types::BigInt, _>(id).execute(pg)?;
    }
    Ok(())
}

/// Checks the limits for one code to `address` (already normalized: `Email::key()` or E.164)
/// and, when allowed, records the send. Call it inside the caller's write transaction: on
/// PostgreSQL it locks the address (two requests at once cannot both pass its cooldown) and, for
/// SMS, the deployment's hourly count (concurrent sends to different numbers cannot both take
/// its last place). Locks are always taken in that order, so they cannot deadlock.
pub fn try_record(
    conn: &mut AnyConnection,
    secret: &SecretKey,
    limits: &SendLimits,
    channel: Channel,
    address: &str,
    now: DateTime<Utc>,
) -> QueryResult<Result<(), Refusal>> {
    let key = address_key(secret, channel, address);
    if let Err(refusal) = admit(conn, &key, limits, now)? {
        return Ok(Err(refusal));
    }
    if channel == Channel::Phone {
        lock(conn, SMS_HOURLY_LOCK)?;
        let last_hour: i64 = send_log::table
            .filter(send_log::channel.eq(Channel::Phone.as_str()))
            .filter(send_log::sent_at.gt(db_time(now - HOUR)))
            .count()
            .get_result(conn)?;
        if last_hour >= i64::from(limits.sms_hourly) {
            tracing::warn!(limit = limits.sms_hourly, "FLEX_USER_SMS_HOURLY_LIMIT reached: an SMS code was not sent");
            return Ok(Err(Refusal::SmsHourly));
        }
    }
    insert(conn, &key, channel.as_str(), now)
}

/// The `send_log` channel of reset requests (counted per typed identifier, never as messages).
const RESET_REQUEST: &str = "reset-request";

/// The same cooldown and daily cap as [`try_record`], for the reset requests of one typed
/// identifier (`throttle_key`, already a keyed hash), known account or not. A reset restarts its
/// backoff only when this admits the request, so the backoff behaves as if a new code had gone
/// out, the same for every account, whatever other identifiers were asked for elsewhere.
pub fn try_record_reset_request(
    conn: &mut AnyConnection,
    secret: &SecretKey,
    limits: &SendLimits,
    throttle_key: &str,
    now: DateTime<Utc>,
) -> QueryResult<Result<(), Refusal>> {
    let key = secret.keyed_hash(RESET_REQUEST, throttle_key.as_bytes());
    if let Err(refusal) = admit(conn, &key, limits, now)? {
        return Ok(Err(refusal));
    }
    insert(conn, &key, RESET_REQUEST, now)
}

/// The cooldown and the daily cap of one `send_log` key (locked on PostgreSQL, see above).
fn admit(
    conn: &mut AnyConnection,
    key: &str,
    limits: &SendLimits,
    now: DateTime<Utc>,
) -> QueryResult<Result<(), Refusal>> {
    lock(conn, i64::from_str_radix(&key[..15], 16).unwrap_or(0))?;
    let sent: Vec<DateTime<Utc>> = send_log::table
        .filter(send_log::address_key.eq(key))
        .filter(send_log::sent_at.gt(db_time(now - DAY)))
        .order(send_log::sent_at.asc())
        .select(send_log::sent_at)
        .load::<NaiveDateTime>(conn)?
        .into_iter()
        .map(|t| t.and_utc())
        .collect();

    let cooldown = limits.cooldown;
    let cooldown_ends = sent.last().map(|last| *last + cooldown).filter(|end| *end > now);
    let daily = limits.daily as usize;
    if sent.len() >= daily {
        // the send that must fall out of the window before one more fits
        let ends = sent.get(sent.len() - daily).map(|t| *t + DAY).unwrap_or(now);
        let ends = cooldown_ends.map_or(ends, |c| c.max(ends));
        return Ok(Err(Refusal::DailyCap { retry_after_secs: secs_until(ends, now) }));
    }
    if let Some(ends) = cooldown_ends {
        return Ok(Err(Refusal::Cooldown { retry_after_secs: secs_until(ends, now) }));
    }
    Ok(Ok(()))
}

fn insert(conn: &mut AnyConnection, key: &str, channel: &str, now: DateTime<Utc>) -> QueryResult<Result<(), Refusal>> {
    diesel::insert_into(send_log::table)
        .values((send_log::address_key.eq(key), send_log::channel.eq(channel), send_log::sent_at.eq(db_time(now))))
        .execute(conn)?;
    Ok(Ok(()))
}

/// Deletes `send_log` rows older than 24 hours (no limit looks further back).
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(send_log::table.filter(send_log::sent_at.le(db_time(now - DAY)))).execute(conn)
}
