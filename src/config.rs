//! Settings from the environment (CONTRACT.md, "Configuration"). Every variable is optional;
//! a bad value is a one-line [`ConfigError`] naming the variable, never a panic.

use chrono::Duration;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use lettre::message::Mailbox;
use url::Url;

use crate::db::DatabaseUrl;
use crate::domain::Region;
use crate::secret::{SecretKey, Sensitive};

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

#[derive(Debug, Clone)]
pub enum EmailBackend {
    /// Messages (codes included) are written to the log: for development.
    Console,
    /// One `.eml` file per message in this folder.
    File(PathBuf),
    Smtp(Sensitive<Url>),
}

#[derive(Debug, Clone)]
pub enum SmsBackend {
    Console,
    /// One JSON file per message in this folder.
    File(PathBuf),
    /// POST `{"to": "+E164", "body": "text"}`; any 2xx is success.
    Webhook(Sensitive<Url>),
}

/// argon2id cost; OWASP's recommendation (m=19456 KiB, t=2, p=1) by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// How big the argon2 pool is (`FLEX_USER_HASH_THREADS`, `FLEX_USER_HASH_QUEUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPoolSize {
    /// Threads hashing at once, each with its own buffer: one per core by default.
    pub threads: usize,
    /// Requests admitted beyond those being hashed, waiting their turn.
    pub queue: usize,
    /// A job that waited longer than this is refused rather than hashed.
    pub max_wait: StdDuration,
}

impl HashPoolSize {
    /// Queued requests per hashing thread by default: at ~25 ms a hash, a full queue is under a
    /// second of waiting.
    pub const QUEUE_PER_THREAD: usize = 32;

    pub fn for_threads(threads: usize) -> HashPoolSize {
        HashPoolSize { threads, queue: threads * Self::QUEUE_PER_THREAD, max_wait: StdDuration::from_secs(10) }
    }
}

impl Default for HashPoolSize {
    fn default() -> Self {
        Self::for_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// How one-time codes are made and throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpPolicy {
    pub ttl: Duration,
    pub length: usize,
    pub resend_cooldown: Duration,
    pub daily_limit: u32,
}

impl Default for OtpPolicy {
    fn default() -> Self {
        Self { ttl: Duration::seconds(900), length: 6, resend_cooldown: Duration::seconds(60), daily_limit: 10 }
    }
}

/// Where the secret key came from (for the start-up log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeySource {
    /// `FLEX_USER_SECRET_KEY`.
    Variable,
    /// `FLEX_USER_SECRET_KEY_FILE`: read from the file, or made now and written there.
    File { path: PathBuf, created: bool },
    /// Neither was set: a random key for this process only (the contract's default).
    Random,
}

/// How log lines are written (`FLEX_USER_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event (colour only at a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub bind: String,
    pub public_url: Url,
    /// True when `FLEX_USER_PUBLIC_URL` was not given and `public_url` was made from the bind
    /// address (so it can follow the port actually bound, e.g. for port 0).
    pub public_url_is_default: bool,
    pub secret_key: SecretKey,
    pub secret_key_source: SecretKeySource,
    pub email_backend: EmailBackend,
    pub email_from: Mailbox,
    pub sms_backend: SmsBackend,
    pub otp: OtpPolicy,
    pub ip_rate_limit: u32,
    pub sms_hourly_limit: u32,
    pub default_region: Option<Region>,
    pub hash_cost: HashCost,
    /// Threads and queue of the argon2 pool (`FLEX_USER_HASH_THREADS`, `FLEX_USER_HASH_QUEUE`).
    pub hash_pool: HashPoolSize,
    /// Sessions end after this long unused (`FLEX_USER_SESSION_IDLE`, seconds; 1 day).
    pub session_idle: Duration,
    /// ... and at this age whatever happens (`FLEX_USER_SESSION_MAX_AGE`, seconds; 2 weeks).
    pub session_max_age: Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed (`FLEX_USER_TRUSTED_PROXIES`,
    /// comma-separated IPs). Empty: the client is the socket's peer.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `text` (the default) or `json`.
    pub log_format: LogFormat,
    /// Where `GET /metrics` is served (`FLEX_USER_METRICS_BIND`, HOST:PORT), apart from the
    /// site; `None`: no metrics endpoint at all.
    pub metrics_bind: Option<String>,
    /// How long the account's security events are kept (`FLEX_USER_ACTIVITY_DAYS`, 90 to 3650
    /// days; 365).
    pub activity_retention: Duration,
    /// How long `remember` on the second sign-in step skips that step in this browser
    /// (`FLEX_USER_TRUSTED_BROWSER_DAYS`, 30; `0` turns the checkbox off).
    pub trusted_browser_days: u32,
    /// The issuer in authenticator apps and the name in page titles and messages
    /// (`FLEX_USER_SITE_NAME`, `flex-user`).
    pub site_name: String,
}

/// True for `HOST:PORT` (the port a number; the host, a name or an address, is left to `bind`).
fn is_host_port(address: &str) -> bool {
    address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Seconds read from a bounded setting, as the one duration type every layer takes (the bounds
/// keep it far inside chrono's range, so no layer converts or falls back).
fn seconds(n: u64) -> Duration {
    Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

impl Settings {
    /// True when the site is served over https (`FLEX_USER_PUBLIC_URL`): secure cookies with the
    /// `__Host-` prefix, and HSTS.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests). Empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let database_url = DatabaseUrl::parse(&get("DATABASE_URL").unwrap_or_else(|| "sqlite://flex-user.db".into()))
            .map_err(|m| err("DATABASE_URL", m))?;

        let bind = get("FLEX_USER_BIND").unwrap_or_else(|| "127.0.0.1:8080".into());
        if !is_host_port(&bind) {
            return Err(err("FLEX_USER_BIND", format!("{bind:?} is not HOST:PORT")));
        }

        let public_url_is_default = get("FLEX_USER_PUBLIC_URL").is_none();
        let public_url = get("FLEX_USER_PUBLIC_URL").unwrap_or_else(|| format!("http://{bind}"));
        let public_url = Url::parse(&public_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| err("FLEX_USER_PUBLIC_URL", format!("{public_url:?} is not an http(s) URL")))?;

        let (secret_key, secret_key_source) = match (get("FLEX_USER_SECRET_KEY"), get("FLEX_USER_SECRET_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(err("FLEX_USER_SECRET_KEY_FILE", "set it or FLEX_USER_SECRET_KEY, not both"));
            }
            (Some(text), None) => {
                (SecretKey::parse(&text).map_err(|m| err("FLEX_USER_SECRET_KEY", m))?, SecretKeySource::Variable)
            }
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let (key, created) =
                    SecretKey::load_or_create(&path).map_err(|m| err("FLEX_USER_SECRET_KEY_FILE", m))?;
                (key, SecretKeySource::File { path, created })
            }
            (None, None) => (SecretKey::random(), SecretKeySource::Random),
        };

        let email_backend = match get("FLEX_USER_EMAIL_BACKEND").as_deref().unwrap_or("console") {
            "console" => EmailBackend::Console,
            "file" => {
                EmailBackend::File(get("FLEX_USER_EMAIL_FILE_DIR").unwrap_or_else(|| "./outbox/email".into()).into())
            }
            "smtp" => {
                let url = get("FLEX_USER_SMTP_URL")
                    .ok_or_else(|| err("FLEX_USER_SMTP_URL", "must be set when FLEX_USER_EMAIL_BACKEND=smtp"))?;
                let url = Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some())
                    .ok_or_else(|| err("FLEX_USER_SMTP_URL", "is not an smtp:// or smtps:// URL"))?;
                EmailBackend::Smtp(Sensitive(url))
            }
            other => {
                return Err(err("FLEX_USER_EMAIL_BACKEND", format!("{other:?} is not one of console, file, smtp")));
            }
        };

        let email_from = get("FLEX_USER_EMAIL_FROM").unwrap_or_else(|| "flex-user <no-reply@localhost>".into());
        let email_from: Mailbox = email_from
            .parse()
            .map_err(|_| err("FLEX_USER_EMAIL_FROM", format!("{email_from:?} is not an email address")))?;

        let sms_backend = match get("FLEX_USER_SMS_BACKEND").as_deref().unwrap_or("console") {
            "console" => SmsBackend::Console,
            "file" => SmsBackend::File(get("FLEX_USER_SMS_FILE_DIR").unwrap_or_else(|| "./outbox/sms".into()).into()),
            "webhook" => {
                let url = get("FLEX_USER_SMS_WEBHOOK_URL").ok_or_else(|| {
                    err("FLEX_USER_SMS_WEBHOOK_URL", "must be set when FLEX_USER_SMS_BACKEND=webhook")
                })?;
                let url = Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| err("FLEX_USER_SMS_WEBHOOK_URL", "is not an http(s) URL"))?;
                SmsBackend::Webhook(Sensitive(url))
            }
            other => {
                return Err(err("FLEX_USER_SMS_BACKEND", format!("{other:?} is not one of console, file, webhook")));
            }
        };

        let number =
            |var: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<u64, ConfigError> {
                let Some(text) = get(var) else { return Ok(default) };
                let value: u64 =
                    text.trim().parse().map_err(|_| err(var, format!("{text:?} is not a whole number")))?;
                if !range.contains(&value) {
                    return Err(err(var, format!("must be between {} and {}", range.start(), range.end())));
                }
                Ok(value)
            };
        const DAY: u64 = 86_400;
        let otp = OtpPolicy {
            ttl: seconds(number("FLEX_USER_OTP_TTL", 900, 1..=DAY)?),
            length: number("FLEX_USER_OTP_LENGTH", 6, 4..=10)? as usize,
            resend_cooldown: seconds(number("FLEX_USER_OTP_RESEND_COOLDOWN", 60, 0..=DAY)?),
            daily_limit: number("FLEX_USER_OTP_DAILY_LIMIT", 10, 1..=10_000)? as u32,
        };
        let ip_rate_limit = number("FLEX_USER_IP_RATE_LIMIT", 60, 0..=1_000_000)? as u32;
        let sms_hourly_limit = number("FLEX_USER_SMS_HOURLY_LIMIT", 200, 0..=10_000_000)? as u32;

        let default_region = get("FLEX_USER_DEFAULT_REGION")
            .map(|code| Region::parse(&code).map_err(|e| err("FLEX_USER_DEFAULT_REGION", e.0)))
            .transpose()?;

        let defaults = HashCost::default();
        let hash_cost = HashCost {
            memory_kib: number("FLEX_USER_ARGON2_MEMORY_KIB", defaults.memory_kib.into(), 8..=4_194_304)? as u32,
            iterations: number("FLEX_USER_ARGON2_ITERATIONS", defaults.iterations.into(), 1..=100)? as u32,
            parallelism: number("FLEX_USER_ARGON2_PARALLELISM", defaults.parallelism.into(), 1..=64)? as u32,
        };
        if hash_cost.memory_kib < 8 * hash_cost.parallelism {
            return Err(err("FLEX_USER_ARGON2_MEMORY_KIB", "must be at least 8 KiB per lane of parallelism"));
        }

        let cores = HashPoolSize::default().threads as u64;
        let threads = number("FLEX_USER_HASH_THREADS", cores, 1..=1024)? as usize;
        let hash_pool = HashPoolSize {
            queue: number("FLEX_USER_HASH_QUEUE", (threads * HashPoolSize::QUEUE_PER_THREAD) as u64, 0..=1_000_000)?
                as usize,
            ..HashPoolSize::for_threads(threads)
        };

        let session_idle = seconds(number("FLEX_USER_SESSION_IDLE", DAY, 60..=365 * DAY)?);
        let session_max_age = seconds(number("FLEX_USER_SESSION_MAX_AGE", 14 * DAY, 60..=365 * DAY)?);
        let trusted_proxies = get("FLEX_USER_TRUSTED_PROXIES")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|ip| {
                        ip.parse().map_err(|_| err("FLEX_USER_TRUSTED_PROXIES", format!("{ip:?} is not an IP address")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let log_format = match get("FLEX_USER_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(err("FLEX_USER_LOG_FORMAT", format!("{other:?}: use text or json"))),
        };
        let metrics_bind = get("FLEX_USER_METRICS_BIND").map(|bind| bind.trim().to_owned());
        if let Some(bind) = metrics_bind.as_deref().filter(|bind| !is_host_port(bind)) {
            return Err(err("FLEX_USER_METRICS_BIND", format!("{bind:?} is not HOST:PORT")));
        }

        let activity_retention = Duration::days(number("FLEX_USER_ACTIVITY_DAYS", 365, 90..=3650)? as i64);
        let trusted_browser_days = number("FLEX_USER_TRUSTED_BROWSER_DAYS", 30, 0..=3650)? as u32;
        let site_name = get("FLEX_USER_SITE_NAME").map(|n| n.trim().to_owned()).unwrap_or_else(|| "flex-user".into());
        // the issuer is written before a colon in the otpauth label, and a title is one line
        if site_name.chars().count() > 64 || site_name.contains(':') || site_name.chars().any(char::is_control) {
            return Err(err("FLEX_USER_SITE_NAME", "at most 64 characters, no colon or control character"));
        }

        Ok(Settings {
            database_url,
            bind,
            public_url,
            public_url_is_default,
            secret_key,
            secret_key_source,
            email_backend,
            email_from,
            sms_backend,
            otp,
            ip_rate_limit,
            sms_hourly_limit,
            default_region,
            hash_cost,
            hash_pool,
            session_idle,
            session_max_age,
            trusted_proxies,
            log_format,
            metrics_bind,
            activity_retention,
            trusted_browser_days,
            site_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        settings(vars).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("flex-user.db".into()));
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(s.secret_key_source, SecretKeySource::Random);
        assert!(matches!(s.email_backend, EmailBackend::Console));
        assert!(matches!(s.sms_backend, SmsBackend::Console));
        assert_eq!(s.email_from.email.to_string(), "no-reply@localhost");
        assert_eq!(s.otp, OtpPolicy::default());
        assert_eq!((s.ip_rate_limit, s.sms_hourly_limit), (60, 200));
        assert_eq!(s.default_region, None);
        assert_eq!(s.hash_cost, HashCost::default());
    }

    #[test]
    fn activity_is_kept_a_year_and_never_under_ninety_days() {
        assert_eq!(settings(&[]).unwrap().activity_retention, Duration::days(365));
        assert_eq!(settings(&[("FLEX_USER_ACTIVITY_DAYS", "90")]).unwrap().activity_retention, Duration::days(90));
        assert!(error(&[("FLEX_USER_ACTIVITY_DAYS", "89")]).starts_with("FLEX_USER_ACTIVITY_DAYS: "));
    }

    #[test]
    fn public_url_defaults_to_the_bind_address() {
        let s = settings(&[("FLEX_USER_BIND", "0.0.0.0:9000")]).unwrap();
        assert_eq!(s.public_url.as_str(), "http://0.0.0.0:9000/");
    }

    #[test]
    fn log_format_is_text_unless_json_is_asked_for() {
        assert_eq!(settings(&[]).unwrap().log_format, LogFormat::Text);
        assert_eq!(settings(&[("FLEX_USER_LOG_FORMAT", "json")]).unwrap().log_format, LogFormat::Json);
    }

    #[test]
    fn metrics_are_served_only_when_asked_for() {
        assert_eq!(settings(&[]).unwrap().metrics_bind, None);
        let s = settings(&[("FLEX_USER_METRICS_BIND", "127.0.0.1:9100")]).unwrap();
        assert_eq!(s.metrics_bind.as_deref(), Some("127.0.0.1:9100"));
        for bad in ["9100", ":9100", "localhost", "127.0.0.1:http", "127.0.0.1:70000"] {
            let e = error(&[("FLEX_USER_METRICS_BIND", bad)]);
            assert!(e.starts_with("FLEX_USER_METRICS_BIND: ") && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn contract_configuration_errors() {
        assert!(error(&[("FLEX_USER_EMAIL_BACKEND", "smtp")]).starts_with("FLEX_USER_SMTP_URL:"));
        assert!(error(&[("FLEX_USER_SMS_BACKEND", "webhook")]).starts_with("FLEX_USER_SMS_WEBHOOK_URL:"));
        assert!(error(&[("FLEX_USER_OTP_LENGTH", "3")]).starts_with("FLEX_USER_OTP_LENGTH:"));
        assert!(error(&[("FLEX_USER_OTP_LENGTH", "11")]).starts_with("FLEX_USER_OTP_LENGTH:"));
        assert!(error(&[("FLEX_USER_SECRET_KEY", "abcd")]).starts_with("FLEX_USER_SECRET_KEY:"));
        assert!(error(&[("DATABASE_URL", "mysql://x")]).starts_with("DATABASE_URL:"));
        assert!(error(&[("FLEX_USER_OTP_TTL", "ten")]).starts_with("FLEX_USER_OTP_TTL:"));
        assert!(error(&[("FLEX_USER_DEFAULT_REGION", "XX")]).starts_with("FLEX_USER_DEFAULT_REGION:"));
        assert!(error(&[("FLEX_USER_BIND", "nowhere")]).starts_with("FLEX_USER_BIND:"));
        assert!(error(&[("FLEX_USER_EMAIL_BACKEND", "pigeon")]).starts_with("FLEX_USER_EMAIL_BACKEND:"));
        assert!(error(&[("FLEX_USER_LOG_FORMAT", "xml")]).starts_with("FLEX_USER_LOG_FORMAT:"));
        for e in [error(&[("FLEX_USER_OTP_LENGTH", "3")]), error(&[("FLEX_USER_SECRET_KEY", "abcd")])] {
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn reads_every_variable() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("FLEX_USER_SECRET_KEY", &"0f".repeat(32)),
            ("FLEX_USER_EMAIL_BACKEND", "smtp"),
            ("FLEX_USER_SMTP_URL", "smtps://user:pass@mail.example.org"),
            ("FLEX_USER_EMAIL_FROM", "Example <auth@example.org>"),
            ("FLEX_USER_SMS_BACKEND", "webhook"),
            ("FLEX_USER_SMS_WEBHOOK_URL", "http://127.0.0.1:9/sms"),
            ("FLEX_USER_OTP_TTL", "300"),
            ("FLEX_USER_OTP_LENGTH", "8"),
            ("FLEX_USER_OTP_RESEND_COOLDOWN", "30"),
            ("FLEX_USER_OTP_DAILY_LIMIT", "5"),
            ("FLEX_USER_IP_RATE_LIMIT", "0"),
            ("FLEX_USER_SMS_HOURLY_LIMIT", "50"),
            ("FLEX_USER_DEFAULT_REGION", "gb"),
        ])
        .unwrap();
        assert_eq!(s.database_url, DatabaseUrl::Postgres("postgres://u@localhost/db".into()));
        assert_eq!(s.secret_key_source, SecretKeySource::Variable);
        assert_eq!(s.otp.ttl, Duration::seconds(300));
        assert_eq!(s.otp.length, 8);
        assert_eq!(s.otp.daily_limit, 5);
        assert_eq!(s.ip_rate_limit, 0);
        assert_eq!(s.default_region, Some(Region::parse("GB").unwrap()));
        // passwords in URLs must not reach a log line through Debug
        assert!(!format!("{s:?}").contains("pass@"));
        let s = settings(&[("DATABASE_URL", "postgres://u:hunter2@localhost/db")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn part_two_settings() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!((s.trusted_browser_days, s.site_name.as_str()), (30, "flex-user"));
        let vars = [("FLEX_USER_TRUSTED_BROWSER_DAYS", "0"), ("FLEX_USER_SITE_NAME", " Acme ")];
        let s = Settings::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
        assert_eq!((s.trusted_browser_days, s.site_name.as_str()), (0, "Acme"));
        for (var, value) in [("FLEX_USER_SITE_NAME", "a:b"), ("FLEX_USER_TRUSTED_BROWSER_DAYS", "x")] {
            let e = Settings::from_lookup(|k| (k == var).then(|| value.to_string())).unwrap_err();
            assert_eq!(e.var, var);
        }
    }
}
