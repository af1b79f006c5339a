//! The real server on port 0, with a real SMTP listener and an HTTP SMS sink, and a client that
//! keeps cookies and does not follow redirects.
#![allow(dead_code)]

use std::marker::PhantomData;
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flex_user::Accounts;
use flex_user::clock::ManualClock;
use flex_user::db::{self, Pool};
use flex_user::delivery::Senders;
use flex_user::flows::Flows;
use flex_user::web::{self, AppState};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::HeaderMap;

use super::TestDb;
use super::sinks::{HttpSink, SmtpSink};

pub struct TestApp {
    pub base: String,
    pub smtp: SmtpSink,
    pub sms: HttpSink,
    pub clock: ManualClock,
    pub pool: Pool,
    pub accounts: Accounts,
    pub flows: Flows,
    /// `http://HOST:PORT` of `GET /metrics` when the settings had `FLEX_USER_METRICS_BIND`.
    pub metrics: Option<String>,
    system: actix_web::rt::System,
    /// Stops the server, so its thread, runtime, worker and pool end with the test (a stopped
    /// System alone left the server's future pending and every one of those behind it).
    server: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // the command is sent at the call; its completion is not awaited
        drop(self.server.stop(false));
        self.system.stop();
    }
}

/// Settings every web test uses; `extra` overrides. In a value of `extra`, `{port}` stands for
/// the port the server listens on (`FLEX_USER_PUBLIC_URL=http://localhost:{port}`: a browser then
/// reaches the site at its public origin, as passkeys need).
pub fn spawn_app(db: &TestDb, extra: &[(&str, &str)]) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let extra: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, v.replace("{port}", &port))).collect();
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let extra = &extra[..];
    let smtp = SmtpSink::start();
    let sms = HttpSink::start();
    let (smtp_url, sms_url) = (smtp.url(), sms.url());
    let mut vars: Vec<(&str, &str)> = vec![
        ("FLEX_USER_EMAIL_BACKEND", "smtp"),
        ("FLEX_USER_SMTP_URL", &smtp_url),
        ("FLEX_USER_SMS_BACKEND", "webhook"),
        ("FLEX_USER_SMS_WEBHOOK_URL", &sms_url),
        ("FLEX_USER_PUBLIC_URL", "http://auth.test:8080"),
    ];
    vars.extend_from_slice(extra);
    let settings = db.settings(&vars);
    let pool = db::connect(&settings.database_url, 16).expect("connect");
    let clock = ManualClock::default();
    let accounts = Accounts::new(pool.clone(), &settings).expect("accounts").with_clock(clock.clone());
    let senders = Senders::from_settings(&settings).expect("senders");
    let flows = Flows::new(accounts.clone(), &settings);
    let state = AppState::new(flows.clone(), settings);

    let base = format!("http://{}", listener.local_addr().unwrap());
    // as `flex-user serve` does: a second server, for metrics only, when the settings ask for one
    let metrics_listener = web::monitoring::bind(&state.settings).expect("metrics listener");
    let metrics = metrics_listener.as_ref().map(|l| format!("http://{}", l.local_addr().unwrap()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        system.block_on(async move {
            if let Some(listener) = metrics_listener {
                let hash_load = web::monitoring::hash_pool_load(&state.flows);
                // a server runs while its future is polled
                actix_web::rt::spawn(web::monitoring::run(listener, &state.flows, hash_load).expect("metrics server"));
            }
            let server = web::run(listener, state, senders).expect("server");
            tx.send((actix_web::rt::System::current(), server.handle())).unwrap();
            let _ = server.await;
        });
    });
    let (system, server) = rx.recv_timeout(Duration::from_secs(10)).expect("server started");
    TestApp { base, smtp, sms, clock, pool, accounts, flows, metrics, system, server }
}

/// A browser: keeps cookies, never follows redirects, and posts the CSRF token of the last page
/// it got that had a form (the page it is on), as a browser submitting that page's form does.
pub struct Browser<'a> {
    /// The site it talks to: an app of this process, or any server ([`Browser::at`]).
    base: String,
    pub jar: Arc<Jar>,
    client: Client,
    page_token: Mutex<Option<String>>,
    /// The `User-Agent` it sends (none by default).
    user_agent: Option<String>,
    /// A browser of an app of this process lives no longer than the app.
    _app: PhantomData<&'a TestApp>,
}

/// A response read whole.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "expected 303 to {to}: {}", self.body);
        assert_eq!(self.location(), Some(to));
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }

    /// The value of the first `name="csrf_token"` input.
    pub fn csrf_token(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf_token\"")?;
        let rest = &self.body[at..];
        let start = rest.find("value=\"")? + 7;
        let end = rest[start..].find('"')?;
        Some(rest[start..start + end].to_owned())
    }
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        let jar = Arc::new(Jar::default());
        Browser::with_jar(&app.base, None, jar, None, None)
    }

    /// A browser that sends this `User-Agent` with every request.
    pub fn with_agent(app: &'a TestApp, user_agent: &str) -> Self {
        Browser::with_jar(&app.base, None, Arc::new(Jar::default()), None, Some(user_agent))
    }

    /// A browser of the site at `base` (a spawned server, a proxy in front of some), connecting
    /// from `local`, an address of this machine: the client address that site sees.
    pub fn at(base: &str, local: IpAddr) -> Browser<'static> {
        Browser::with_jar(base, Some(local), Arc::new(Jar::default()), None, None)
    }

    fn with_jar(
        base: &str,
        local: Option<IpAddr>,
        jar: Arc<Jar>,
        page_token: Option<String>,
        user_agent: Option<&str>,
    ) -> Self {
        let mut builder = Client::builder();
        if let Some(user_agent) = user_agent {
            builder = builder.user_agent(user_agent);
        }
        let client = builder
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .local_address(local)
            .build()
            .unwrap();
        Browser {
            base: base.to_owned(),
            jar,
            client,
            page_token: Mutex::new(page_token),
            user_agent: user_agent.map(str::to_owned),
            _app: PhantomData,
        }
    }

    /// The same browser (the same cookies, on the same page) talking to another instance of the app.
    pub fn on<'b>(&self, other: &'b TestApp) -> Browser<'b> {
        let token = self.page_token.lock().unwrap().clone();
        Browser::with_jar(&other.base, None, self.jar.clone(), token, self.user_agent.as_deref())
    }

    /// A second browser holding a copy of this one's cookies (a stolen cookie), on the same page.
    pub fn copy(&self) -> Browser<'a> {
        let url = self.base.parse().unwrap();
        let jar = Arc::new(Jar::default());
        if let Some(cookies) = self.jar.cookies(&url) {
            for cookie in cookies.to_str().unwrap().split("; ") {
                jar.add_cookie_str(cookie, &url);
            }
        }
        let token = self.page_token.lock().unwrap().clone();
        Browser::with_jar(&self.base, None, jar, token, self.user_agent.as_deref())
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().ok()?.split("; ").find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }

    /// Reads the response whole; a page with a form becomes the page this browser is on.
    fn read(&self, response: Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().unwrap_or_default();
        let page = Page { status, headers, body };
        let mut page_token = self.page_token.lock().unwrap();
        if let Some(token) = page.csrf_token() {
            *page_token = Some(token);
        } else if page.set_cookies().iter().any(|c| c.starts_with("flex_csrf=") || c.starts_with("__Host-flex_csrf=")) {
            // a new CSRF cookie (sign-in, sign-out) voids the page's forms: a browser would be
            // on the page it was sent to, which the test gets
            *page_token = None;
        }
        page
    }

    pub fn get(&self, path: &str) -> Page {
        self.read(self.client.get(format!("{}{path}", self.base)).send().expect("GET"))
    }

    /// POSTs a form exactly as given (no token added).
    pub fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.read(self.client.post(format!("{}{path}", self.base)).form(fields).send().expect("POST"))
    }

    /// The CSRF token in the forms of the last page this browser got that had one.
    #[track_caller]
    pub fn token(&self) -> String {
        let token = self.page_token.lock().unwrap().clone();
        token.expect("no page with a form loaded since the CSRF cookie was set: get the form's page first")
    }

    /// POSTs a form with the CSRF token of the page this browser is on, as that page's form would.
    #[track_caller]
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.token();
        let mut all = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all)
    }

    /// POSTs a JSON body with the page's CSRF token in `X-CSRF-Token`, as `static/passkey.js` does.
    #[track_caller]
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Page {
        let token = self.token();
        let request = self.client.post(format!("{}{path}", self.base)).header("X-CSRF-Token", token).json(body);
        self.read(request.send().expect("POST"))
    }

    /// Opens the sign-up page and submits its form.
    pub fn sign_up(&self, fields: &[(&str, &str)]) -> Page {
        self.get("/sign-up");
        self.post("/sign-up", fields)
    }

    /// Opens the sign-in page and submits its form.
    pub fn sign_in(&self, identifier: &str, password: &str) -> Page {
        self.get("/sign-in");
        self.post("/sign-in", &[("identifier", identifier), ("password", password)])
    }
}

impl TestApp {
    /// Waits (up to 15 s) for the `nth` (0-based) email to `to`, and returns its raw data.
    pub fn email_to(&self, to: &str, nth: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails: Vec<_> = self.smtp.mails().into_iter().filter(|m| m.to.iter().any(|t| t == to)).collect();
            if let Some(mail) = mails.get(nth) {
                return mail.data.clone();
            }
            assert!(Instant::now() < deadline, "no email #{nth} to {to}; got {} in all", self.smtp.mails().len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn emails_to(&self, to: &str) -> usize {
        self.smtp.mails().into_iter().filter(|m| m.to.iter().any(|t| t == to)).count()
    }

    /// Waits for the `nth` SMS to `to` and returns its body.
    pub fn sms_to(&self, to: &str, nth: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let bodies: Vec<String> = self
                .sms
                .posts()
                .into_iter()
                .filter(|p| p["to"] == to)
                .map(|p| p["body"].as_str().unwrap_or_default().to_owned())
                .collect();
            if let Some(body) = bodies.get(nth) {
                return body.clone();
            }
            assert!(Instant::now() < deadline, "no SMS #{nth} to {to}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sms_count(&self, to: &str) -> usize {
        self.sms.posts().into_iter().filter(|p| p["to"] == to).count()
    }

    /// The code in the `nth` email to `to`.
    pub fn email_code(&self, to: &str, nth: usize) -> String {
        code_in(&self.email_to(to, nth), 6).expect("a 6-digit code in the email")
    }

    pub fn sms_code(&self, to: &str, nth: usize) -> String {
        code_in(&self.sms_to(to, nth), 6).expect("a 6-digit code in the SMS")
    }
}

/// The first standalone run of exactly `len` digits.
pub fn code_in(text: &str, len: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == len {
                return Some(text[start..i].to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}
