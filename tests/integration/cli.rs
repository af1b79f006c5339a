//! The built `flex-user` binary, driven as an operator would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestDb;
use flex_user::domain::Identifier;

/// The binary with a clean environment: only what the test gives it, cheap argon2.
pub(crate) fn flex_user(db_url: &str, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flex-user"));
    cmd.env_clear()
        .current_dir(dir)
        .env("DATABASE_URL", db_url)
        .env("FLEX_USER_ARGON2_MEMORY_KIB", "256")
        .env("FLEX_USER_ARGON2_ITERATIONS", "1");
    cmd
}

pub(crate) fn run(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Exit code non-zero, and exactly one line on stderr: returns it.
pub(crate) fn one_line_failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure; stdout: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr, got: {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    stderr.trim_end().to_owned()
}

on_both_databases!(create_user_and_superuser, create_user_refusals, create_user_refuses_look_alikes);

fn create_user_and_superuser(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.env_url();
    let mut cmd = flex_user(&url, dir.path());
    cmd.args(["create-user", "--username", "alice", "--email", "Alice@Example.org", "--password-stdin"]);
    let out = run(cmd, "pass word\r\nsecond line ignored\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "no log noise: {}", String::from_utf8_lossy(&out.stderr));

    let mut cmd = flex_user(&url, dir.path());
    cmd.args(["create-superuser", "--phone", "+1 202 555 1234"]);
    let out = run(cmd, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (accounts, _) = db.accounts(&[]);
    let alice = accounts.authenticate("alice@example.org", "pass word").unwrap().expect("password from stdin");
    assert!(!alice.is_superuser && !alice.is_staff);
    assert!(accounts.authenticate("alice", "pass word\r").unwrap().is_none(), "line ending is not part of it");
    let root = accounts.find_user(&Identifier::infer("+12025551234", None).unwrap()).unwrap().unwrap();
    assert!(root.is_superuser && root.is_staff);
    assert!(!root.has_usable_password(), "no --password-stdin: unusable password");
}

fn create_user_refusals(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.env_url();
    let create = |args: &[&str], stdin: &str| {
        let mut cmd = flex_user(&url, dir.path());
        cmd.arg("create-user").args(args);
        run(cmd, stdin)
    };
    assert!(create(&["--email", "dup@x.org"], "").status.success());

    let line = one_line_failure(&create(&["--email", "DUP@x.org", "--password-stdin"], "pw\n"));
    assert_eq!(line, "email: a user with that email address already exists");

    let line = one_line_failure(&create(&["--password-stdin"], "pw\n"));
    assert_eq!(line, "you must supply at least one of username, email address or phone number");

    let line = one_line_failure(&create(&["--username", "nobody"], ""));
    assert!(line.starts_with("password: "), "{line}");

    let line = one_line_failure(&create(&["--username", ".bad", "--phone", "12"], ""));
    assert!(line.starts_with("username: ") && line.contains("; phone: "), "{line}");

    let line = one_line_failure(&create(&["--username", "x", "--bogus"], ""));
    assert!(line.contains("--bogus"), "{line}");

    // nothing was created by the refusals
    let (accounts, _) = db.accounts(&[]);
    assert!(accounts.find_user(&Identifier::infer("nobody", None).unwrap()).unwrap().is_none());
}

fn create_user_refuses_look_alikes(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.env_url();
    let create = |args: &[&str]| {
        let mut cmd = flex_user(&url, dir.path());
        cmd.arg("create-user").args(args);
        run(cmd, "")
    };
    assert!(create(&["--username", "admin", "--email", "admin@x.org"]).status.success());
    // U+0131 LATIN SMALL LETTER DOTLESS I
    let line = one_line_failure(&create(&["--username", "adm\u{131}n", "--email", "other@x.org"]));
    assert_eq!(line, "username: that username is too similar to an existing username");
    let line = one_line_failure(&create(&["--email", "x@[127.0.0.1]"]));
    assert_eq!(line, "email: enter a valid email address");
    let (accounts, _) = db.accounts(&[]);
    assert!(accounts.find_user(&Identifier::infer("other@x.org", None).unwrap()).unwrap().is_none());
}

#[test]
fn configuration_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    for (var, value, expect) in [
        ("FLEX_USER_OTP_LENGTH", "3", "FLEX_USER_OTP_LENGTH"),
        ("FLEX_USER_SECRET_KEY", "tooshort", "FLEX_USER_SECRET_KEY"),
        ("FLEX_USER_EMAIL_BACKEND", "smtp", "FLEX_USER_SMTP_URL"),
        ("FLEX_USER_SMS_BACKEND", "webhook", "FLEX_USER_SMS_WEBHOOK_URL"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing", "cannot connect to the database"),
    ] {
        for args in [&["serve"][..], &["migrate"], &["create-user", "--email", "a@x.org"]] {
            let mut cmd = flex_user(&url, dir.path());
            cmd.env(var, value).args(args);
            let line = one_line_failure(&run(cmd, ""));
            assert!(line.contains(expect), "{args:?} with {var}={value}: {line}");
        }
    }
}

#[test]
fn migrate_applies_then_has_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let migrate = || {
        let mut cmd = flex_user(&url, dir.path());
        cmd.arg("migrate");
        let out = run(cmd, "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!migrate().contains("applied 0 migration"));
    assert!(migrate().contains("applied 0 migration"));
}

pub(crate) struct Server(pub(crate) Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn serve_starts_on_a_fresh_sqlite_file_and_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // the default DATABASE_URL: flex-user.db in the working directory
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flex-user"));
    cmd.env_clear().current_dir(dir.path()).env("FLEX_USER_BIND", format!("127.0.0.1:{port}"));
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut server = Server(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        if let Some(r) = get(addr, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    assert!(dir.path().join("flex-user.db").exists());

    let _ = server.0.kill();
    let mut stdout = String::new();
    server.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(stdout.contains(&format!("http://127.0.0.1:{port}")), "prints the URL: {stdout:?}");
}

/// What `serve` logs to a pipe up to and including its "starting" line, with `env` set.
fn start_up_log(env: &[(&str, &str)]) -> Vec<String> {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flex-user"));
    cmd.env_clear().current_dir(dir.path()).env("FLEX_USER_BIND", "127.0.0.1:0").envs(env.iter().copied());
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut server = Server(child);
    let mut stderr = std::io::BufReader::new(server.0.stderr.take().unwrap());
    let mut lines: Vec<String> = Vec::new();
    while !lines.last().is_some_and(|l| l.contains("starting")) {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the log ended before start-up: {lines:?}");
        lines.push(line);
    }
    lines
}

/// Logs written to a file or a pipe are plain text: no ANSI colour codes.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let seen = start_up_log(&[]).concat();
    assert!(!seen.contains('\u{1b}'), "no escape codes in {seen:?}");
    assert!(seen.contains(" INFO "), "{seen}");
}

/// Without a key the contract's default holds: a random key per process, with a warning that
/// names the way to keep one. With `FLEX_USER_SECRET_KEY_FILE` the first start makes the file
/// (owner-only) and says where; every later start reads the same key from it.
#[test]
fn a_secret_key_file_is_made_once_and_kept_across_restarts() {
    let warned = start_up_log(&[]).concat();
    assert!(warned.contains("WARN") && warned.contains("FLEX_USER_SECRET_KEY is not set"), "{warned}");
    assert!(warned.contains("FLEX_USER_SECRET_KEY_FILE"), "{warned}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("secret.key");
    std::fs::create_dir(path.parent().unwrap()).unwrap();
    let path_text = path.to_str().unwrap();
    let first = start_up_log(&[("FLEX_USER_SECRET_KEY_FILE", path_text)]).concat();
    assert!(first.contains("made a new secret key") && first.contains(path_text), "{first}");
    assert!(!first.contains("WARN"), "{first}");
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim().len(), 128, "64 random bytes as hex");
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let second = start_up_log(&[("FLEX_USER_SECRET_KEY_FILE", path_text)]).concat();
    assert!(second.contains("secret key read") && second.contains(path_text), "{second}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key, "the same key, untouched");
}

/// `FLEX_USER_LOG_FORMAT=json`: every log line is one JSON object, for log shippers.
#[test]
fn json_logs_are_one_object_per_line() {
    let lines = start_up_log(&[("FLEX_USER_LOG_FORMAT", "json")]);
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(value["level"].is_string() && value["timestamp"].is_string(), "{value}");
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["fields"]["message"], "starting");
}

#[test]
fn serve_on_port_zero_prints_the_port_it_got() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flex-user"));
    cmd.env_clear().current_dir(dir.path()).env("FLEX_USER_BIND", "127.0.0.1:0");
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut server = Server(child);
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().last().expect("a URL");
    let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().expect(url);
    assert_ne!(addr.port(), 0, "{line}");
    let response = get(addr, "/healthz").expect("the printed URL answers");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// PostgreSQL only: a one-shot command exits cleanly every time. It used to die with SIGSEGV
/// after printing its success line, in about 1 run of 8: OpenSSL's exit-time cleanup ran while a
/// pool worker was still opening a (TLS) connection to refill the pool.
#[test]
fn create_user_on_postgres_exits_cleanly_every_time() {
    let Some(db) = TestDb::new(crate::common::Backend::Postgres) else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = db.env_url();
    for i in 0..50 {
        let mut cmd = flex_user(&url, dir.path());
        cmd.args(["create-user", "--email", &format!("run{i}@example.org")]);
        let out = run(cmd, "");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {i} ended with {}; stdout {stdout:?}, stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("created user "), "run {i}: {stdout:?}");
    }
}
