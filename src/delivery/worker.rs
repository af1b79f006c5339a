//! The background worker that empties the outbox.
//!
//! Each pass: mark expired pending rows `expired` (text blanked); then, batch by batch, read the
//! due rows, claim each with compare-and-swap on `version` (which also sets a lease), send the
//! claimed ones concurrently, and record the outcome at the claimed version: `sent` (text
//! blanked), or a retry after a backoff (1 s doubling, capped at a minute), or `expired` when
//! the next try would come after the message's expiry. A worker that dies mid-delivery leaves
//! its lease to run out, and then another takes the row: the only way a message goes twice.
//!
//! Logs name the message id, channel and attempt, never the text or the code.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::email::{ConsoleEmail, EmailSender, FileEmail, SmtpEmail};
use super::outbox::{self, OutboxRow};
use super::sms::{ConsoleSms, FileSms, SmsSender, WebhookSms};
use super::{SEND_TIMEOUT, limits};
use crate::accounts::Channel;
use crate::clock::Clock;
use crate::config::{EmailBackend, Settings, SmsBackend};
use crate::db::{AnyConnection, Pool};
use crate::metrics;

/// How long a claim holds a row: far beyond [`SEND_TIMEOUT`], so a live worker always finishes
/// first, and short enough that a crashed worker's rows go out again soon.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(120);
/// Rows claimed (and sent concurrently) per batch.
pub const BATCH: i64 = 16;
/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: chrono::Duration = chrono::Duration::seconds(1);
pub const MAX_BACKOFF: chrono::Duration = chrono::Duration::seconds(60);
/// Without a wake-up, look for due messages this often.
pub const POLL: Duration = Duration::from_secs(1);
/// Housekeeping (old send-log rows, finished outbox rows) this often.
const HOUSEKEEPING: chrono::Duration = chrono::Duration::minutes(10);
/// Finished outbox rows (their text already gone) are kept this long, then deleted.
const KEEP_FINISHED: chrono::Duration = chrono::Duration::days(7);
/// Longest `last_error` stored.
const MAX_ERROR_LEN: usize = 500;

/// The senders in use.
#[derive(Clone)]
pub struct Senders {
    pub email: Arc<dyn EmailSender>,
    pub sms: Arc<dyn SmsSender>,
}

impl Senders {
    /// The backends the settings choose, with a [`SEND_TIMEOUT`] on the network ones.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Senders> {
        let email: Arc<dyn EmailSender> = match &s.email_backend {
            EmailBackend::Console => Arc::new(ConsoleEmail),
            EmailBackend::File(dir) => Arc::new(FileEmail::new(dir.clone(), s.email_from.clone())),
            EmailBackend::Smtp(url) => Arc::new(SmtpEmail::new(&url.0, s.email_from.clone(), SEND_TIMEOUT)?),
        };
        let sms: Arc<dyn SmsSender> = match &s.sms_backend {
            SmsBackend::Console => Arc::new(ConsoleSms),
            SmsBackend::File(dir) => Arc::new(FileSms::new(dir.clone())),
            SmsBackend::Webhook(url) => Arc::new(WebhookSms::new(url.0.clone(), SEND_TIMEOUT)?),
        };
        Ok(Senders { email, sms })
    }
}

/// The wait before the retry that follows the `attempts`-th failed attempt (1 s, 2 s, 4 s … 60 s).
pub fn backoff(attempts: i32) -> chrono::Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 16) as u32;
    (FIRST_BACKOFF * 2i32.pow(doublings)).min(MAX_BACKOFF)
}

/// Starts the worker on the current tokio runtime (the actix System); it runs until the process
/// ends. It wakes on `wake.notify_one()` (requests call it after committing) and otherwise polls
/// every [`POLL`]. No error, and no panic in a sender, stops it.
pub fn spawn(pool: Pool, senders: Senders, clock: Arc<dyn Clock>, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    let worker_id = {
        use rand::RngExt as _;
        format!("{}-{:08x}", std::process::id(), rand::rng().random::<u32>())
    };
    tokio::spawn(async move {
        tracing::info!(worker = %worker_id, "outbox worker started");
        let mut next_housekeeping = clock.now();
        loop {
            if let Err(e) = run_once(&pool, &senders, clock.as_ref(), &worker_id).await {
                tracing::warn!(worker = %worker_id, "outbox pass failed: {e:#}");
            }
            let now = clock.now();
            if now >= next_housekeeping {
                next_housekeeping = now + HOUSEKEEPING;
                if let Err(e) = housekeeping(&pool, now).await {
                    tracing::warn!(worker = %worker_id, "outbox housekeeping failed: {e:#}");
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

/// Deletes send-log rows no limit looks at any more, and finished outbox rows older than a week.
pub async fn housekeeping(pool: &Pool, now: DateTime<Utc>) -> anyhow::Result<(usize, usize)> {
    with_conn(pool, move |conn| {
        let log = limits::prune(conn, now)?;
        let rows = outbox::purge_finished(conn, now - KEEP_FINISHED)?;
        Ok((log, rows))
    })
    .await
}

/// Runs blocking database work on a blocking thread with a pooled connection.
async fn with_conn<T: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&mut AnyConnection) -> diesel::QueryResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<T> {
        let mut conn = pool.get().context("database connection")?;
        Ok(f(&mut conn)?)
    })
    .await
    .context("database task failed")?
}

/// One pass: expires what is past its time, then claims and delivers everything due now.
/// Returns how many messages it attempted to send.
pub async fn run_once(pool: &Pool, senders: &Senders, clock: &dyn Clock, worker_id: &str) -> anyhow::Result<usize> {
    let now = clock.now();
    let expired = with_conn(pool, move |conn| outbox::expire_due(conn, now)).await?;
    if expired > 0 {
        tracing::info!(worker = %worker_id, count = expired, "outbox: messages expired before they could be sent");
    }

    // Only what is due when the pass starts: a message that fails now is retried in a later
    // pass, so a pass ends even while a server keeps failing.
    let due_by = now;
    let mut attempted = 0;
    // Every round either claims rows or sees them claimed or changed by someone else (and so
    // no longer due: leased or finished), so rounds end; the bound is only a guard.
    for _ in 0..1000 {
        let now = clock.now();
        let (seen, claimed) = with_conn(pool, move |conn| {
            let due = outbox::due(conn, due_by, now, BATCH)?;
            let seen = due.len();
            let mut claimed = Vec::new();
            for row in due {
                if outbox::claim(conn, row.id, row.version, now + LEASE)? {
                    claimed.push(row);
                }
            }
            Ok((seen, claimed))
        })
        .await?;
        if seen == 0 {
            break;
        }
        attempted += claimed.len();

        // Send concurrently; record each outcome as soon as it is known.
        let mut sends = JoinSet::new();
        for row in claimed {
            let senders = senders.clone();
            sends.spawn(async move {
                let result = send(&senders, &row).await;
                (row, result)
            });
        }
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok((row, result)) => {
                    let id = row.id;
                    // keep going: dropping `sends` would cut the other deliveries short
                    if let Err(e) = record(pool, clock, worker_id, row, result).await {
                        tracing::warn!(worker = %worker_id, message = id, "outbox: cannot record a delivery: {e:#}");
                    }
                }
                // a panicking sender: the row's lease runs out and it is tried again later
                Err(e) => tracing::error!(worker = %worker_id, "outbox: a delivery task failed: {e}"),
            }
        }
    }
    Ok(attempted)
}

/// Sends one claimed message through the sender of its channel.
async fn send(senders: &Senders, row: &OutboxRow) -> anyhow::Result<()> {
    let Some(text) = row.body_text.as_deref() else {
        anyhow::bail!("the message has no text");
    };
    match row.channel() {
        Channel::Email => {
            let subject = row.subject.as_deref().unwrap_or_default();
            senders.email.send(&row.recipient, subject, text, row.body_html.as_deref()).await
        }
        Channel::Phone => senders.sms.send(&row.recipient, text).await,
    }
}

/// Records the outcome of one attempt at the version the claim left (`row.version + 1`).
async fn record(
    pool: &Pool,
    clock: &dyn Clock,
    worker_id: &str,
    row: OutboxRow,
    result: anyhow::Result<()>,
) -> anyhow::Result<()> {
    let now = clock.now();
    let (id, channel, version) = (row.id, row.channel(), row.version.wrapping_add(1));
    let attempt = row.attempts.saturating_add(1);
    let expires_at = row.expires_at.and_utc();
    match result {
        Ok(()) => {
            // notices (a password changed…) carry no code
            if row.token_id.is_some() {
                metrics::code_sent(channel);
            }
            let marked = with_conn(pool, move |conn| outbox::mark_sent(conn, id, version, now)).await?;
            tracing::info!(worker = %worker_id, message = id, %channel, attempt, "outbox: message delivered");
            if !marked {
                tracing::info!(worker = %worker_id, message = id, "outbox: the message changed while it was sent");
            }
        }
        Err(e) => {
            metrics::delivery_failed(channel);
            let error = short_error(&e);
            let next = now + backoff(attempt);
            if next >= expires_at || row.body_text.is_none() {
                with_conn(pool, move |conn| outbox::mark_expired(conn, id, version, Some(&error), now)).await?;
                tracing::warn!(
                    worker = %worker_id, message = id, %channel, attempt,
                    "outbox: delivery failed, giving up (the message expires before another try): {e:#}"
                );
            } else {
                let wait = (next - now).num_seconds();
                with_conn(pool, move |conn| outbox::reschedule(conn, id, version, next, &error)).await?;
                tracing::warn!(
                    worker = %worker_id, message = id, %channel, attempt,
                    "outbox: delivery failed, retrying in {wait} s: {e:#}"
                );
            }
        }
    }
    Ok(())
}

/// The error as one line, bounded, for `last_error`.
fn short_error(e: &anyhow::Error) -> String {
    let text = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_ERROR_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
