//! SMS senders: one trait, one small type per backend (console, file, webhook). A provider
//! (Twilio, Vonage…) is one more small type here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use url::Url;

use super::SendFuture;

/// Sends one SMS. Implementations must be cheap to share between tasks.
pub trait SmsSender: Send + Sync {
    /// `to` is an E.164 number (`+` and digits).
    fn send<'a>(&'a self, to: &'a str, body: &'a str) -> SendFuture<'a>;
}

/// The JSON the file and webhook backends write: `{"to": "+E164", "body": "text"}`.
#[derive(Debug, serde::Serialize)]
struct Payload<'a> {
    to: &'a str,
    body: &'a str,
}

/// Writes every SMS, code included, to the log: for development. The only SMS backend that may
/// show a code.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSms;

impl SmsSender for ConsoleSms {
    fn send<'a>(&'a self, to: &'a str, body: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::info!(target: "flex_user::delivery::console", "SMS to {to}\n\n{body}");
            Ok(())
        })
    }
}

/// Writes one JSON file `{"to", "body"}` per message into a folder (created if missing).
#[derive(Debug, Clone)]
pub struct FileSms {
    dir: PathBuf,
}

impl FileSms {
    pub fn new(dir: impl Into<PathBuf>) -> FileSms {
        FileSms { dir: dir.into() }
    }
}

impl SmsSender for FileSms {
    fn send<'a>(&'a self, to: &'a str, body: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            let json = serde_json::to_vec_pretty(&Payload { to, body })?;
            super::write_new_file(self.dir.clone(), "json", json).await
        })
    }
}

/// POSTs `{"to": "+E164", "body": "text"}` as JSON to a URL; any 2xx answer is success.
#[derive(Clone)]
pub struct WebhookSms {
    client: reqwest::Client,
    url: Url,
}

impl std::fmt::Debug for WebhookSms {
    /// The URL may hold a token: nothing of it is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSms").finish_non_exhaustive()
    }
}

impl WebhookSms {
    /// `timeout` bounds each whole request.
    pub fn new(url: Url, timeout: Duration) -> anyhow::Result<WebhookSms> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("flex-user/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the SMS webhook client")?;
        Ok(WebhookSms { client, url })
    }
}

impl SmsSender for WebhookSms {
    fn send<'a>(&'a self, to: &'a str, body: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            // errors without the URL: it may carry a token
            let response = self
                .client
                .post(self.url.clone())
                .json(&Payload { to, body })
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("SMS webhook: {}", e.without_url()))?;
            let status = response.status();
            if status.is_success() { Ok(()) } else { Err(anyhow::anyhow!("SMS webhook answered {status}")) }
        })
    }
}
