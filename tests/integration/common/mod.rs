//! Test databases: a fresh SQLite file, or a fresh PostgreSQL database made and dropped per
//! test. PostgreSQL is at `FLEX_USER_TEST_POSTGRES` (default: this machine's trust-auth
//! server). Without one, PostgreSQL tests print a notice and pass as skipped, except with
//! `CI=true`, where they fail.
#![allow(dead_code)]

pub mod app;
pub mod authenticator;
pub mod flows;
pub mod log_capture;
pub mod server;
pub mod sinks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use flex_user::Accounts;
use flex_user::clock::ManualClock;
use flex_user::config::Settings;
use flex_user::db::{self, DatabaseUrl};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub url: DatabaseUrl,
    /// Keeps the SQLite folder alive.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: (admin URL, database name) to drop at the end.
    drop: Option<(String, String)>,
}

fn admin_url() -> String {
    std::env::var("FLEX_USER_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    /// `None` (after printing why) when PostgreSQL is not there and this is not CI.
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("test.db");
                Some(TestDb {
                    url: DatabaseUrl::Sqlite(path.to_string_lossy().into_owned()),
                    _dir: Some(dir),
                    drop: None,
                })
            }
            Backend::Postgres => {
                // before this process's first TLS-capable connection: OpenSSL without its exit-time
                // cleanup, which would free its tables under pool threads still connecting when
                // the test binary exits (a SIGSEGV after every test passed)
                flex_user::db::init_openssl();
                let admin = admin_url();
                let mut conn = match PgConnection::establish(&admin) {
                    Ok(conn) => conn,
                    Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                        panic!("PostgreSQL is required in CI but unreachable at {admin}: {e}")
                    }
                    Err(e) => {
                        eprintln!("NOTICE: skipping a PostgreSQL test: cannot connect to {admin}: {e}");
                        return None;
                    }
                };
                static N: AtomicU32 = AtomicU32::new(0);
                let name = format!("flex_user_test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
                // CREATE DATABASE copies template1 and fails while another copy is running.
                static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
                let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
                conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).expect("drop old test database");
                conn.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&name);
                Some(TestDb { url: DatabaseUrl::Postgres(url.to_string()), _dir: None, drop: Some((admin, name)) })
            }
        }
    }

    /// The URL as `DATABASE_URL` would carry it.
    pub fn env_url(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }

    /// Settings for tests: this database, a fixed secret, cheap argon2, plus `extra`.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Settings {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), self.env_url()),
            ("FLEX_USER_SECRET_KEY".into(), "ab".repeat(32)),
            ("FLEX_USER_ARGON2_MEMORY_KIB".into(), "256".into()),
            ("FLEX_USER_ARGON2_ITERATIONS".into(), "1".into()),
        ]);
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_lookup(|k| vars.get(k).cloned()).expect("test settings")
    }

    /// An account service on this database (migrated) with a clock the test moves.
    pub fn accounts(&self, extra: &[(&str, &str)]) -> (Accounts, ManualClock) {
        let settings = self.settings(extra);
        let pool = db::connect(&settings.database_url, 24).expect("connect");
        let clock = ManualClock::default();
        (Accounts::new(pool, &settings).expect("accounts").with_clock(clock.clone()), clock)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.drop
            && let Ok(mut conn) = PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs each listed `fn(&TestDb)` as two tests, `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() {
                let db = $crate::common::TestDb::new($crate::common::Backend::Sqlite).unwrap();
                super::$name(&db);
            } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(db) = $crate::common::TestDb::new($crate::common::Backend::Postgres) {
                    super::$name(&db);
                }
            } )*
        }
    };
}

/// Runs `f(0) … f(n-1)` on `n` threads that start together (a barrier releases them once all
/// are ready), and returns the results in order. Put the preparation (CSRF tokens, sessions)
/// before the call, so that only the requests themselves race.
pub fn at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a racing thread panicked")).collect()
    })
}
