//! Delivery of email and SMS through a durable outbox (CONTRACT.md, "Messages" and the outbox
//! paragraph of "Pages and forms").
//!
//! A request never talks to a mail or SMS server: inside the transaction of the change that
//! causes a message it checks the send limits ([`limits::try_record`]) and records the message
//! ([`outbox::enqueue`]); after committing it wakes the [`worker`], which claims due messages
//! with a lease (compare-and-swap on `version`, so several instances never send one message
//! twice), sends them through an [`email::EmailSender`] or [`sms::SmsSender`], and blanks the
//! text once it is sent, replaced by a newer code, or expired. [`messages`] holds the wording.

pub mod email;
pub mod limits;
pub mod messages;
pub mod notices;
pub mod outbox;
pub mod sms;
pub mod worker;

use std::future::Future;
use std::pin::Pin;

pub use limits::{Refusal, SendLimits};
pub use messages::{EmailContent, Purpose};
pub use outbox::NewMessage;
pub use worker::Senders;

/// What a sender returns: a boxed future, so the sender traits stay object-safe.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// How long one delivery attempt may take (connect, TLS, the whole SMTP dialogue or HTTP
/// exchange) before it counts as failed and is retried later.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A unique file name for the file backends: time, process, a counter and randomness, so
/// instances writing into one folder never collide.
fn unique_file_name(extension: &str) -> String {
    use rand::RngExt as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = chrono::Utc::now();
    format!(
        "{}-{}-{:06}-{:08x}.{extension}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::rng().random::<u32>()
    )
}

/// Writes `bytes` to a new file in `dir` (created if missing) under a unique name with the given
/// extension: first to a hidden temporary name, then renamed, so a reader never sees half a file.
async fn write_new_file(dir: std::path::PathBuf, extension: &'static str, bytes: Vec<u8>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = unique_file_name(extension);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        let path = dir.join(&name);
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    })
    .await
    .context("file writer task failed")?
}
