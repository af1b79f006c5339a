//! The library API in one run: `cargo run --example library`.
//! Uses a throwaway SQLite file; the same code runs on PostgreSQL with a postgres:// URL.

use flex_user::accounts::{Accounts, CheckError, NewUser};
use flex_user::config::Settings;
use flex_user::db;
use flex_user::domain::{Email, Phone, Username};

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flex-user-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("example.db").display());
    let settings = Settings::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))?;
    let pool = db::connect(&settings.database_url, 4)?; // applies migrations
    let accounts = Accounts::new(pool, &settings)?;

    // create_user: any non-empty subset of username, email, phone
    let alice = accounts.create_user(
        NewUser::new()
            .username(Username::parse("alice")?)
            .email(Email::parse("Alice@Example.org")?)
            .password("correct horse battery staple"),
    )?;
    // create_superuser: is_staff and is_superuser set; no password means an unusable one
    let root = accounts.create_superuser(NewUser::new().phone(Phone::parse("+1 202 555 1234", None)?))?;
    assert!(root.is_superuser && !root.has_usable_password());

    // authenticate with any identifier, matched case-insensitively (phones by E.164)
    let signed_in = accounts.authenticate("ALICE@example.org", "correct horse battery staple")?;
    assert_eq!(signed_in.map(|u| u.id), Some(alice.id));
    assert!(accounts.authenticate("alice", "wrong")?.is_none());

    // email token: generate_password returns the code once; check_password spends it
    let token = accounts.email_token(alice.id)?.expect("alice has an email");
    let code = accounts.generate_password(&token)?;
    assert!(!accounts.check_password(&token, "000000x")?); // wrong: 1 s of refusal begins
    match accounts.check_password(&token, code.as_str()) {
        Err(CheckError::Throttled(t)) => println!("throttled until {} after {} failure(s)", t.until, t.failures),
        other => panic!("expected the seed's TimeoutError, got {other:?}"),
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(accounts.check_password(&token, code.as_str())?);
    assert!(accounts.email_token(alice.id)?.unwrap().state.verified);

    std::fs::remove_dir_all(&dir)?;
    println!("ok");
    Ok(())
}
