//! The database: backend chosen from `DATABASE_URL`, a connection pool, embedded migrations.
//!
//! The backend is chosen from the URL scheme here, not by `MultiConnection::establish` (which
//! tries each backend in turn and hides the real connection error).

pub mod ip_limits;
pub mod schema;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2;
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// One connection to either backend; queries written once run on both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Where the data lives. `Debug` and `Display` hide a PostgreSQL password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path.
    Sqlite(String),
    /// A libpq connection URL (may hold a password: never log it).
    Postgres(String),
}

impl DatabaseUrl {
    /// `sqlite://PATH`, `sqlite:PATH`, a bare path, or `postgres://…` / `postgresql://…`.
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://flex-user.db".into());
            }
            return Ok(DatabaseUrl::Sqlite(path.into()));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            url::Url::parse(text).map_err(|e| format!("is not a valid PostgreSQL URL ({e})"))?;
            return Ok(DatabaseUrl::Postgres(text.into()));
        }
        // Anything else with a scheme is a mistake, not a file name (`mysql://…`, `file:x.db`).
        if let Some((scheme, _)) = text.split_once(':')
            && scheme.len() > 1
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(format!("unsupported scheme {scheme:?}: use sqlite://PATH or postgres://…"));
        }
        Ok(DatabaseUrl::Sqlite(text.into()))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }

    /// Opens one connection, with the backend's real error as one line.
    pub fn connect(&self) -> Result<AnyConnection, DbError> {
        match self {
            DatabaseUrl::Postgres(url) => {
                init_openssl();
                PgConnection::establish(url)
                    .map(AnyConnection::Postgresql)
                    .map_err(|e| DbError::Connect(one_line(&e.to_string())))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn =
                    SqliteConnection::establish(path).map_err(|e| DbError::Connect(one_line(&e.to_string())))?;
                // WAL lets readers run beside the writer; busy_timeout makes writers queue
                // instead of failing at once.
                // busy_timeout first: switching to WAL needs a moment's exclusive lock, and pool
                // connections open several at once.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| DbError::Connect(one_line(&e.to_string())))?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

impl std::fmt::Display for DatabaseUrl {
    /// Safe for logs: a PostgreSQL URL is shown without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{path}"),
            DatabaseUrl::Postgres(text) => match url::Url::parse(text) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    write!(f, "{url}")
                }
                Err(_) => f.write_str("postgres://…"),
            },
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot apply migrations: {0}")]
    Migrate(String),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Makes pool connections with [`DatabaseUrl::connect`].
#[derive(Debug, Clone)]
pub struct Manager(DatabaseUrl);

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = DbError;

    fn connect(&self) -> Result<AnyConnection, DbError> {
        self.0.connect()
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// Initialises OpenSSL (libpq's TLS) without its exit-time cleanup (`openssl_sys::init` passes
/// `OPENSSL_INIT_NO_ATEXIT`). That cleanup frees OpenSSL's tables while other threads may still
/// be using them, e.g. a pool worker in a TLS handshake when the process exits: a SIGSEGV. The
/// first initialisation decides, so call this before anything opens a connection; it runs once.
pub fn init_openssl() {
    openssl_sys::init();
}

/// Connects (reporting the real error when the database is unreachable), applies pending
/// migrations, fills in what they leave to the application, and returns a pool that keeps an
/// idle connection ready: for the server.
pub fn connect(url: &DatabaseUrl, max_size: u32) -> Result<Pool, DbError> {
    open(url, max_size, 1)
}

/// As [`connect`], for a one-shot command (`create-user`): the pool opens a connection only when
/// one is asked for, and the caller waits for it. A pool that refills itself in the background
/// can still be opening a connection on its worker thread when the command exits.
pub fn connect_for_command(url: &DatabaseUrl, max_size: u32) -> Result<Pool, DbError> {
    open(url, max_size, 0)
}

fn open(url: &DatabaseUrl, max_size: u32, min_idle: u32) -> Result<Pool, DbError> {
    let mut conn = url.connect()?;
    migrate(&mut conn)?;
    backfill_username_skeletons(&mut conn)?;
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(min_idle))
        .connection_timeout(Duration::from_secs(10))
        .test_on_check_out(false)
        .build_unchecked(Manager(url.clone()));
    Ok(pool)
}

/// Fills `users.username_skeleton` where it is empty: rows made before the column existed.
/// Oldest first, so of two look-alike names from before the rule the older account keeps the
/// skeleton; the other stays empty, with a warning, for an operator to settle (its owner can
/// still sign in, and a new look-alike is refused because the older one holds the skeleton).
/// Returns how many rows it filled.
pub fn backfill_username_skeletons(conn: &mut AnyConnection) -> Result<usize, DbError> {
    use crate::domain::Username;
    use schema::users;

    let missing: Vec<(i64, String)> = users::table
        .filter(users::username_skeleton.is_null())
        .filter(users::username.is_not_null())
        .select((users::id, users::username.assume_not_null()))
        .order(users::id)
        .load(conn)?;
    let mut filled = 0;
    for (id, username) in missing {
        let skeleton = Username::from_stored(username).skeleton();
        // One statement each, outside a transaction: on PostgreSQL a clash would abort one.
        // `IS NULL` again: another instance starting at the same time may have filled it.
        let update = diesel::update(users::table.find(id).filter(users::username_skeleton.is_null()))
            .set(users::username_skeleton.eq(&skeleton))
            .execute(conn);
        match update {
            Ok(n) => filled += n,
            Err(e) if unique_violation(&e).is_some() => {
                let holder: Option<i64> = users::table
                    .filter(users::username_skeleton.eq(&skeleton))
                    .select(users::id)
                    .first(conn)
                    .optional()?;
                // ids only: a username is personal data, and the ids are enough to find both
                tracing::warn!(
                    user_id = id,
                    look_alike_user_id = holder,
                    "username looks like another user's (same confusable skeleton); left without a skeleton until \
                     one of them is renamed"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// Applies pending migrations; returns how many ran. On PostgreSQL an advisory lock keeps
/// instances that start together from migrating at once.
pub fn migrate(conn: &mut AnyConnection) -> Result<usize, DbError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migrate(one_line(&e.to_string()));
    match conn {
        AnyConnection::Postgresql(pg) => {
            const LOCK: &str = "SELECT pg_advisory_lock(7314259183)";
            const UNLOCK: &str = "SELECT pg_advisory_unlock(7314259183)";
            pg.batch_execute(LOCK)?;
            let result = pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()).map_err(failed);
            pg.batch_execute(UNLOCK)?;
            result
        }
        AnyConnection::Sqlite(lite) => lite.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()).map_err(failed),
    }
}

/// Runs `f` in a transaction that holds the write lock from its first statement.
///
/// SQLite's default `BEGIN` takes the lock only at the first write, and a transaction that read
/// before another connection wrote then fails with "database is locked" however long it waits;
/// `BEGIN IMMEDIATE` queues up front instead (behind `busy_timeout`). PostgreSQL's ordinary
/// transaction already does the right thing. `f` must not open a transaction itself.
pub fn write_transaction<T, E>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    if matches!(conn, AnyConnection::Postgresql(_)) {
        return conn.transaction(f);
    }
    conn.batch_execute("BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => match conn.batch_execute("COMMIT") {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Database time: UTC, microseconds (what PostgreSQL keeps), so both backends agree.
pub fn db_time(t: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDateTime {
    use chrono::DurationRound;
    t.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(t).naive_utc()
}

/// True when `e` is a unique-constraint violation; returns the violated constraint's text
/// (PostgreSQL's constraint name or SQLite's "table.column" message) for mapping to a field.
pub fn unique_violation(e: &diesel::result::Error) -> Option<String> {
    match e {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info) => {
            Some(info.constraint_name().map(str::to_owned).unwrap_or_else(|| info.message().to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_backend_from_the_scheme() {
        assert_eq!(DatabaseUrl::parse("sqlite://flex-user.db"), Ok(DatabaseUrl::Sqlite("flex-user.db".into())));
        assert_eq!(DatabaseUrl::parse("sqlite:///var/lib/x.db"), Ok(DatabaseUrl::Sqlite("/var/lib/x.db".into())));
        assert_eq!(DatabaseUrl::parse("data/x.db"), Ok(DatabaseUrl::Sqlite("data/x.db".into())));
        assert!(DatabaseUrl::parse("postgres://u@h/db").unwrap().is_postgres());
        assert!(DatabaseUrl::parse("postgresql://u@h:5432/db").unwrap().is_postgres());
        assert!(DatabaseUrl::parse("mysql://u@h/db").is_err());
        assert!(DatabaseUrl::parse("file:x.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn a_command_pool_opens_connections_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("x.db").to_string_lossy().into_owned());
        let settle = || std::thread::sleep(Duration::from_millis(300));
        let pool = connect_for_command(&url, 2).unwrap();
        settle();
        assert_eq!(pool.state().connections, 0, "nothing opened in the background");
        drop(pool.get().unwrap());
        settle();
        assert_eq!(pool.state().connections, 1, "the one asked for, and no refill");
        // the server's pool, by contrast, keeps one ready
        let server = connect(&url, 2).unwrap();
        let _busy = server.get().unwrap();
        settle();
        assert_eq!(server.state().connections, 2);
    }

    #[test]
    fn display_hides_the_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.internal/flex").unwrap();
        assert_eq!(url.to_string(), "postgres://app:***@db.internal/flex");
        assert!(!format!("{url:?}").contains("s3cret"));
    }
}
