//! A person in a real browser (headless Chromium driven through chromedriver's W3C WebDriver
//! API): sign in, set up an authenticator app by reading the secret off the page, sign out,
//! sign in with the password and a code. `.ci/run` installs `chromium-driver` when missing;
//! without chromedriver the test prints a NOTICE and passes, except with `CI=true`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flex_user::NewUser;
use flex_user::accounts::TotpSecret;
use flex_user::clock::Clock as _;
use flex_user::domain::Username;
use serde_json::{Value, json};

use crate::common::flows::{PASSWORD, secs, spawn};
use crate::common::{Backend, TestDb};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    /// Chromium's profile, removed with the driver.
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(crate) fn start() -> Option<Driver> {
        let Some(path) = ["/usr/bin/chromedriver", "chromedriver"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
        else {
            assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "chromedriver is required in CI");
            eprintln!("NOTICE: skipping the WebDriver test: no chromedriver (apt-get install chromium-driver)");
            return None;
        };
        let port = crate::cli::free_port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=390,900",
                     format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let mut driver = Driver { child, base, session: String::new(), http, _profile: profile };
        let answer = driver.call("POST", "/session", Some(caps));
        driver.session = answer["sessionId"].as_str().expect("a session").to_owned();
        // finding an element waits for it (up to 20 s): pages load slowly on a busy machine
        driver.call("POST", "/timeouts", Some(json!({"implicit": 20000})));
        Some(driver)
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let answer: Value = request.send().expect("webdriver").json().expect("webdriver JSON");
        assert!(answer["value"].get("error").is_none(), "{method} {path}: {answer}");
        answer["value"].clone()
    }

    pub(crate) fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    pub(crate) fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    /// Waits (up to 20 s) for the page to be at a path ending in `suffix`, and says where it is:
    /// a click that submits a form returns before the next page has loaded on a busy machine.
    pub(crate) fn arrive(&self, suffix: &str) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let url = self.url();
            if url.ends_with(suffix) || std::time::Instant::now() > until {
                return url;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub(crate) fn find(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    pub(crate) fn count(&self, css: &str) -> usize {
        self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).as_array().unwrap().len()
    }

    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    pub(crate) fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), None);
    }

    pub(crate) fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None).as_str().unwrap().to_owned()
    }
}

#[test]
fn set_up_an_authenticator_and_sign_in_with_it_in_chromium() {
    let Some(driver) = Driver::start() else { return };
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = spawn(&db, &[]);
    app.accounts.create_user(NewUser::new().username(Username::parse("alice").unwrap()).password(PASSWORD)).unwrap();
    let at = |path: &str| format!("{}{path}", app.base);

    driver.go(&at("/sign-in"));
    driver.type_into("#identifier", "alice");
    driver.type_into("#password", PASSWORD);
    driver.click("form[action='/sign-in'] button[type='submit']");
    let url = driver.arrive("/account");
    assert!(url.ends_with("/account"), "{url}");

    driver.go(&at("/account/two-factor"));
    driver.type_into("#totp-setup-password", PASSWORD);
    driver.click("form[action='/account/two-factor/totp/setup'] button[type='submit']");
    let url = driver.arrive("/account/two-factor/totp");
    assert!(url.ends_with("/account/two-factor/totp"), "{url}");
    assert_eq!(driver.count("svg.qr__code"), 1);
    let secret = TotpSecret::from_base32(&driver.text("#totp-secret")).expect("the secret on the page");
    driver.type_into("#code", &secret.code_at(app.clock.now()));
    driver.click("form[action='/account/two-factor/totp'] button[type='submit']");
    let url = driver.arrive("/account/two-factor/recovery-codes");
    assert!(url.ends_with("/account/two-factor/recovery-codes"), "{url}");
    assert_eq!(driver.count(".recovery-code"), 10);

    driver.click(".site-nav__signout button");
    // signed out (on the home page) before the next page is asked for, or /sign-in would still
    // see the signed-in session
    let url = driver.arrive(&at("/"));
    assert_eq!(url, at("/"));
    app.clock.advance(secs(30));
    driver.go(&at("/sign-in"));
    driver.type_into("#identifier", "alice");
    driver.type_into("#password", PASSWORD);
    driver.click("form[action='/sign-in'] button[type='submit']");
    let url = driver.arrive("/sign-in/two-factor");
    assert!(url.ends_with("/sign-in/two-factor"), "{url}");
    driver.type_into("#code", &secret.code_at(app.clock.now()));
    driver.click("form[action='/sign-in/two-factor'] button[type='submit']");
    let url = driver.arrive("/account");
    assert!(url.ends_with("/account"), "{url}");
    assert!(driver.text(".site-nav__who").contains("alice"));
}
