//! Faults: the real `flex-user serve` binary under a sign-up / verify / password-reset load from
//! a few threads, killed with SIGKILL at random moments and restarted on the same database, on a
//! fresh SQLite file and on a fresh PostgreSQL database. Then the database is checked directly:
//!
//! - no user without a password hash or without any identifier; no identifier twice;
//! - every token belongs to an address its user has, and every address has its token;
//! - no message lost: every request the client saw succeed left its message in the outbox, the
//!   outbox empties after the last restart, and every row marked sent reached its sink;
//! - no message doubled, except one a kill hit while it was being delivered (its lease);
//! - no half-applied reset: after a reset the client saw complete, the new password signs in and
//!   the old one does not; after one cut off by a kill, exactly one of the two works.
//!
//! A killed server's leases would hold its in-flight messages for two minutes; before each
//! restart the test moves those leases into the past, which is what two minutes of waiting
//! would do, and remembers which rows they were.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::common::app::Page;
use crate::common::app::code_in;
use crate::common::flows::mail_code;
use crate::common::server::Server;
use crate::common::sinks::{HttpSink, SmtpSink};
use crate::common::{Backend, TestDb};
use diesel::prelude::*;
use flex_user::Accounts;
use flex_user::db::schema::{otp_tokens, outbox, users};
use flex_user::db::{self, Pool};
use rand::RngExt as _;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::cookie::Jar;

/// Threads driving the load (the machine is shared: keep it modest).
const THREADS: usize = 4;
/// Digits in a code: long enough that two messages to one address never share a code by chance,
/// so a code seen twice in a sink is one message delivered twice.
const CODE_LENGTH: usize = 8;
const SECRET: &str = "abababababababababababababababababababababababababababababababab";

#[test]
fn kill_9_under_load_on_sqlite() {
    let _turn = one_at_a_time();
    run(&TestDb::new(Backend::Sqlite).unwrap());
}

#[test]
fn kill_9_under_load_on_postgres() {
    let _turn = one_at_a_time();
    if let Some(db) = TestDb::new(Backend::Postgres) {
        run(&db);
    }
}

/// The two runs take turns: each is a server and four clients on a shared machine.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// the server process

/// Everything the load threads and the supervisor share.
struct Harness<'a> {
    db: &'a TestDb,
    log_dir: tempfile::TempDir,
    smtp: SmtpSink,
    sms: HttpSink,
    /// The URL of the running server; `None` while it is down.
    base: RwLock<Option<String>>,
    /// Set when the load should wind down, or when something went wrong.
    stop: AtomicBool,
    problems: Mutex<Vec<String>>,
    /// Outbox rows whose lease a killed server held (in flight at the kill).
    rewound: Mutex<HashSet<i64>>,
    restarts: Mutex<usize>,
}

impl Harness<'_> {
    fn start(&self) -> Server {
        let n = {
            let mut restarts = self.restarts.lock().unwrap();
            *restarts += 1;
            *restarts
        };
        let (smtp, sms) = (self.smtp.url(), self.sms.url());
        let server = Server::start(
            &[
                ("DATABASE_URL", self.db.env_url().as_str()),
                ("FLEX_USER_BIND", "127.0.0.1:0"),
                ("FLEX_USER_SECRET_KEY", SECRET),
                ("FLEX_USER_ARGON2_MEMORY_KIB", "256"),
                ("FLEX_USER_ARGON2_ITERATIONS", "1"),
                ("FLEX_USER_IP_RATE_LIMIT", "0"),
                ("FLEX_USER_EMAIL_BACKEND", "smtp"),
                ("FLEX_USER_SMTP_URL", smtp.as_str()),
                ("FLEX_USER_SMS_BACKEND", "webhook"),
                ("FLEX_USER_SMS_WEBHOOK_URL", sms.as_str()),
                ("FLEX_USER_OTP_LENGTH", "8"),
                // every step may ask for a new code at once, as often as it needs
                ("FLEX_USER_OTP_RESEND_COOLDOWN", "0"),
                ("FLEX_USER_OTP_DAILY_LIMIT", "10000"),
                ("FLEX_USER_SMS_HOURLY_LIMIT", "100000"),
                ("RUST_LOG", "info"),
            ],
            &self.log_dir.path().join(format!("server-{n}.log")),
        );
        *self.base.write().unwrap() = Some(server.url.clone());
        server
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_dir.path().join(format!("server-{n}.log"))).unwrap_or_default()
    }

    /// SIGKILL, then what a long enough wait would do to the dead server's leases.
    fn kill(&self, server: Server, pool: Option<&Pool>) {
        *self.base.write().unwrap() = None;
        drop(server);
        if let Some(pool) = pool {
            let mut conn = pool.get().unwrap();
            let now = chrono::Utc::now().naive_utc();
            let held: Vec<i64> = outbox::table
                .filter(outbox::status.eq("pending"))
                .filter(outbox::lease_until.gt(now))
                .select(outbox::id)
                .load(&mut *conn)
                .unwrap();
            diesel::update(outbox::table.filter(outbox::id.eq_any(&held)))
                .set(outbox::lease_until.eq(now - chrono::Duration::seconds(1)))
                .execute(&mut *conn)
                .unwrap();
            self.rewound.lock().unwrap().extend(held);
        }
    }

    fn problem(&self, text: String) {
        eprintln!("PROBLEM: {text}");
        self.problems.lock().unwrap().push(text);
        self.stop.store(true, Ordering::SeqCst);
    }

    fn failed(&self) -> bool {
        !self.problems.lock().unwrap().is_empty()
    }

    /// Raw emails delivered to `to`, in order.
    fn mails_to(&self, to: &str) -> Vec<String> {
        self.smtp.mails().into_iter().filter(|m| m.to.iter().any(|t| t == to)).map(|m| m.data).collect()
    }

    /// The code of the newest email to `to` once more than `seen` have arrived (10 s at most).
    fn code_after(&self, to: &str, seen: usize) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !self.failed() {
            let mails = self.mails_to(to);
            if mails.len() > seen {
                return mail_code(mails.last().unwrap(), CODE_LENGTH);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// a client

/// The load gives up (something was recorded as a problem).
struct Stopped;

/// A POST that got no answer: it may or may not have been applied.
struct Cut;

/// A browser of the load: keeps cookies, never follows redirects, follows the server to
/// whatever port it has after a restart (cookies are not kept per port).
struct Visitor<'h, 'a> {
    h: &'h Harness<'a>,
    client: Client,
}

impl<'h, 'a> Visitor<'h, 'a> {
    fn new(h: &'h Harness<'a>) -> Self {
        let client = Client::builder()
            .cookie_provider(Arc::new(Jar::default()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Visitor { h, client }
    }

    /// Waits a moment for the server to be back; gives up after 30 s or on a problem.
    fn pause(&self, since: Instant) -> Result<(), Stopped> {
        if self.h.failed() {
            return Err(Stopped);
        }
        if since.elapsed() > Duration::from_secs(30) {
            self.h.problem("the server did not answer for 30 s".into());
            return Err(Stopped);
        }
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    }

    /// One request. `Ok(None)`: not sent (no server to connect to). `Err(Cut)`: sent, but no
    /// answer came back.
    fn send(&self, path: &str, form: Option<&[(&str, &str)]>) -> Result<Option<Page>, Cut> {
        let Some(base) = self.h.base.read().unwrap().clone() else { return Ok(None) };
        let url = format!("{base}{path}");
        let request = match form {
            Some(fields) => self.client.post(url).form(fields),
            None => self.client.get(url),
        };
        let response = match request.send() {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Ok(None),
            Err(_) => return Err(Cut),
        };
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response.text().map_err(|_| Cut)?;
        if status.is_server_error() {
            self.h.problem(format!("{} {path}: {status}: {body}", if form.is_some() { "POST" } else { "GET" }));
        }
        Ok(Some(Page { status, headers, body }))
    }

    fn get(&self, path: &str) -> Result<Page, Stopped> {
        let since = Instant::now();
        loop {
            if let Ok(Some(page)) = self.send(path, None) {
                return Ok(page);
            }
            self.pause(since)?;
        }
    }

    /// POSTs with a CSRF token from a form of the same server; retried while it cannot be
    /// sent at all. `Ok(Err(Cut))`: it went out and its answer was lost.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Result<Result<Page, Cut>, Stopped> {
        let since = Instant::now();
        loop {
            let token = self.get("/sign-in")?.csrf_token().expect("a form with a csrf_token");
            let mut all = vec![("csrf_token", token.as_str())];
            all.extend_from_slice(fields);
            match self.send(path, Some(&all)) {
                Ok(Some(page)) => return Ok(Ok(page)),
                Ok(None) => self.pause(since)?,
                Err(Cut) => return Ok(Err(Cut)),
            }
        }
    }

    /// POSTs until an answer comes back (for requests that may safely be repeated).
    fn post_until_answered(&self, path: &str, fields: &[(&str, &str)]) -> Result<Page, Stopped> {
        let since = Instant::now();
        loop {
            if let Ok(page) = self.post(path, fields)? {
                return Ok(page);
            }
            self.pause(since)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the load

/// What one simulated person did, as the client saw it.
#[derive(Debug, Clone)]
struct Person {
    /// "thread n", unique in the run.
    id: String,
    username: String,
    email: String,
    phone: Option<String>,
    /// Every password the account had, the current one last.
    passwords: Vec<String>,
    /// The email was proven through `/verify/email` (before any reset).
    verified: bool,
    /// A reset completed (seen, or found applied after a cut).
    reset: bool,
    /// Before the first reset completed, an attempt proved its code (or may have: its answer
    /// was cut off) and was then abandoned while the email was still unverified.
    abandoned_proof: bool,
    /// Code messages to the email that requests the client saw succeed must have queued, and
    /// how many more the requests cut off by a kill may have.
    codes_confirmed: usize,
    codes_cut: usize,
}

impl Person {
    fn new(thread: usize, n: usize) -> Person {
        Person {
            id: format!("{thread} {n}"),
            username: format!("t{thread}p{n}"),
            email: format!("t{thread}p{n}@example.org"),
            phone: (n % 3 != 2).then(|| format!("+1202555{thread}{:03}", n % 1000)),
            passwords: vec![format!("first passphrase {thread} {n}")],
            verified: false,
            reset: false,
            abandoned_proof: false,
            codes_confirmed: 0,
            codes_cut: 0,
        }
    }

    fn password(&self) -> &str {
        self.passwords.last().unwrap()
    }
}

/// How a step went.
fn unexpected(h: &Harness, who: &Person, step: &str, page: &Page) -> Stopped {
    h.problem(format!(
        "{}: {step}: unexpected {} (location {:?}): {}",
        who.username,
        page.status,
        page.location(),
        page.body
    ));
    Stopped
}

/// One load thread: people one after another until told to stop.
fn load(h: &Harness, accounts: &Accounts, thread: usize) -> Vec<Person> {
    let mut people = Vec::new();
    for n in 0.. {
        if h.stop.load(Ordering::SeqCst) {
            break;
        }
        let mut person = Person::new(thread, n);
        let done = life(h, accounts, &mut person, n);
        people.push(person);
        if done.is_err() {
            break;
        }
    }
    people
}

/// Sign up, maybe verify the email, reset the password once or twice, sign in.
fn life(h: &Harness, accounts: &Accounts, p: &mut Person, n: usize) -> Result<(), Stopped> {
    let browser = Visitor::new(h);
    sign_up(h, &browser, p)?;
    if n.is_multiple_of(2) {
        verify_email(h, accounts, &browser, p)?;
    }
    for round in 0..(1 + n % 4 / 3) {
        reset_password(h, accounts, p, round)?;
    }
    // A sign-in cut off by a kill has claimed its throttle turn and counts as a failure (its
    // outcome is unknown), so its retry may meet that window: wait it out, as a person would.
    for _ in 0..3 {
        let page =
            browser.post_until_answered("/sign-in", &[("identifier", &p.username), ("password", p.password())])?;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = page.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(1);
            std::thread::sleep(Duration::from_secs(wait.min(8)));
            continue;
        }
        if page.location() != Some("/account") {
            return Err(unexpected(h, p, "sign-in with the current password", &page));
        }
        return Ok(());
    }
    Err(unexpected(h, p, "sign-in with the current password, still throttled", &browser.get("/sign-in")?))
}

fn sign_up(h: &Harness, browser: &Visitor, p: &mut Person) -> Result<(), Stopped> {
    let mut fields =
        vec![("username", p.username.clone()), ("email", p.email.clone()), ("password", p.password().to_owned())];
    fields.extend(p.phone.clone().map(|phone| ("phone", phone)));
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cut = false;
    let since = Instant::now();
    loop {
        match browser.post("/sign-up", &fields)? {
            Ok(page) if page.status == StatusCode::SEE_OTHER => break,
            // a sign-up cut off by a kill that had committed: the account is there; sign in
            Ok(page)
                if cut && page.status == StatusCode::UNPROCESSABLE_ENTITY && page.body.contains("already exists") =>
            {
                let page =
                    browser.post_until_answered("/sign-in", &[("identifier", &p.email), ("password", p.password())])?;
                if page.location() != Some("/account") {
                    return Err(unexpected(h, p, "sign-in after a cut sign-up", &page));
                }
                break;
            }
            Ok(page) => return Err(unexpected(h, p, "sign-up", &page)),
            Err(Cut) => {
                cut = true;
                browser.pause(since)?;
            }
        }
    }
    // the sign-up queued one code to the email (and one to the phone), committed or not at all
    p.codes_confirmed += 1;
    Ok(())
}

/// Asks for a new email code from the verify page.
fn resend(h: &Harness, browser: &Visitor, p: &mut Person) -> Result<(), Stopped> {
    match browser.post("/verify/email/send", &[])? {
        Ok(page) if page.location() == Some("/verify/email") => p.codes_confirmed += 1,
        Ok(page) => return Err(unexpected(h, p, "resend", &page)),
        Err(Cut) => p.codes_cut += 1,
    }
    Ok(())
}

fn verify_email(h: &Harness, accounts: &Accounts, browser: &Visitor, p: &mut Person) -> Result<(), Stopped> {
    let mut seen = 0;
    for _ in 0..10 {
        let Some(code) = h.code_after(&p.email, seen) else {
            if h.failed() {
                return Err(Stopped);
            }
            seen = h.mails_to(&p.email).len();
            resend(h, browser, p)?;
            continue;
        };
        let page = browser.post_until_answered("/verify/email", &[("code", &code)])?;
        match page.status {
            // verified now, or by the same request before its answer was cut off
            StatusCode::SEE_OTHER if page.location() == Some("/account") => {
                let user = find(accounts, &p.email);
                let token = accounts.email_token(user.id).unwrap();
                if !token.is_some_and(|t| t.state.verified) {
                    h.problem(format!("{}: /verify/email answered 303 but the email is not verified", p.username));
                    return Err(Stopped);
                }
                p.verified = true;
                return Ok(());
            }
            // a stale code (a message redelivered after a kill came last): wait out the backoff,
            // ask for a new one
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::TOO_MANY_REQUESTS => {
                std::thread::sleep(retry_after(&page));
                seen = h.mails_to(&p.email).len();
                resend(h, browser, p)?;
            }
            _ => return Err(unexpected(h, p, "verify", &page)),
        }
    }
    h.problem(format!("{}: could not verify the email in 10 tries", p.username));
    Err(Stopped)
}

fn retry_after(page: &Page) -> Duration {
    let secs: u64 = page.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(1);
    Duration::from_millis(secs * 1000 + 100)
}

fn find(accounts: &Accounts, email: &str) -> flex_user::User {
    let identifier = flex_user::domain::Identifier::infer(email, None).unwrap();
    accounts.find_user(&identifier).unwrap().expect("the account")
}

/// Which of `passwords` sign the person in now, straight from the database.
fn working(accounts: &Accounts, email: &str, passwords: &[&str]) -> Vec<bool> {
    passwords.iter().map(|pw| accounts.authenticate(email, pw).unwrap().is_some()).collect()
}

fn reset_password(h: &Harness, accounts: &Accounts, p: &mut Person, round: usize) -> Result<(), Stopped> {
    let old = p.password().to_owned();
    let new = format!("reset passphrase {} {round}", p.id);
    for attempt in 0..10 {
        // each attempt from a fresh browser: the reset lives in that session
        let browser = Visitor::new(h);
        let identifier = if attempt % 2 == 0 { p.username.clone() } else { p.email.clone() };
        let seen = h.mails_to(&p.email).len();
        match browser.post("/password-reset", &[("identifier", &identifier)])? {
            Ok(page) if page.location() == Some("/password-reset/verify") => p.codes_confirmed += 1,
            Ok(page) => return Err(unexpected(h, p, "reset request", &page)),
            Err(Cut) => {
                p.codes_cut += 1;
                continue;
            }
        }
        let Some(code) = h.code_after(&p.email, seen) else {
            if h.failed() {
                return Err(Stopped);
            }
            continue;
        };
        let unproven = !p.verified && !p.reset;
        match browser.post("/password-reset/verify", &[("code", &code)])? {
            Ok(page) if page.location() == Some("/password-reset/new") => {}
            Ok(page) if matches!(page.status, StatusCode::UNPROCESSABLE_ENTITY | StatusCode::TOO_MANY_REQUESTS) => {
                std::thread::sleep(retry_after(&page));
                continue;
            }
            Ok(page) => return Err(unexpected(h, p, "reset code", &page)),
            Err(Cut) => {
                p.abandoned_proof |= unproven;
                continue;
            }
        }
        let outcome = browser.post("/password-reset/new", &[("new_password", &new)])?;
        let applied = match outcome {
            Ok(page) if page.location() == Some("/sign-in") => {
                // seen complete: the new password works and the old one does not
                let works = working(accounts, &p.email, &[&new, &old]);
                if works != [true, false] {
                    h.problem(format!("{}: reset seen complete, but [new, old] work: {works:?}", p.username));
                    return Err(Stopped);
                }
                true
            }
            Ok(page) => return Err(unexpected(h, p, "new password", &page)),
            Err(Cut) => {
                // cut off: all or nothing
                let works = working(accounts, &p.email, &[&new, &old]);
                if works != [true, false] && works != [false, true] {
                    h.problem(format!("{}: reset cut off, and [new, old] work: {works:?}", p.username));
                    return Err(Stopped);
                }
                works[0]
            }
        };
        if applied {
            p.passwords.push(new);
            p.reset = true;
            return Ok(());
        }
        p.abandoned_proof |= unproven;
    }
    h.problem(format!("{}: could not reset the password in 10 tries", p.username));
    Err(Stopped)
}

// ---------------------------------------------------------------------------------------------
// the run

fn run(db: &TestDb) {
    let h = Harness {
        db,
        log_dir: tempfile::tempdir().unwrap(),
        smtp: SmtpSink::start(),
        sms: HttpSink::start(),
        base: RwLock::new(None),
        stop: AtomicBool::new(false),
        problems: Mutex::new(Vec::new()),
        rewound: Mutex::new(HashSet::new()),
        restarts: Mutex::new(0),
    };
    let started = Instant::now();
    let mut server = h.start();
    // the server migrated the fresh database; now the test may open it too
    let probe = Visitor::new(&h);
    assert_eq!(probe.get("/healthz").unwrap_or_else(|_| panic!("no health")).status, StatusCode::OK);
    let pool = db::connect(&db.url, 4).expect("the test's own connections");
    let (accounts, _clock) = db.accounts(&[]);

    let mut rng = rand::rng();
    let kills = rng.random_range(4..=6);
    let delays: Vec<u64> = (0..kills).map(|_| rng.random_range(1500..4500)).collect();
    eprintln!("faults on {}: {kills} kills after {delays:?} ms", db.env_url().split(':').next().unwrap());

    let (people, server) = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (h, accounts) = (&h, &accounts);
                s.spawn(move || load(h, accounts, t))
            })
            .collect();
        for delay in &delays {
            std::thread::sleep(Duration::from_millis(*delay));
            if h.failed() {
                break;
            }
            h.kill(server, Some(&pool));
            // down for a moment: requests in that time find nobody listening
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            server = h.start();
        }
        std::thread::sleep(Duration::from_secs(2));
        h.stop.store(true, Ordering::SeqCst);
        let people: Vec<Person> = threads.into_iter().flat_map(|t| t.join().expect("a load thread panicked")).collect();
        (people, server)
    });
    let problems = h.problems.lock().unwrap().clone();
    if !problems.is_empty() {
        let restarts = *h.restarts.lock().unwrap();
        let logs: String = (1..=restarts).map(|n| format!("--- server {n}\n{}", tail(&h.log(n), 40))).collect();
        panic!("{} problem(s) under load:\n{}\n{logs}", problems.len(), problems.join("\n"));
    }

    // The last restart delivers what is left: nothing stays pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending: i64 =
            outbox::table.filter(outbox::status.eq("pending")).count().get_result(&mut *pool.get().unwrap()).unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} messages still pending 30 s after the last restart");
        std::thread::sleep(Duration::from_millis(200));
    }
    h.kill(server, None);
    eprintln!(
        "faults: {} people, {} restarts, {} rows in flight at a kill, {:.1} s",
        people.len(),
        *h.restarts.lock().unwrap() - 1,
        h.rewound.lock().unwrap().len(),
        started.elapsed().as_secs_f64()
    );
    assert!(people.len() >= THREADS, "the load got somewhere: {} people", people.len());

    check_users(&pool, &accounts, &people);
    check_outbox(&h, &pool, &people);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n") + "\n"
}

// ---------------------------------------------------------------------------------------------
// the invariants, read from the database

type UserRow =
    (i64, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, String, Option<String>);

fn check_users(pool: &Pool, accounts: &Accounts, people: &[Person]) {
    let mut conn = pool.get().unwrap();
    let rows: Vec<UserRow> = users::table
        .select((
            users::id,
            users::username,
            users::username_key,
            users::email,
            users::email_key,
            users::phone,
            users::password,
            users::username_skeleton,
        ))
        .load(&mut *conn)
        .unwrap();
    let mut seen: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut addresses: HashMap<(i64, &str), String> = HashMap::new();
    for (id, username, username_key, email, email_key, phone, password, skeleton) in &rows {
        assert!(password.starts_with("$argon2"), "user {id} has no password hash: {password:?}");
        assert!(username.is_some() || email.is_some() || phone.is_some(), "user {id} has no identifier");
        assert_eq!(username.is_some(), username_key.is_some(), "user {id}: username without its key");
        assert_eq!(email.is_some(), email_key.is_some(), "user {id}: email without its key");
        for (kind, value) in
            [("username", username_key), ("email", email_key), ("phone", phone), ("skeleton", skeleton)]
        {
            if let Some(value) = value {
                assert!(seen.entry(kind).or_default().insert(value.clone()), "{kind} {value:?} twice");
            }
        }
        if let Some(email) = email {
            addresses.insert((*id, "email"), email.clone());
        }
        if let Some(phone) = phone {
            addresses.insert((*id, "phone"), phone.clone());
        }
    }

    // one token per address, for an address the user has
    let tokens: Vec<(i64, String, String)> = otp_tokens::table
        .select((otp_tokens::user_id, otp_tokens::channel, otp_tokens::address))
        .load(&mut *conn)
        .unwrap();
    let mut with_token = HashSet::new();
    for (user_id, channel, address) in &tokens {
        let has = addresses.get(&(*user_id, channel.as_str()));
        assert_eq!(has, Some(address), "a {channel} token of user {user_id} for an address the user does not have");
        assert!(with_token.insert((*user_id, channel.clone())), "two {channel} tokens for user {user_id}");
    }
    for (user_id, channel) in addresses.keys() {
        assert!(with_token.contains(&(*user_id, channel.to_string())), "user {user_id}'s {channel} has no token");
    }

    // every person the client saw through is there, as the requests left them
    assert_eq!(rows.len(), people.len(), "an account for each person, no other");
    for p in people {
        let user = find(accounts, &p.email);
        assert_eq!(user.username.as_ref().map(|u| u.as_str()), Some(p.username.as_str()));
        // a reset through the email while it was unverified removes the phone
        let keeps_phone = p.verified || !p.reset;
        // (an abandoned proof verifies nothing: tests/review.rs `an_abandoned_reset_verifies_nothing`)
        assert_eq!(
            user.phone.as_ref().map(|x| x.as_str()),
            p.phone.as_deref().filter(|_| keeps_phone),
            "{}: phone ({p:?})",
            p.username,
        );
        let token = accounts.email_token(user.id).unwrap().expect("the email's token");
        assert_eq!(token.state.verified, p.verified || p.reset, "{}: email verified", p.username);
        // only the last password works
        let passwords: Vec<&str> = p.passwords.iter().map(String::as_str).collect();
        let works = working(accounts, &p.email, &passwords);
        let mut expected = vec![false; passwords.len()];
        *expected.last_mut().unwrap() = true;
        assert_eq!(works, expected, "{}: which of its passwords work", p.username);
    }
}

type OutboxRowSeen = (i64, String, Option<i64>, String, i32, Option<String>);

fn check_outbox(h: &Harness, pool: &Pool, people: &[Person]) {
    let mut conn = pool.get().unwrap();
    let rows: Vec<OutboxRowSeen> = outbox::table
        .select((outbox::id, outbox::recipient, outbox::token_id, outbox::status, outbox::attempts, outbox::body_text))
        .load(&mut *conn)
        .unwrap();
    let rewound = h.rewound.lock().unwrap().clone();
    let mut by_recipient: HashMap<&str, Vec<&OutboxRowSeen>> = HashMap::new();
    for row in &rows {
        let (id, _, _, status, _, text) = row;
        assert_ne!(status, "pending", "row {id}");
        assert!(text.is_none(), "row {id} ({status}) still holds its text");
        by_recipient.entry(row.1.as_str()).or_default().push(row);
    }

    // every request that succeeded left its code in the outbox; none invented one
    let mut known = HashSet::new();
    for p in people {
        let codes = by_recipient.get(p.email.as_str()).map_or(0, |rows| rows.iter().filter(|r| r.2.is_some()).count());
        assert!(
            (p.codes_confirmed..=p.codes_confirmed + p.codes_cut).contains(&codes),
            "{}: {codes} code messages, {} confirmed and {} cut off",
            p.username,
            p.codes_confirmed,
            p.codes_cut
        );
        known.insert(p.email.as_str());
        if let Some(phone) = &p.phone {
            let codes =
                by_recipient.get(phone.as_str()).map_or(0, |rows| rows.iter().filter(|r| r.2.is_some()).count());
            assert_eq!(codes, 1, "{}: the sign-up's code to the phone", p.username);
            known.insert(phone.as_str());
        }
    }
    for recipient in by_recipient.keys() {
        assert!(known.contains(recipient), "a message to {recipient}, whom nobody asked for");
    }

    // Deliveries, per recipient and per code: nothing marked sent is missing; nothing went out
    // twice unless a kill hit it mid-delivery (a row whose lease was running at a kill).
    let mut delivered: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for mail in h.smtp.mails() {
        for to in &mail.to {
            delivered.entry(to.clone()).or_default().push(mail_code(&mail.data, CODE_LENGTH));
        }
    }
    for post in h.sms.posts() {
        let to = post["to"].as_str().unwrap_or_default().to_owned();
        delivered.entry(to).or_default().push(code_in(post["body"].as_str().unwrap_or_default(), CODE_LENGTH));
    }
    for (recipient, rows) in &by_recipient {
        let got = delivered.get(*recipient).map_or(&[][..], Vec::as_slice);
        let sent = rows.iter().filter(|r| r.3 == "sent").count();
        let claims: i32 = rows.iter().map(|r| r.4).sum();
        let in_flight_at_a_kill = rows.iter().any(|r| rewound.contains(&r.0));
        assert!(sent <= got.len(), "{recipient}: {sent} rows sent, {} delivered", got.len());
        assert!(got.len() <= claims as usize, "{recipient}: {} delivered, {claims} claims", got.len());
        let mut per_code: HashMap<&str, usize> = HashMap::new();
        for code in got.iter().flatten() {
            *per_code.entry(code.as_str()).or_default() += 1;
        }
        for (code, times) in per_code {
            assert!(
                times == 1 || in_flight_at_a_kill,
                "{recipient}: one message ({code}) delivered {times} times with no kill during its delivery"
            );
        }
        if !in_flight_at_a_kill {
            assert!(rows.iter().all(|r| r.4 <= 1), "{recipient}: a row claimed twice with no kill: {rows:?}");
        }
    }
    for recipient in delivered.keys() {
        assert!(by_recipient.contains_key(recipient.as_str()), "delivered to {recipient} with no row in the outbox");
    }
}
