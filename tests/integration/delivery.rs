//! The outbox, its worker and senders against real listeners in this process (an SMTP server,
//! an HTTP sink for the SMS webhook), the send limits, and the wording of messages.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::TestDb;
use crate::common::sinks::{HttpSink, Mail, SmtpSink, silent_server};
use chrono::{DateTime, Utc};
use flex_user::accounts::{Change, Channel, IdentifierChanges, OtpCode};
use flex_user::clock::{Clock, ManualClock};
use flex_user::db::{self, AnyConnection, Pool};
use flex_user::delivery::email::{EmailSender, SmtpEmail};
use flex_user::delivery::limits::{self, Refusal, SendLimits};
use flex_user::delivery::messages::{self, Purpose};
use flex_user::delivery::outbox::{self, NewMessage, OutboxRow};
use flex_user::delivery::sms::SmsSender;
use flex_user::delivery::worker::{self, Senders};
use flex_user::domain::{Email, Username};
use flex_user::secret::SecretKey;
use flex_user::{Accounts, NewUser};
use url::Url;

// ---------------------------------------------------------------------------------------------
// helpers

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn site() -> Url {
    Url::parse("https://example.org:8443/").unwrap()
}

fn pool(db: &TestDb) -> Pool {
    db::connect(&db.url, 8).expect("connect")
}

fn conn(pool: &Pool) -> db::PooledConnection {
    pool.get().unwrap()
}

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc)
}

const TTL: chrono::Duration = chrono::Duration::seconds(900);

fn expiry(clock: &ManualClock) -> DateTime<Utc> {
    clock.now() + TTL
}

fn code_email(to: &str, token_id: Option<i64>, code: &OtpCode, clock: &ManualClock) -> NewMessage {
    let content = messages::code_email(Purpose::Verify, code, TTL, &site());
    NewMessage {
        channel: Channel::Email,
        recipient: to.into(),
        subject: Some(content.subject),
        body_text: content.text,
        body_html: Some(content.html),
        token_id,
        expires_at: expiry(clock),
    }
}

fn code_sms(to: &str, token_id: Option<i64>, code: &OtpCode, clock: &ManualClock) -> NewMessage {
    NewMessage {
        channel: Channel::Phone,
        recipient: to.into(),
        subject: None,
        body_text: messages::code_sms(Purpose::Verify, code, TTL, &site()),
        body_html: None,
        token_id,
        expires_at: expiry(clock),
    }
}

fn enqueue(pool: &Pool, msg: &NewMessage, clock: &ManualClock) -> i64 {
    let mut conn = conn(pool);
    db::write_transaction(&mut conn, |c: &mut AnyConnection| outbox::enqueue(c, msg, clock.now())).unwrap()
}

fn row(pool: &Pool, id: i64) -> OutboxRow {
    outbox::get(&mut conn(pool), id).unwrap().expect("outbox row")
}

fn assert_finished(row: &OutboxRow, status: &str) {
    assert_eq!(row.status, status, "{row:?}");
    assert_eq!(row.body_text, None, "the text is blanked");
    assert_eq!(row.body_html, None, "the HTML is blanked");
    assert!(row.finished_at.is_some());
    assert!(row.lease_until.is_none());
}

fn smtp_senders(db: &TestDb, smtp_url: &str, sms_url: &str) -> Senders {
    let settings = db.settings(&[
        ("FLEX_USER_EMAIL_BACKEND", "smtp"),
        ("FLEX_USER_SMTP_URL", smtp_url),
        ("FLEX_USER_EMAIL_FROM", "Flex Test <auth@example.org>"),
        ("FLEX_USER_SMS_BACKEND", "webhook"),
        ("FLEX_USER_SMS_WEBHOOK_URL", sms_url),
    ]);
    Senders::from_settings(&settings).unwrap()
}

/// Senders whose SMTP attempt gives up after `timeout` (the default is 10 s).
fn smtp_senders_with_timeout(url: &str, timeout: Duration) -> Senders {
    let from = "auth@example.org".parse().unwrap();
    let email: Arc<dyn EmailSender> = Arc::new(SmtpEmail::new(&Url::parse(url).unwrap(), from, timeout).unwrap());
    let sms: Arc<dyn SmsSender> = Arc::new(flex_user::delivery::sms::ConsoleSms);
    Senders { email, sms }
}

/// A port nothing listens on (bound, then let go).
fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Maximal runs of ASCII digits at least `n` long.
fn runs(text: &str, n: usize) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|r| r.len() >= n).map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// worker and senders, on both databases

fn email_via_smtp_is_delivered_and_blanked(db: &TestDb) {
    let (smtp, hooks) = (SmtpSink::start(), HttpSink::start());
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let senders = smtp_senders(db, &smtp.url(), &hooks.url());
    let code = OtpCode::generate(6);
    let id = enqueue(&pool, &code_email("alice@example.org", Some(11), &code, &clock), &clock);
    assert_eq!(row(&pool, id).status, "pending");

    let rt = runtime();
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["alice@example.org"]);
    assert!(mails[0].data.contains("Subject: Your verification code for example.org"), "{}", mails[0].data);
    let from = mails[0].data.lines().find(|l| l.starts_with("From:"));
    assert_eq!(from, Some("From: \"Flex Test\" <auth@example.org>"), "the display name and address");
    assert!(mails[0].data.contains(&format!("    {}\r\n", code.as_str())), "{}", mails[0].data);
    assert!(mails[0].data.contains("multipart/alternative"));
    let r = row(&pool, id);
    assert_finished(&r, "sent");
    assert_eq!(r.attempts, 1);
    assert_eq!(r.subject.as_deref(), Some("Your verification code for example.org"));

    // nothing more to do
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 0);
    assert_eq!(smtp.mails().len(), 1);
}

fn sms_via_webhook_ends_with_the_webotp_line(db: &TestDb) {
    let (smtp, hooks) = (SmtpSink::start(), HttpSink::start());
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let senders = smtp_senders(db, &smtp.url(), &hooks.url());
    let code = OtpCode::generate(8);
    let id = enqueue(&pool, &code_sms("+447700900123", Some(5), &code, &clock), &clock);

    let rt = runtime();
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    let posts = hooks.posts();
    assert_eq!(posts.len(), 1);
    let post = posts[0].as_object().unwrap();
    assert_eq!(post.len(), 2, "{post:?}");
    assert_eq!(post["to"], "+447700900123");
    let body = post["body"].as_str().unwrap();
    assert!(body.ends_with(&format!("\n@example.org #{}", code.as_str())), "{body}");
    assert_eq!(runs(body, 8), [code.as_str(), code.as_str()]);
    assert_finished(&row(&pool, id), "sent");

    // a webhook answering 500 is retried after the backoff
    hooks.fail_first.store(1, Ordering::SeqCst);
    let id = enqueue(&pool, &code_sms("+447700900124", None, &OtpCode::generate(8), &clock), &clock);
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    let r = row(&pool, id);
    assert_eq!((r.status.as_str(), r.attempts), ("pending", 1));
    assert!(r.last_error.as_deref().unwrap().contains("500"), "{:?}", r.last_error);
    assert!(r.body_text.is_some());
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    assert_finished(&row(&pool, id), "sent");
    assert_eq!(hooks.posts().len(), 2);
}

fn a_newer_code_replaces_the_pending_one(db: &TestDb) {
    let smtp = SmtpSink::start();
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let senders = smtp_senders(db, &smtp.url(), "http://127.0.0.1:9/sms");
    let (old, new) = (OtpCode::generate(6), OtpCode::generate(6));
    let first = enqueue(&pool, &code_email("bob@example.org", Some(7), &old, &clock), &clock);
    // a notice for the same address is not replaced by a code
    let mut notice = code_email("bob@example.org", None, &old, &clock);
    let content = messages::change_notice_email(Channel::Email, &site());
    (notice.subject, notice.body_text, notice.body_html) = (Some(content.subject), content.text, Some(content.html));
    let notice = enqueue(&pool, &notice, &clock);
    clock.advance(chrono::Duration::seconds(2));
    let second = enqueue(&pool, &code_email("bob@example.org", Some(7), &new, &clock), &clock);

    assert_finished(&row(&pool, first), "replaced");
    assert_eq!(row(&pool, notice).status, "pending");
    assert_eq!(row(&pool, second).status, "pending");

    let rt = runtime();
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 2);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    let codes: Vec<&Mail> = mails.iter().filter(|m| m.data.contains("verification code")).collect();
    assert_eq!(codes.len(), 1);
    assert!(codes[0].data.contains(new.as_str()));
    assert!(mails.iter().all(|m| !m.data.contains(&format!("    {}", old.as_str()))));
    assert_finished(&row(&pool, second), "sent");
    assert_finished(&row(&pool, first), "replaced");

    // cancel_for_token: the address changed before the code went out
    let third = enqueue(&pool, &code_email("bob@example.org", Some(8), &OtpCode::generate(6), &clock), &clock);
    assert_eq!(outbox::cancel_for_token(&mut conn(&pool), 8, clock.now()).unwrap(), 1);
    assert_finished(&row(&pool, third), "replaced");
    assert_eq!(outbox::cancel_for_token(&mut conn(&pool), 8, clock.now()).unwrap(), 0);
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 0);
    assert_eq!(smtp.mails().len(), 2);
}

fn smtp_down_is_retried_until_it_is_up(db: &TestDb) {
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let port = free_port();
    let addr = port.local_addr().unwrap();
    drop(port);
    let senders = smtp_senders_with_timeout(&format!("smtp://{addr}"), Duration::from_secs(3));
    let code = OtpCode::generate(6);
    let id = enqueue(&pool, &code_email("carol@example.org", Some(3), &code, &clock), &clock);
    let rt = runtime();

    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    let r = row(&pool, id);
    assert_eq!((r.status.as_str(), r.attempts), ("pending", 1));
    assert!(r.body_text.is_some() && r.last_error.is_some());
    assert_eq!(r.next_attempt_at.and_utc(), clock.now() + chrono::Duration::seconds(1));
    // not due again before the backoff
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 0);
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    let r = row(&pool, id);
    assert_eq!((r.status.as_str(), r.attempts), ("pending", 2));
    assert_eq!(r.next_attempt_at.and_utc(), clock.now() + chrono::Duration::seconds(2));

    // the server comes up on that port
    let smtp = SmtpSink::start_on(TcpListener::bind(addr).unwrap());
    clock.advance(chrono::Duration::seconds(2));
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
    assert_eq!(smtp.mails().len(), 1);
    assert!(smtp.mails()[0].data.contains(code.as_str()));
    let r = row(&pool, id);
    assert_finished(&r, "sent");
    assert_eq!((r.attempts, r.last_error), (3, None));

    // the backoff doubles and is capped
    assert_eq!(worker::backoff(1), chrono::Duration::seconds(1));
    assert_eq!(worker::backoff(4), chrono::Duration::seconds(8));
    assert_eq!(worker::backoff(7), chrono::Duration::seconds(60));
    assert_eq!(worker::backoff(1000), chrono::Duration::seconds(60));
}

fn a_silent_smtp_server_times_out_and_is_retried(db: &TestDb) {
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let senders = smtp_senders_with_timeout(&format!("smtp://{}", silent_server()), Duration::from_secs(1));
    let id = enqueue(&pool, &code_email("dave@example.org", Some(4), &OtpCode::generate(6), &clock), &clock);
    let rt = runtime();

    for attempt in 1..=2 {
        let started = Instant::now();
        assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 1);
        assert!(started.elapsed() < Duration::from_secs(5), "the attempt took {:?}", started.elapsed());
        let r = row(&pool, id);
        assert_eq!((r.status.as_str(), r.attempts), ("pending", attempt));
        assert!(r.last_error.as_deref().unwrap().contains("no answer"), "{:?}", r.last_error);
        assert!(r.lease_until.is_none());
        clock.advance(worker::backoff(attempt));
    }
}

fn expired_messages_are_never_sent(db: &TestDb) {
    let smtp = SmtpSink::start();
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let senders = smtp_senders(db, &smtp.url(), "http://127.0.0.1:9/sms");
    let mut msg = code_email("erin@example.org", Some(9), &OtpCode::generate(6), &clock);
    msg.expires_at = clock.now() + chrono::Duration::seconds(60);
    let id = enqueue(&pool, &msg, &clock);
    clock.advance(chrono::Duration::seconds(61));
    let rt = runtime();
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 0);
    assert_finished(&row(&pool, id), "expired");
    assert!(smtp.mails().is_empty());

    // failing until the code expires: given up when the next try would come too late
    let port = free_port();
    let down = smtp_senders_with_timeout(&format!("smtp://{}", port.local_addr().unwrap()), Duration::from_secs(3));
    drop(port);
    let mut msg = code_email("erin@example.org", Some(10), &OtpCode::generate(6), &clock);
    msg.expires_at = clock.now() + chrono::Duration::milliseconds(2500);
    let id = enqueue(&pool, &msg, &clock);
    assert_eq!(rt.block_on(worker::run_once(&pool, &down, &clock, "w1")).unwrap(), 1);
    assert_eq!(row(&pool, id).status, "pending");
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(rt.block_on(worker::run_once(&pool, &down, &clock, "w1")).unwrap(), 1);
    let r = row(&pool, id);
    assert_finished(&r, "expired");
    assert!(r.last_error.is_some());
}

fn two_workers_deliver_each_message_exactly_once(db: &TestDb) {
    let (smtp, hooks) = (SmtpSink::start(), HttpSink::start());
    let (pool_a, pool_b) = (pool(db), pool(db));
    let clock = ManualClock::new(start_time());
    let a = smtp_senders(db, &smtp.url(), &hooks.url());
    let b = smtp_senders(db, &smtp.url(), &hooks.url());
    const EACH: usize = 20;
    for i in 0..EACH {
        enqueue(
            &pool_a,
            &code_email(&format!("u{i}@example.org"), Some(i as i64), &OtpCode::generate(6), &clock),
            &clock,
        );
        let phone = format!("+4477009{i:05}");
        enqueue(&pool_b, &code_sms(&phone, Some(1000 + i as i64), &OtpCode::generate(6), &clock), &clock);
    }

    let rt = runtime();
    let run = |pool: Pool, senders: Senders, clock: ManualClock, name: &'static str| async move {
        let mut total = 0;
        for _ in 0..50 {
            total += worker::run_once(&pool, &senders, &clock, name).await.unwrap();
        }
        total
    };
    let (ta, tb) = rt.block_on(async {
        let ha = tokio::spawn(run(pool_a.clone(), a, clock.clone(), "a"));
        let hb = tokio::spawn(run(pool_b.clone(), b, clock.clone(), "b"));
        (ha.await.unwrap(), hb.await.unwrap())
    });
    assert_eq!(ta + tb, 2 * EACH, "attempts: a {ta}, b {tb}");

    let mut to: Vec<String> = smtp.mails().into_iter().flat_map(|m| m.to).collect();
    to.sort();
    to.dedup();
    assert_eq!(smtp.mails().len(), EACH);
    assert_eq!(to.len(), EACH);
    let mut phones: Vec<String> = hooks.posts().iter().map(|p| p["to"].as_str().unwrap().to_owned()).collect();
    phones.sort();
    phones.dedup();
    assert_eq!(hooks.posts().len(), EACH);
    assert_eq!(phones.len(), EACH);
    for id in 1..=(2 * EACH as i64) {
        assert_finished(&row(&pool_a, id), "sent");
    }
}

fn a_spawned_worker_wakes_on_notify(db: &TestDb) {
    let hooks = HttpSink::start();
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let senders = smtp_senders(db, "smtp://127.0.0.1:9", &hooks.url());
    let rt = runtime();
    let wake = Arc::new(tokio::sync::Notify::new());
    // spawn needs the runtime's context, not a task of its own
    let handle = {
        let _inside = rt.enter();
        worker::spawn(pool.clone(), senders, Arc::new(clock.clone()) as Arc<dyn Clock>, wake.clone())
    };
    let id = enqueue(&pool, &code_sms("+447700900999", Some(1), &OtpCode::generate(6), &clock), &clock);
    wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hooks.posts().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hooks.posts().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while row(&pool, id).status != "sent" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_finished(&row(&pool, id), "sent");
    assert!(!handle.is_finished());
    handle.abort();
}

fn file_backends_write_one_file_per_message(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (email_dir, sms_dir) = (dir.path().join("mail/new"), dir.path().join("sms/new"));
    let settings = db.settings(&[
        ("FLEX_USER_EMAIL_BACKEND", "file"),
        ("FLEX_USER_EMAIL_FILE_DIR", email_dir.to_str().unwrap()),
        ("FLEX_USER_SMS_BACKEND", "file"),
        ("FLEX_USER_SMS_FILE_DIR", sms_dir.to_str().unwrap()),
    ]);
    let senders = Senders::from_settings(&settings).unwrap();
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let codes: Vec<OtpCode> = (0..4).map(|_| OtpCode::generate(6)).collect();
    enqueue(&pool, &code_email("f1@example.org", Some(1), &codes[0], &clock), &clock);
    enqueue(&pool, &code_email("f2@example.org", Some(2), &codes[1], &clock), &clock);
    enqueue(&pool, &code_sms("+447700900001", Some(3), &codes[2], &clock), &clock);
    enqueue(&pool, &code_sms("+447700900002", Some(4), &codes[3], &clock), &clock);
    let rt = runtime();
    assert_eq!(rt.block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 4);

    let read = |dir: &std::path::Path, ext: &str| -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .inspect(|p| assert_eq!(p.extension().and_then(|e| e.to_str()), Some(ext), "{p:?}"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        files.sort();
        files
    };
    let emails = read(&email_dir, "eml");
    assert_eq!(emails.len(), 2);
    for (i, code) in codes[..2].iter().enumerate() {
        let mail = emails.iter().find(|m| m.contains(&format!("To: f{}@example.org", i + 1))).unwrap();
        assert!(mail.contains(code.as_str()) && mail.contains("Subject: "));
    }
    let sms = read(&sms_dir, "json");
    assert_eq!(sms.len(), 2);
    for (i, code) in codes[2..].iter().enumerate() {
        let to = format!("+44770090000{}", i + 1);
        let value: serde_json::Value =
            sms.iter().map(|s| serde_json::from_str(s).unwrap()).find(|v: &serde_json::Value| v["to"] == to).unwrap();
        assert!(value["body"].as_str().unwrap().ends_with(&format!("#{}", code.as_str())));
    }
}

fn console_backends_deliver(db: &TestDb) {
    let senders = Senders::from_settings(&db.settings(&[])).unwrap();
    let pool = pool(db);
    let clock = ManualClock::new(start_time());
    let a = enqueue(&pool, &code_email("c@example.org", Some(1), &OtpCode::generate(6), &clock), &clock);
    let b = enqueue(&pool, &code_sms("+447700900003", Some(2), &OtpCode::generate(6), &clock), &clock);
    assert_eq!(runtime().block_on(worker::run_once(&pool, &senders, &clock, "w1")).unwrap(), 2);
    assert_finished(&row(&pool, a), "sent");
    assert_finished(&row(&pool, b), "sent");
}

// ---------------------------------------------------------------------------------------------
// limits, on both databases

fn secret() -> SecretKey {
    SecretKey::parse(&"ab".repeat(32)).unwrap()
}

fn record(pool: &Pool, limits: &SendLimits, channel: Channel, address: &str, at: DateTime<Utc>) -> Result<(), Refusal> {
    let mut conn = conn(pool);
    db::write_transaction(&mut conn, |c: &mut AnyConnection| {
        limits::try_record(c, &secret(), limits, channel, address, at)
    })
    .unwrap()
}

fn cooldown_and_daily_cap(db: &TestDb) {
    let pool = pool(db);
    let limits = SendLimits { cooldown: chrono::Duration::seconds(60), daily: 3, sms_hourly: 100 };
    let t0 = start_time();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let addr = "gina@example.org";
    assert_eq!(record(&pool, &limits, Channel::Email, addr, at(0)), Ok(()));
    assert_eq!(record(&pool, &limits, Channel::Email, addr, at(10)), Err(Refusal::Cooldown { retry_after_secs: 50 }));
    assert_eq!(record(&pool, &limits, Channel::Email, addr, at(59)), Err(Refusal::Cooldown { retry_after_secs: 1 }));
    // another address is not held back
    assert_eq!(record(&pool, &limits, Channel::Email, "other@example.org", at(10)), Ok(()));
    assert_eq!(record(&pool, &limits, Channel::Email, addr, at(60)), Ok(()));
    assert_eq!(record(&pool, &limits, Channel::Email, addr, at(200)), Ok(()));
    // three in a day: the fourth waits until the first is 24 hours old
    assert_eq!(
        record(&pool, &limits, Channel::Email, addr, at(300)),
        Err(Refusal::DailyCap { retry_after_secs: 86_400 - 300 })
    );
    assert_eq!(
        record(&pool, &limits, Channel::Email, addr, at(86_399)),
        Err(Refusal::DailyCap { retry_after_secs: 1 })
    );
    assert_eq!(record(&pool, &limits, Channel::Email, addr, at(86_400)), Ok(()));
    // within the cooldown of that one, and the cap again (the second is not 24 h old yet)
    assert_eq!(
        record(&pool, &limits, Channel::Email, addr, at(86_430)),
        Err(Refusal::DailyCap { retry_after_secs: 30 })
    );

    // no address rests in clear
    use diesel::prelude::*;
    use flex_user::db::schema::send_log;
    let keys: Vec<String> = send_log::table.select(send_log::address_key).load(&mut conn(&pool)).unwrap();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| !k.contains("gina") && !k.contains('@') && k.len() == 64));

    // prune keeps what the last 24 hours need
    assert_eq!(limits::prune(&mut conn(&pool), at(86_400)).unwrap(), 1);
    assert_eq!(
        record(&pool, &limits, Channel::Email, addr, at(86_430)),
        Err(Refusal::DailyCap { retry_after_secs: 30 })
    );
}

fn limits_follow_the_address_not_the_account(db: &TestDb) {
    let (accounts, clock) = db.accounts(&[]);
    clock.set(start_time());
    let settings = db.settings(&[("FLEX_USER_OTP_RESEND_COOLDOWN", "60"), ("FLEX_USER_OTP_DAILY_LIMIT", "2")]);
    let limits = SendLimits::from_settings(&settings);
    assert_eq!(limits, SendLimits { cooldown: chrono::Duration::seconds(60), daily: 2, sms_hourly: 200 });
    let email = Email::parse("Hank@Example.org").unwrap();
    let user = accounts
        .create_user(NewUser {
            username: Some(Username::parse("hank").unwrap()),
            email: Some(email.clone()),
            ..Default::default()
        })
        .unwrap();
    let pool = accounts.pool().clone();
    let send = |accounts: &Accounts, at: DateTime<Utc>| {
        let address = accounts.get_user(user.id).unwrap().unwrap().email.unwrap().key();
        record(&pool, &limits, Channel::Email, &address, at)
    };
    let t0 = start_time();
    assert_eq!(send(&accounts, t0), Ok(()));
    // remove the address and add it back (as "hank@example.org"): still cooling down
    let remove = IdentifierChanges { email: Change::Remove, ..Default::default() };
    accounts.update_identifiers(user.id, remove).unwrap();
    let readd =
        IdentifierChanges { email: Change::Set(Email::parse("hank@example.org").unwrap()), ..Default::default() };
    accounts.update_identifiers(user.id, readd).unwrap();
    assert!(matches!(send(&accounts, t0 + chrono::Duration::seconds(5)), Err(Refusal::Cooldown { .. })));
    assert_eq!(send(&accounts, t0 + chrono::Duration::seconds(60)), Ok(()));
    // the daily cap too, even for another account taking the address
    let remove = IdentifierChanges { email: Change::Remove, ..Default::default() };
    accounts.update_identifiers(user.id, remove).unwrap();
    let other = accounts.create_user(NewUser { email: Some(email), ..Default::default() }).unwrap();
    let address = other.email.unwrap().key();
    assert!(matches!(
        record(&pool, &limits, Channel::Email, &address, t0 + chrono::Duration::seconds(600)),
        Err(Refusal::DailyCap { .. })
    ));
    // the channel is part of the key: the same text as a phone is another address
    assert_eq!(record(&pool, &limits, Channel::Phone, &address, t0 + chrono::Duration::seconds(600)), Ok(()));
}

fn sms_hourly_limit(db: &TestDb) {
    let pool = pool(db);
    let limits = SendLimits { cooldown: chrono::Duration::seconds(60), daily: 10, sms_hourly: 3 };
    let t0 = start_time();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    for i in 0..3 {
        assert_eq!(record(&pool, &limits, Channel::Phone, &format!("+4477009000{i}"), at(i)), Ok(()));
    }
    assert_eq!(record(&pool, &limits, Channel::Phone, "+447700900009", at(10)), Err(Refusal::SmsHourly));
    assert_eq!(Refusal::SmsHourly.retry_after_secs(), 3600);
    // email is not counted
    assert_eq!(record(&pool, &limits, Channel::Email, "ivy@example.org", at(10)), Ok(()));
    // a refused SMS was not recorded: an hour after the first, one more fits
    assert_eq!(record(&pool, &limits, Channel::Phone, "+447700900009", at(3600)), Ok(()));
    assert_eq!(record(&pool, &limits, Channel::Phone, "+447700900008", at(3600)), Err(Refusal::SmsHourly));
    // 0 means no SMS at all
    let none = SendLimits { sms_hourly: 0, ..limits };
    assert_eq!(record(&pool, &none, Channel::Phone, "+447700900007", at(99_999)), Err(Refusal::SmsHourly));
}

on_both_databases!(
    email_via_smtp_is_delivered_and_blanked,
    sms_via_webhook_ends_with_the_webotp_line,
    a_newer_code_replaces_the_pending_one,
    smtp_down_is_retried_until_it_is_up,
    a_silent_smtp_server_times_out_and_is_retried,
    expired_messages_are_never_sent,
    two_workers_deliver_each_message_exactly_once,
    a_spawned_worker_wakes_on_notify,
    file_backends_write_one_file_per_message,
    console_backends_deliver,
    cooldown_and_daily_cap,
    limits_follow_the_address_not_the_account,
    sms_hourly_limit,
);

// ---------------------------------------------------------------------------------------------
// messages (no database)

fn sites() -> Vec<Url> {
    [
        "http://127.0.0.1:8080/",
        "https://auth.example.org/",
        "http://localhost:65535/",
        "https://example.org/base/path",
        "http://[::1]:8080/",
        "https://login.example.org:10443/",
    ]
    .iter()
    .map(|s| Url::parse(s).unwrap())
    .collect()
}

fn ttls() -> Vec<chrono::Duration> {
    let listed =
        [1, 9, 59, 60, 61, 90, 599, 600, 900, 1000, 1440, 3599, 3600, 3601, 3661, 5400, 7200, 43_200, 86_399, 86_400];
    listed.into_iter().chain((1..=86_400).step_by(97)).map(chrono::Duration::seconds).collect()
}

#[test]
fn code_messages_hold_exactly_one_run_of_n_digits() {
    let sites = sites();
    let ttls = ttls();
    for n in 4..=10 {
        for site in &sites {
            let host = site.host_str().unwrap();
            for (i, ttl) in ttls.iter().enumerate() {
                let code = OtpCode::generate(n);
                let purpose = if i % 2 == 0 { Purpose::Verify } else { Purpose::PasswordReset };
                let email = messages::code_email(purpose, &code, *ttl, site);
                assert_eq!(runs(&email.text, n), [code.as_str()], "n={n} ttl={ttl:?} site={site}\n{}", email.text);
                assert!(email.html.contains(code.as_str()));
                assert!(email.text.is_ascii());
                let sms = messages::code_sms(purpose, &code, *ttl, site);
                assert_eq!(runs(&sms, n), [code.as_str(), code.as_str()], "n={n} ttl={ttl:?} site={site}\n{sms}");
                let last = sms.lines().last().unwrap();
                assert_eq!(last, format!("@{host} #{}", code.as_str()));
            }
        }
    }
}

#[test]
fn a_host_with_digits_is_left_out_of_the_text() {
    let site = Url::parse("https://app2024.example.org/").unwrap();
    for n in 4..=10 {
        let code = OtpCode::generate(n);
        let email = messages::code_email(Purpose::Verify, &code, TTL, &site);
        assert_eq!(runs(&email.text, n), [code.as_str()], "{}", email.text);
        let sms = messages::code_sms(Purpose::PasswordReset, &code, TTL, &site);
        let (body, webotp) = sms.rsplit_once('\n').unwrap();
        assert_eq!(runs(body, n), [code.as_str()], "{body}");
        assert_eq!(webotp, format!("@app2024.example.org #{}", code.as_str()));
    }
}

#[test]
fn code_messages_read_well() {
    let site = Url::parse("https://auth.example.org/").unwrap();
    let code = OtpCode::generate(6);
    let email = messages::code_email(Purpose::Verify, &code, chrono::Duration::seconds(900), &site);
    assert_eq!(email.subject, "Your verification code for auth.example.org");
    assert!(email.text.contains("15 minutes"), "{}", email.text);
    assert!(email.text.contains("https://auth.example.org/verify/email"), "{}", email.text);
    let reset = messages::code_email(Purpose::PasswordReset, &code, chrono::Duration::seconds(7200), &site);
    assert!(reset.subject.contains("password reset"));
    assert!(reset.text.contains("2 hours") && reset.text.contains("https://auth.example.org/password-reset/verify"));
    // a link with a port is never printed (its digits could be taken for the code)
    let dev = Url::parse("http://127.0.0.1:8080/").unwrap();
    let email = messages::code_email(Purpose::Verify, &code, chrono::Duration::seconds(86_400), &dev);
    assert!(!email.text.contains("8080") && email.text.contains("24 hours"), "{}", email.text);
    let sms = messages::code_sms(Purpose::Verify, &code, chrono::Duration::seconds(90), &dev);
    assert!(sms.contains("1 minute and 30 seconds") && sms.ends_with(&format!("\n\n@127.0.0.1 #{}", code.as_str())));
    // HTML is escaped
    let odd = Url::parse("https://a.example.org/x%3Cy/").unwrap();
    assert!(!messages::code_email(Purpose::Verify, &code, TTL, &odd).html.contains("<y"));
}

#[test]
fn change_notices_go_to_the_old_address() {
    let site = Url::parse("https://auth.example.org/").unwrap();
    let email = messages::change_notice_email(Channel::Email, &site);
    assert!(email.subject.contains("email address") && email.subject.contains("auth.example.org"));
    assert!(
        email.text.contains("changed or removed") && email.text.contains("https://auth.example.org/password-reset")
    );
    assert!(email.html.contains("href=\"https://auth.example.org/password-reset\""));
    let phone = messages::change_notice_email(Channel::Phone, &site);
    assert!(phone.text.contains("phone number"));
    let sms = messages::change_notice_sms(&site);
    assert!(sms.contains("phone number") && sms.contains("auth.example.org") && sms.contains("password-reset"));
}

#[test]
fn smtp_urls_of_the_contract_build() {
    for url in
        ["smtp://127.0.0.1:2525", "smtps://user:pass@mail.example.org", "smtp://mail.example.org:587?tls=required"]
    {
        let settings = flex_user::config::Settings::from_lookup(|k| match k {
            "FLEX_USER_EMAIL_BACKEND" => Some("smtp".into()),
            "FLEX_USER_SMTP_URL" => Some(url.into()),
            "FLEX_USER_SECRET_KEY" => Some("ab".repeat(32)),
            _ => None,
        })
        .unwrap();
        // no runtime needed to build (or drop) the senders
        Senders::from_settings(&settings).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}
