//! The `flex-user` command: serve (the default), migrate, create-user, create-superuser.
//! Every failure is one line on stderr and a non-zero exit, never a backtrace.

use std::io::BufRead as _;
use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flex_user::accounts::{Accounts, CreateUserError, FieldErrors, NewUser};
use flex_user::config::{LogFormat, SecretKeySource, Settings};
use flex_user::delivery::Senders;
use flex_user::flows::Flows;
use flex_user::{db, web};

#[derive(Parser)]
#[command(
    name = "flex-user",
    version,
    about = "Sign up and sign in with a username, an email address or a phone number"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server (the default)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Create a user with any of username, email and phone
    CreateUser(CreateArgs),
    /// Create a user with staff and superuser status
    CreateSuperuser(CreateArgs),
    /// Remove every second factor and recovery code of one user (they sign in with the
    /// password alone and can set them up again)
    ResetTwoFactor(ResetTwoFactorArgs),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ResetTwoFactorArgs {
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
}

#[derive(Args)]
struct CreateArgs {
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    /// Read the password from the first line of standard input (else the password is unusable
    /// until a reset)
    #[arg(long)]
    password_stdin: bool,
}

fn main() -> ExitCode {
    // Before anything can start a thread or a connection: OpenSSL without its exit-time cleanup,
    // which could otherwise free its tables under a thread still in a TLS handshake.
    db::init_openssl();
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("internal error: {}{place}", message.lines().next().unwrap_or_default());
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.to_string();
            eprintln!("{}", rendered.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    match run(cli.command.unwrap_or(Command::Serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    let settings = Settings::from_env().map_err(|e| e.to_string())?;
    match command {
        Command::Serve => serve(settings),
        Command::Migrate => {
            init_logging(settings.log_format);
            let mut conn = settings.database_url.connect().map_err(|e| e.to_string())?;
            let applied = db::migrate(&mut conn).map_err(|e| e.to_string())?;
            println!("applied {applied} migration(s) to {}", settings.database_url);
            Ok(())
        }
        Command::CreateUser(args) => create(settings, args, false),
        Command::CreateSuperuser(args) => create(settings, args, true),
        Command::ResetTwoFactor(args) => reset_two_factor(settings, args),
    }
}

/// `flex-user reset-two-factor --username U | --email E | --phone P`.
fn reset_two_factor(settings: Settings, args: ResetTwoFactorArgs) -> Result<(), String> {
    use flex_user::domain::{Email, Identifier, Phone, Username};
    let identifier = match (&args.username, &args.email, &args.phone) {
        (Some(u), _, _) => Identifier::Username(Username::parse(u).map_err(|e| format!("username: {}", e.0))?),
        (_, Some(e), _) => Identifier::Email(Email::parse(e).map_err(|e| format!("email: {}", e.0))?),
        (_, _, Some(p)) => {
            Identifier::Phone(Phone::parse(p, settings.default_region).map_err(|e| format!("phone: {}", e.0))?)
        }
        _ => return Err("give one of --username, --email, --phone".into()),
    };
    let pool = db::connect_for_command(&settings.database_url, 2).map_err(|e| e.to_string())?;
    let accounts = Accounts::new(pool, &settings).map_err(|e| format!("{e:#}"))?;
    let user = accounts.find_user(&identifier).map_err(|e| format!("{e:#}"))?.ok_or("no such user")?;
    if !accounts.reset_two_factor(user.id).map_err(|e| format!("{e:#}"))? {
        return Err("no such user".into());
    }
    println!("removed every second factor and recovery code of user {} ({})", user.id, user.display_name());
    Ok(())
}

/// Logs of the one-shot commands: straight to stderr, so nothing is left unwritten at exit.
fn init_logging(format: LogFormat) {
    init_logging_to(format, std::io::stderr);
}

/// The server's logs: one thread of their own writes them to stderr, a batch at a time, so a
/// request never waits on a write(2) or stderr's lock (one line per request cost half of a page's
/// throughput). Not lossy: when the bounded queue is full, loggers wait rather than drop a line.
/// The guard flushes what is queued when it is dropped: keep it until the server has stopped.
fn init_server_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(8_192) // about 2 MB of lines at most
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    init_logging_to(format, writer);
    guard
}

fn init_logging_to<W>(format: LogFormat, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => logs.json().init(),
        // colour only for a person at a terminal: a file or a pipe gets plain text
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    let _logs = init_server_logging(settings.log_format);
    // Everything that can fail on bad configuration comes first, so a failure is one line.
    let pool = db::connect(&settings.database_url, 16).map_err(|e| e.to_string())?;
    let accounts = Accounts::new(pool, &settings).map_err(|e| format!("{e:#}"))?;
    let listener = TcpListener::bind(&settings.bind)
        .map_err(|e| format!("FLEX_USER_BIND: cannot listen on {}: {e}", settings.bind))?;
    let metrics_listener = web::monitoring::bind(&settings)?;
    match &settings.secret_key_source {
        SecretKeySource::Random => tracing::warn!(
            "FLEX_USER_SECRET_KEY is not set: using a random key, so sessions and codes end when the process does \
             (set FLEX_USER_SECRET_KEY_FILE=PATH to keep one across restarts)"
        ),
        SecretKeySource::File { path, created: true } => {
            tracing::info!(path = %path.display(), "made a new secret key and kept it (mode 0600)")
        }
        SecretKeySource::File { path, created: false } => tracing::info!(path = %path.display(), "secret key read"),
        SecretKeySource::Variable => {}
    }
    let key_is_new =
        matches!(settings.secret_key_source, SecretKeySource::Random | SecretKeySource::File { created: true, .. });
    if key_is_new && settings.database_url.is_postgres() {
        tracing::warn!(
            "with PostgreSQL, every instance must use the same key: set FLEX_USER_SECRET_KEY to one value on all of them"
        );
    }
    tracing::info!(database = %settings.database_url, bind = %settings.bind, "starting");
    let mut settings = settings;
    if settings.public_url_is_default
        && let Ok(local) = listener.local_addr()
        && let Ok(url) = url::Url::parse(&format!("http://{local}"))
    {
        // the port actually bound (FLEX_USER_BIND may ask for port 0)
        settings.public_url = url;
    }
    println!("flex-user is serving {}", settings.public_url);
    let senders = Senders::from_settings(&settings).map_err(|e| format!("{e:#}"))?;
    let state = web::AppState::new(Flows::new(accounts, &settings), settings);
    return_freed_memory_now_and_then();
    actix_web::rt::System::new()
        .block_on(async move {
            // metrics first, so the recorder counts the site's first request
            let metrics = match metrics_listener {
                Some(listener) => {
                    let hash_load = web::monitoring::hash_pool_load(&state.flows);
                    Some(web::monitoring::run(listener, &state.flows, hash_load)?)
                }
                None => None,
            };
            let site = web::run(listener, state, senders)?;
            match metrics {
                Some(metrics) => tokio::try_join!(site, metrics).map(|_| ()),
                None => site.await,
            }
        })
        .map_err(|e| format!("server: {e}"))
}

/// After a flood, glibc's malloc keeps the memory its many threads freed (thousands of
/// connections' buffers, blocking threads' arenas) for reuse, so the resident size would stay at
/// the flood's peak. Every 10 s a thread of its own asks it to give free pages back to the
/// system, so memory returns near idle once the load is gone (a no-op when nothing is free).
fn return_freed_memory_now_and_then() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(10));
                // SAFETY: malloc_trim takes no pointers and only locks and walks malloc's own arenas.
                unsafe { libc::malloc_trim(0) };
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::warn!("cannot start the malloc-trim thread: {e}"));
}

fn create(settings: Settings, args: CreateArgs, superuser: bool) -> Result<(), String> {
    let mut new = NewUser::from_raw(
        args.username.as_deref(),
        args.email.as_deref(),
        args.phone.as_deref(),
        settings.default_region,
    )
    .map_err(|e| cli_line(&e))?;
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("password: cannot read standard input: {e}"))?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err("password: standard input held no password".into());
        }
        new = new.password(password);
    } else if new.email.is_none() && new.phone.is_none() && new.username.is_some() {
        // Nobody could ever sign in: no password, and no address to reset one through. (With no
        // identifier at all, `create_user` gives the seed's message.)
        return Err("password: an account without a password needs an email or phone to get one by reset".into());
    }

    // No background pool fill: nothing may still be connecting when the command exits.
    let pool = db::connect_for_command(&settings.database_url, 2).map_err(|e| e.to_string())?;
    let accounts = Accounts::new(pool, &settings).map_err(|e| format!("{e:#}"))?;
    let created = if superuser { accounts.create_superuser(new) } else { accounts.create_user(new) };
    match created {
        Ok(user) => {
            println!("created {} {} ({})", if superuser { "superuser" } else { "user" }, user.id, user.display_name());
            Ok(())
        }
        Err(CreateUserError::Invalid(errors)) => Err(cli_line(&errors)),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// `email: a user with that email address already exists` (the form messages, as a CLI line).
fn cli_line(errors: &FieldErrors) -> String {
    let quiet = |message: &str| {
        let message = message.trim_end_matches('.');
        let mut chars = message.chars();
        chars.next().map(|c| c.to_lowercase().chain(chars).collect::<String>()).unwrap_or_default()
    };
    errors
        .0
        .iter()
        .map(|(field, message)| match field {
            Some(field) => format!("{}: {}", field.as_str(), quiet(message)),
            None => quiet(message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
