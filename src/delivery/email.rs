//! Email senders: one trait, one small type per backend (console, file, SMTP).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{SMTP_PORT, SUBMISSION_PORT, SUBMISSIONS_PORT};
use url::Url;

use super::SendFuture;

/// Sends one email. Implementations must be cheap to share between tasks.
pub trait EmailSender: Send + Sync {
    /// Sends a message with a plain-text body and, when given, an HTML alternative.
    fn send<'a>(&'a self, to: &'a str, subject: &'a str, text: &'a str, html: Option<&'a str>) -> SendFuture<'a>;
}

/// Builds the MIME message: multipart/alternative (text, then HTML) or plain text alone.
pub fn build_message(
    from: &Mailbox,
    to: &str,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> anyhow::Result<Message> {
    // Read as an `Address` (what `Email::parse` guarantees), and the envelope given rather than
    // read back from the headers: lettre's mailbox parser, used for both, drops the quotes of a
    // quoted local part (`"john doe"@example.org`) and then refuses what is left.
    let to: lettre::Address = to.parse().context("the recipient is not a valid email address")?;
    let envelope = Envelope::new(Some(from.email.clone()), vec![to.clone()]).context("cannot address the email")?;
    let builder = Message::builder().envelope(envelope).from(from.clone()).to(Mailbox::from(to)).subject(subject);
    let message = match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text.to_owned(), html.to_owned())),
        None => builder.header(ContentType::TEXT_PLAIN).body(text.to_owned()),
    };
    message.context("cannot build the email")
}

/// Writes every message, code included, to the log: for development. The only email backend
/// that may show a code.
#[derive(Debug, Clone, Default)]
pub struct ConsoleEmail;

impl EmailSender for ConsoleEmail {
    fn send<'a>(&'a self, to: &'a str, subject: &'a str, text: &'a str, _html: Option<&'a str>) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::info!(target: "flex_user::delivery::console", "email to {to}\nSubject: {subject}\n\n{text}");
            Ok(())
        })
    }
}

/// Writes one `.eml` file per message into a folder (created if missing).
#[derive(Debug, Clone)]
pub struct FileEmail {
    dir: PathBuf,
    from: Mailbox,
}

impl FileEmail {
    pub fn new(dir: impl Into<PathBuf>, from: Mailbox) -> FileEmail {
        FileEmail { dir: dir.into(), from }
    }
}

impl EmailSender for FileEmail {
    fn send<'a>(&'a self, to: &'a str, subject: &'a str, text: &'a str, html: Option<&'a str>) -> SendFuture<'a> {
        Box::pin(async move {
            let message = build_message(&self.from, to, subject, text, html)?;
            super::write_new_file(self.dir.clone(), "eml", message.formatted()).await
        })
    }
}

/// How the SMTP connection is protected.
#[derive(Clone)]
enum SmtpTls {
    /// `smtp://host` without `tls`: plain text.
    None,
    /// `smtp://host?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic(TlsParameters),
    /// `smtp://host?tls=required`: STARTTLS or fail.
    Required(TlsParameters),
    /// `smtps://host`: TLS from the first byte.
    Wrapper(TlsParameters),
}

/// Sends through an SMTP server: `smtp://host:port` (plain), `smtps://user:pass@host` (TLS from
/// the start), `smtp://host:587?tls=required` (STARTTLS); credentials come from the URL, and a
/// path (`smtp://host/NAME`) sets the EHLO name.
///
/// One connection per message, made and closed inside [`EmailSender::send`]: codes are few, and
/// so nothing runs in the background (lettre's pooled transport spawns tasks when it is built
/// and dropped, which needs a runtime at both moments, and would park a connection abandoned
/// mid-dialogue by a timeout for reuse).
#[derive(Clone)]
pub struct SmtpEmail {
    host: String,
    port: u16,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    hello: ClientId,
    from: Mailbox,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpEmail {
    /// The URL may hold a password: only the server is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpEmail")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes (user names and passwords in URLs); `+` stays `+`.
fn percent_decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("the user name or password is not UTF-8")
}

impl SmtpEmail {
    /// Reads the URL (`FLEX_USER_SMTP_URL`). `timeout` bounds each whole delivery (connection,
    /// TLS and the SMTP dialogue), so a server that accepts a connection and never answers
    /// cannot hold the worker. Needs no async runtime.
    pub fn new(url: &Url, from: Mailbox, timeout: Duration) -> anyhow::Result<SmtpEmail> {
        let bad = |why: &str| anyhow::anyhow!("FLEX_USER_SMTP_URL: {why}");
        let host = url.host_str().ok_or_else(|| bad("no host"))?.trim_start_matches('[').trim_end_matches(']');
        let tls_param = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let params = || TlsParameters::new(host.to_owned()).map_err(|e| bad(&format!("TLS: {e}")));
        let (tls, default_port) = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None | Some("none")) => (SmtpTls::None, SMTP_PORT),
            ("smtp", Some("opportunistic")) => (SmtpTls::Opportunistic(params()?), SUBMISSION_PORT),
            ("smtp", Some("required")) => (SmtpTls::Required(params()?), SUBMISSION_PORT),
            ("smtps", None | Some("wrapper")) => (SmtpTls::Wrapper(params()?), SUBMISSIONS_PORT),
            (scheme, None) => return Err(bad(&format!("unknown scheme {scheme:?} (smtp or smtps)"))),
            (_, Some(other)) => return Err(bad(&format!("unknown tls={other:?} (required or opportunistic)"))),
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(percent_decode(url.username())?, percent_decode(password)?)),
            None if !url.username().is_empty() => return Err(bad("a user name needs a password")),
            None => None,
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        Ok(SmtpEmail {
            host: host.to_owned(),
            port: url.port().unwrap_or(default_port),
            tls,
            credentials,
            hello,
            from,
            timeout,
        })
    }

    async fn deliver(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), lettre::transport::smtp::Error> {
        let wrapper = match &self.tls {
            SmtpTls::Wrapper(params) => Some(params.clone()),
            _ => None,
        };
        let server = (self.host.as_str(), self.port);
        let mut conn =
            AsyncSmtpConnection::connect_tokio1(server, Some(self.timeout), &self.hello, wrapper, None).await?;
        match &self.tls {
            SmtpTls::Required(params) => conn.starttls(params.clone(), &self.hello).await?,
            SmtpTls::Opportunistic(params) if conn.can_starttls() => conn.starttls(params.clone(), &self.hello).await?,
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        conn.send(envelope, bytes).await?;
        // the message is accepted; a failed goodbye changes nothing
        let _ = conn.quit().await;
        Ok(())
    }
}

impl EmailSender for SmtpEmail {
    fn send<'a>(&'a self, to: &'a str, subject: &'a str, text: &'a str, html: Option<&'a str>) -> SendFuture<'a> {
        Box::pin(async move {
            let message = build_message(&self.from, to, subject, text, html)?;
            let (envelope, bytes) = (message.envelope().clone(), message.formatted());
            // lettre's own timeout covers connecting only: bound the whole exchange here
            match tokio::time::timeout(self.timeout, self.deliver(&envelope, &bytes)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::anyhow!("SMTP: {e}")),
                Err(_) => Err(anyhow::anyhow!("SMTP: no answer within {} s", self.timeout.as_secs_f32())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(url: &str) -> anyhow::Result<SmtpEmail> {
        SmtpEmail::new(&Url::parse(url).unwrap(), "a@example.org".parse().unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn reads_the_smtp_url() {
        let plain = smtp("smtp://127.0.0.1:2525").unwrap();
        assert!(matches!(plain.tls, SmtpTls::None) && plain.port == 2525 && plain.credentials.is_none());
        let tls = smtp("smtps://us%40er:p%25ss+word@mail.example.org").unwrap();
        assert!(matches!(tls.tls, SmtpTls::Wrapper(_)) && tls.port == 465);
        assert_eq!(tls.credentials, Some(Credentials::new("us@er".into(), "p%ss+word".into())));
        let starttls = smtp("smtp://mail.example.org/relay.example.org?tls=required").unwrap();
        assert!(matches!(starttls.tls, SmtpTls::Required(_)) && starttls.port == 587);
        assert_eq!(starttls.hello, ClientId::Domain("relay.example.org".into()));
        assert!(smtp("smtp://mail.example.org?tls=maybe").is_err());
        assert!(smtp("imap://mail.example.org").is_err());
        // Debug shows no password
        assert!(!format!("{tls:?}").contains("ss"));
    }

    #[test]
    fn builds_multipart_or_plain_messages() {
        let from: Mailbox = "Flex <a@example.org>".parse().unwrap();
        let both = build_message(&from, "b@example.org", "Hi", "text", Some("<p>html</p>")).unwrap();
        let raw = String::from_utf8(both.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative") && raw.contains("text/html"));
        let plain = build_message(&from, "b@example.org", "Hi", "text", None).unwrap();
        assert!(!String::from_utf8(plain.formatted()).unwrap().contains("multipart"));
        assert!(build_message(&from, "not an address", "Hi", "text", None).is_err());
        // a quoted local part keeps its quotes, in the envelope and in the header
        let quoted = build_message(&from, "\"john doe\"@example.org", "Hi", "text", None).unwrap();
        assert_eq!(quoted.envelope().to()[0].to_string(), "\"john doe\"@example.org");
        assert!(String::from_utf8(quoted.formatted()).unwrap().contains("To: \"john doe\"@example.org\r\n"));
    }
}
