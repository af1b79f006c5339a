//! Scale-out: two real `flex-user serve` processes that share nothing but one PostgreSQL database
//! and the secret key, behind a real nginx that deals requests out round-robin (no sticky
//! sessions), with `X-Upstream` on every answer naming the instance that gave it. Through nginx
//! only, one person signs up, verifies, signs out and in, and resets the password; every request
//! lands on the other instance than the one before, so the session and the CSRF token made by
//! one instance are honoured by the other at every step. Then:
//!
//! - a sign-in throttle set through one instance holds on the other;
//! - the per-IP limit (`FLEX_USER_IP_RATE_LIMIT`, the client read from nginx's `X-Forwarded-For`)
//!   lets through what one instance would, not twice that;
//! - each message went out exactly once, though both instances run a delivery worker.
//!
//! Each client connects from its own loopback address (127.0.0.2, …), so nginx sees a distinct
//! client for each, and the instances see nginx (127.0.0.1, the trusted proxy).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::app::{Browser, Page};
use crate::common::flows::{
    NEW_PASSWORD, PASSWORD, assert_signed_out, assert_status, digit_runs, is_verified, plain_text, row, sole_code,
};
use crate::common::server::{Server, free_port};
use crate::common::sinks::{HttpSink, SmtpSink};
use crate::common::{Backend, TestDb};
use diesel::prelude::*;
use flex_user::db::schema::outbox;
use flex_user::db::{self, Pool};
use reqwest::StatusCode;

const INSTANCES: usize = 2;
const SECRET: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
/// POSTs per minute per client: above the person's ten POSTs, and one token back only every
/// 5 s, far longer than the burst that tests it takes.
const IP_LIMIT: usize = 12;
const EMAIL: &str = "scale@example.org";
const PHONE: &str = "+12025550123";

#[test]
fn two_instances_behind_nginx() {
    let Some(nginx) = nginx_binary() else { return };
    let Some(db) = TestDb::new(Backend::Postgres) else { return };
    let d = Deployment::start(&db, &nginx);

    // the health check answers through the proxy, from each instance
    let probe = Browser::at(&d.url, client(2));
    let checks: Vec<Page> = (0..INSTANCES).map(|_| probe.get("/healthz")).collect();
    for page in &checks {
        assert_status(page, StatusCode::OK);
        assert_eq!(page.body, "ok");
    }
    d.assert_alternates(&upstreams(&checks));

    let codes = sign_up_verify_sign_in_and_reset(&d);
    throttle_holds_across_instances(&d);
    ip_limit_holds_across_instances(&d);
    every_message_went_out_once(&d, &codes);
}

/// Sign up with an email and a phone, verify both, sign out, sign in, reset the password, sign
/// in with the new one: every response from the other instance than the one before. Returns
/// the codes the sinks got.
fn sign_up_verify_sign_in_and_reset(d: &Deployment) -> Vec<String> {
    let b = Browser::at(&d.url, client(3));
    let mut trail = Vec::new();
    let mut step = |page: Page| {
        trail.push(upstream(&page));
        page
    };

    step(b.get("/sign-up"));
    step(b.post("/sign-up", &[("username", ""), ("email", EMAIL), ("phone", PHONE), ("password", PASSWORD)]))
        .assert_redirect("/account");
    let email_code = sole_code(&plain_text(&d.email_to(EMAIL, 0)), 6);
    let sms_code = d.sms_code(PHONE, 0);

    step(b.get("/verify/email"));
    step(b.post("/verify/email", &[("code", &email_code)])).assert_redirect("/account");
    step(b.get("/verify/phone"));
    step(b.post("/verify/phone", &[("code", &sms_code)])).assert_redirect("/account");
    let account = step(b.get("/account"));
    assert_status(&account, StatusCode::OK);
    assert!(is_verified(row(&account.body, "Email")) && is_verified(row(&account.body, "Phone")));

    step(b.post("/sign-out", &[])).assert_redirect("/");
    assert_signed_out(&step(b.get("/account")));
    step(b.get("/sign-in"));
    step(b.post("/sign-in", &[("identifier", EMAIL), ("password", PASSWORD)])).assert_redirect("/account");
    assert_status(&step(b.get("/account")), StatusCode::OK);

    step(b.get("/password-reset"));
    step(b.post("/password-reset", &[("identifier", EMAIL)])).assert_redirect("/password-reset/verify");
    let reset_code = sole_code(&plain_text(&d.email_to(EMAIL, 1)), 6);
    step(b.get("/password-reset/verify"));
    step(b.post("/password-reset/verify", &[("code", &reset_code)])).assert_redirect("/password-reset/new");
    step(b.get("/password-reset/new"));
    step(b.post("/password-reset/new", &[("new_password", NEW_PASSWORD)])).assert_redirect("/sign-in");
    // the reset ended the session, on every instance
    assert_signed_out(&step(b.get("/account")));
    step(b.get("/sign-in"));
    step(b.post("/sign-in", &[("identifier", EMAIL), ("password", NEW_PASSWORD)])).assert_redirect("/account");
    assert_status(&step(b.get("/account")), StatusCode::OK);

    d.assert_alternates(&trail);
    vec![email_code, sms_code, reset_code]
}

/// Three wrong passwords (waiting out each window) leave a 4 s window: the next attempt, on the
/// other instance, is refused, and so is the right password on the first one.
fn throttle_holds_across_instances(d: &Deployment) {
    let b = Browser::at(&d.url, client(4));
    let wrong = [("identifier", EMAIL), ("password", "not the password at all")];
    let mut pages = vec![b.get("/sign-in")];
    for window in [1, 2, 4] {
        let failed = b.post("/sign-in", &wrong);
        assert_status(&failed, StatusCode::UNAUTHORIZED);
        pages.push(failed);
        if window < 4 {
            std::thread::sleep(Duration::from_millis(window * 1000 + 200));
        }
    }
    let refused = b.post("/sign-in", &wrong);
    let seconds: u64 = refused.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(0);
    assert_status(&refused, StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=4).contains(&seconds), "Retry-After {seconds} within the 4 s window");
    let right = b.post("/sign-in", &[("identifier", EMAIL), ("password", NEW_PASSWORD)]);
    assert_status(&right, StatusCode::TOO_MANY_REQUESTS);
    pages.extend([refused, right]);
    d.assert_alternates(&upstreams(&pages));
}

/// `IP_LIMIT` + 3 POSTs from one client, dealt over both instances: exactly `IP_LIMIT` get past
/// the limit (to the CSRF check: 403, as they carry no token), the rest get 429; another
/// client's bucket is its own.
fn ip_limit_holds_across_instances(d: &Deployment) {
    let b = Browser::at(&d.url, client(5));
    let pages: Vec<Page> = (0..IP_LIMIT + 3).map(|_| b.post_raw("/sign-in", &[("identifier", EMAIL)])).collect();
    let statuses: Vec<StatusCode> = pages.iter().map(|p| p.status).collect();
    let mut expected = vec![StatusCode::FORBIDDEN; IP_LIMIT];
    expected.resize(IP_LIMIT + 3, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses, expected, "the per-IP limit is one bucket for the deployment");
    for refused in &pages[IP_LIMIT..] {
        assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    }
    d.assert_alternates(&upstreams(&pages));

    let other = Browser::at(&d.url, client(6));
    assert_status(&other.post_raw("/sign-in", &[("identifier", EMAIL)]), StatusCode::FORBIDDEN);
}

/// The sinks got each message once: per recipient, as many as the outbox queued, and no code
/// twice; none came later. Each outbox row was claimed once, by one of the two workers.
fn every_message_went_out_once(d: &Deployment, codes: &[String]) {
    // the sinks got them all during the flow; the workers record each delivery just after it
    let rows = wait_for("every outbox row finished", || {
        let rows: Vec<(String, String, i32)> = outbox::table
            .select((outbox::recipient, outbox::status, outbox::attempts))
            .load(&mut *d.pool.get().unwrap())
            .unwrap();
        rows.iter().all(|r| r.1 != "pending").then_some(rows)
    });
    let queued = |to: &str| rows.iter().filter(|r| r.0 == to).count();
    assert_eq!(
        (queued(EMAIL), queued(PHONE), rows.len()),
        (3, 1, 4),
        "two codes and the reset's notice by email, one code by SMS: {rows:?}"
    );
    for (to, status, attempts) in &rows {
        assert_eq!((status.as_str(), *attempts), ("sent", 1), "the message to {to}: sent at the first claim");
    }

    // a second delivery would come within a poll (1 s) of either worker: wait a few
    std::thread::sleep(Duration::from_secs(3));
    let mut per_recipient: HashMap<String, usize> = HashMap::new();
    let mut per_code: HashMap<String, usize> = HashMap::new();
    let mut notices = 0;
    for mail in d.smtp.mails() {
        for to in &mail.to {
            *per_recipient.entry(to.clone()).or_default() += 1;
        }
        let text = plain_text(&mail.data);
        if digit_runs(&text).iter().any(|r| r.len() >= 6) {
            *per_code.entry(sole_code(&text, 6)).or_default() += 1;
        } else {
            assert!(text.contains("was reset"), "the one message without a code is the reset's notice: {text}");
            notices += 1;
        }
    }
    assert_eq!(notices, 1);
    for post in d.sms.posts() {
        *per_recipient.entry(post["to"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        *per_code.entry(sms_text_code(post["body"].as_str().unwrap_or_default())).or_default() += 1;
    }
    assert_eq!(per_recipient, HashMap::from([(EMAIL.to_owned(), 3), (PHONE.to_owned(), 1)]));
    assert_eq!(per_code, codes.iter().map(|c| (c.clone(), 1)).collect::<HashMap<_, _>>());
}

/// The code of an SMS, checked against its WebOTP line (the host of the public URL: nginx's).
fn sms_text_code(sms: &str) -> String {
    let (text, webotp) = sms.trim_end().rsplit_once('\n').expect("a WebOTP line");
    let code = sole_code(text, 6);
    assert_eq!(webotp, format!("@127.0.0.1 #{code}"));
    code
}

/// The instance that answered, as nginx names it.
fn upstream(page: &Page) -> String {
    page.header("x-upstream").expect("nginx names the instance that answered").to_owned()
}

fn upstreams(pages: &[Page]) -> Vec<String> {
    pages.iter().map(upstream).collect()
}

/// A test client's own address, 127.0.0.`n` (all of 127/8 is this machine; 127.0.0.1 is nginx).
fn client(n: u8) -> IpAddr {
    assert!(n > 1);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

// ---------------------------------------------------------------------------------------------
// the deployment

struct Deployment {
    /// nginx, where every request goes.
    url: String,
    /// Each instance's address, as nginx's `X-Upstream` names it.
    instances: Vec<String>,
    smtp: SmtpSink,
    sms: HttpSink,
    /// The test's own connection to the database.
    pool: Pool,
    /// Stopped before the instances, the folder last (the fields' order).
    _nginx: Nginx,
    servers: Vec<Server>,
    dir: tempfile::TempDir,
}

impl Deployment {
    fn start(db: &TestDb, nginx: &Path) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers drop root for `nobody` and must reach their temp folders in here
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (smtp, sms) = (SmtpSink::start(), HttpSink::start());
        let url = format!("http://127.0.0.1:{}", free_port());
        let instances: Vec<String> = (0..INSTANCES).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let (database, smtp_url, sms_url, ip_limit) = (db.env_url(), smtp.url(), sms.url(), IP_LIMIT.to_string());
        // one after the other (each is waited for until it serves): the first migrates the database
        let servers = instances
            .iter()
            .enumerate()
            .map(|(n, bind)| {
                Server::start(
                    &[
                        ("DATABASE_URL", database.as_str()),
                        ("FLEX_USER_BIND", bind),
                        ("FLEX_USER_PUBLIC_URL", &url),
                        ("FLEX_USER_SECRET_KEY", SECRET),
                        ("FLEX_USER_TRUSTED_PROXIES", "127.0.0.1"),
                        ("FLEX_USER_IP_RATE_LIMIT", &ip_limit),
                        ("FLEX_USER_ARGON2_MEMORY_KIB", "256"),
                        ("FLEX_USER_ARGON2_ITERATIONS", "1"),
                        // the reset's code follows the sign-up's at once
                        ("FLEX_USER_OTP_RESEND_COOLDOWN", "0"),
                        ("FLEX_USER_EMAIL_BACKEND", "smtp"),
                        ("FLEX_USER_SMTP_URL", &smtp_url),
                        ("FLEX_USER_SMS_BACKEND", "webhook"),
                        ("FLEX_USER_SMS_WEBHOOK_URL", &sms_url),
                        ("RUST_LOG", "info"),
                    ],
                    &dir.path().join(format!("server-{n}.log")),
                )
            })
            .collect();
        let nginx = Nginx::start(nginx, dir.path(), &url, &instances);
        let pool = db::connect(&db.url, 2).expect("the test's own connection");
        Deployment { url, instances, smtp, sms, pool, _nginx: nginx, servers, dir }
    }

    /// Each of a client's consecutive responses came from an instance, never from the one of
    /// the response before.
    #[track_caller]
    fn assert_alternates(&self, upstreams: &[String]) {
        for upstream in upstreams {
            assert!(self.instances.contains(upstream), "{upstream} is not one of {:?}", self.instances);
        }
        assert!(upstreams.windows(2).all(|w| w[0] != w[1]), "consecutive requests on one instance: {upstreams:?}");
        let distinct = upstreams.iter().collect::<BTreeSet<_>>().len();
        assert_eq!(distinct, INSTANCES.min(upstreams.len()), "{upstreams:?}");
    }

    /// Waits (15 s at most) for the `nth` email to `to`.
    fn email_to(&self, to: &str, nth: usize) -> String {
        wait_for(&format!("email #{nth} to {to}"), || {
            self.smtp.mails().into_iter().filter(|m| m.to.iter().any(|t| t == to)).nth(nth).map(|m| m.data)
        })
    }

    /// Waits for the `nth` SMS to `to` and returns its code.
    fn sms_code(&self, to: &str, nth: usize) -> String {
        let body = wait_for(&format!("SMS #{nth} to {to}"), || {
            let mut to_them = self.sms.posts().into_iter().filter(|p| p["to"] == to);
            to_them.nth(nth).map(|p| p["body"].as_str().unwrap_or_default().to_owned())
        });
        sms_text_code(&body)
    }
}

impl Drop for Deployment {
    /// On a failure, what the processes logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = (0..self.servers.len()).map(|n| format!("server-{n}.log").into()).collect();
            logs.push("error.log".into());
            for log in logs {
                let text = std::fs::read_to_string(self.dir.path().join(&log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- {}\n{}", log.display(), lines[lines.len().saturating_sub(30)..].join("\n"));
            }
        }
    }
}

fn wait_for<T>(what: &str, found: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "no {what} after 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// nginx

/// nginx, or `None` after a notice when it is not installed and this is not CI.
fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nginx"))
        .find(|file| file.is_file());
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "nginx is required in CI for the scale-out test (apt-get install -y nginx; .ci/run does)"
        );
        eprintln!("NOTICE: skipping the scale-out test: nginx is not installed");
    }
    found
}

/// nginx in the foreground (`daemon off`, a master and one worker), everything it writes in
/// `dir`; stopped (SIGTERM to the master, which stops its worker) when dropped.
struct Nginx {
    child: Child,
}

impl Nginx {
    fn start(binary: &Path, dir: &Path, url: &str, instances: &[String]) -> Nginx {
        let listen = url.strip_prefix("http://").unwrap();
        let d = dir.display();
        let servers: String = instances.iter().map(|i| format!("        server {i};\n")).collect();
        // one worker: round-robin state is per worker, and one worker alternates strictly
        let conf = format!(
            "daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream flex_user {{
{servers}    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://flex_user;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        // listening once a connection is accepted
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(listen).is_err() {
            let exited = child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx did not start ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { child }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL would leave the worker behind, still listening
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
