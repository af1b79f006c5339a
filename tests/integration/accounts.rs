//! The library API against a real database, on SQLite and on PostgreSQL.

use std::sync::{Arc, Barrier};

use crate::common::TestDb;
use chrono::Duration;
use flex_user::accounts::{AccountError, Change, CheckError, Field, IdentifierChanges, NewUser};
use flex_user::domain::{Email, Identifier, Phone, Username};

fn username(s: &str) -> Username {
    Username::parse(s).unwrap()
}
fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}
fn phone(s: &str) -> Phone {
    Phone::parse(s, None).unwrap()
}

fn invalid(result: Result<impl std::fmt::Debug, AccountError>) -> flex_user::accounts::FieldErrors {
    match result {
        Err(AccountError::Invalid(errors)) => errors,
        other => panic!("expected field errors, got {other:?}"),
    }
}

on_both_databases!(
    creates_users_with_any_subset_of_identifiers,
    identifiers_are_unique_case_insensitively,
    create_superuser_sets_and_insists_on_flags,
    authenticate_with_each_identifier,
    inactive_and_passwordless_users_never_authenticate,
    natural_key_lookup,
    tokens_follow_their_address,
    codes_verify_once_and_throttle,
    codes_expire,
    concurrent_checks_lose_no_failure_and_spend_a_code_once,
    twenty_simultaneous_creates_give_one_user,
    identifier_changes_keep_or_reset_verification,
    confusable_usernames_are_refused,
    twenty_simultaneous_look_alikes_give_one_user,
    start_up_fills_the_skeletons_of_old_rows,
    a_sign_in_refused_for_load_costs_no_turn,
);

fn creates_users_with_any_subset_of_identifiers(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let a = accounts.create_user(NewUser::new().username(username("alice")).password("pw1")).unwrap();
    assert_eq!((a.display_name(), a.email.is_none(), a.phone.is_none()), ("alice", true, true));
    assert!(!a.is_staff && !a.is_superuser && a.is_active);
    assert!(a.last_login.is_none());

    let b = accounts.create_user(NewUser::new().email(email("Bob@Example.ORG"))).unwrap();
    assert_eq!(b.email.as_ref().unwrap().as_str(), "Bob@example.org");
    assert!(!b.has_usable_password());

    let c = accounts.create_user(NewUser::new().phone(phone("+1 202 555 1234")).password("pw3")).unwrap();
    assert_eq!(c.phone.as_ref().unwrap().as_str(), "+12025551234");

    let all = accounts
        .create_user(
            NewUser::new().username(username("validUsérname")).email(email("d@x.org")).phone(phone("+442079460958")),
        )
        .unwrap();
    assert_eq!(all.display_name(), "validUsérname");
    assert_ne!(a.id, all.id);

    let none = invalid(accounts.create_user(NewUser::new().password("pw")));
    assert_eq!(
        none.general().collect::<Vec<_>>(),
        ["You must supply at least one of username, email address or phone number."]
    );
}

fn identifiers_are_unique_case_insensitively(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    accounts
        .create_user(
            NewUser::new().username(username("Straße")).email(email("Alice@x.org")).phone(phone("+12025551234")),
        )
        .unwrap();
    let errors = invalid(accounts.create_user(
        NewUser::new().username(username("STRASSE")).email(email("alice@X.ORG")).phone(phone("+1 (202) 555-1234")),
    ));
    assert_eq!(errors.get(Field::Username), Some("A user with that username already exists."));
    assert_eq!(errors.get(Field::Email), Some("A user with that email address already exists."));
    assert_eq!(errors.get(Field::Phone), Some("A user with that phone number already exists."));
    // composed and combining forms are one username
    accounts.create_user(NewUser::new().username(username("validUs\u{e9}rname"))).unwrap();
    let errors = invalid(accounts.create_user(NewUser::new().username(username("validUse\u{301}rname"))));
    assert!(errors.get(Field::Username).is_some());
}

fn create_superuser_sets_and_insists_on_flags(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let root = accounts.create_superuser(NewUser::new().username(username("root")).password("pw")).unwrap();
    assert!(root.is_staff && root.is_superuser);
    let refused = accounts.create_superuser(NewUser::new().username(username("r2")).staff(false));
    assert!(matches!(refused, Err(AccountError::Refused("Superuser must have is_staff=True."))));
    let refused = accounts.create_superuser(NewUser::new().username(username("r3")).superuser(false));
    assert!(matches!(refused, Err(AccountError::Refused("Superuser must have is_superuser=True."))));
    assert!(accounts.find_user(&Identifier::Username(username("r2"))).unwrap().is_none());
}

fn authenticate_with_each_identifier(db: &TestDb) {
    let (accounts, _) = db.accounts(&[("FLEX_USER_DEFAULT_REGION", "US")]);
    let user = accounts
        .create_user(
            NewUser::new()
                .username(username("Alice"))
                .email(email("alice@example.org"))
                .phone(phone("+12025551234"))
                .password("correct horse battery"),
        )
        .unwrap();
    for typed in
        ["Alice", "ALICE", " alice ", "alice@example.org", "ALICE@Example.org", "+1 202 555 1234", "(202) 555-1234"]
    {
        let found = accounts.authenticate(typed, "correct horse battery").unwrap();
        assert_eq!(found.map(|u| u.id), Some(user.id), "{typed}");
    }
    for (typed, password) in [
        ("alice", "wrong"),
        ("alice", ""),
        ("alice", "Correct horse battery"),
        ("bob", "correct horse battery"),
        ("", "correct horse battery"),
        ("-x", "correct horse battery"),
    ] {
        assert!(accounts.authenticate(typed, password).unwrap().is_none(), "{typed}/{password}");
    }
    accounts.record_login(user.id).unwrap();
    assert_eq!(
        accounts.get_user(user.id).unwrap().unwrap().last_login.map(|t| t.timestamp()),
        Some(accounts.now().timestamp())
    );
}

fn inactive_and_passwordless_users_never_authenticate(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    accounts.create_user(NewUser::new().username(username("sleepy")).password("pw").active(false)).unwrap();
    assert!(accounts.authenticate("sleepy", "pw").unwrap().is_none());
    let nopass = accounts.create_user(NewUser::new().email(email("n@x.org"))).unwrap();
    assert!(accounts.authenticate("n@x.org", "").unwrap().is_none());
    assert!(accounts.authenticate("n@x.org", "!").unwrap().is_none());
    accounts.set_password(nopass.id, Some("now one")).unwrap();
    assert_eq!(accounts.authenticate("n@x.org", "now one").unwrap().map(|u| u.id), Some(nopass.id));
    accounts.set_password(nopass.id, None).unwrap();
    assert!(accounts.authenticate("n@x.org", "now one").unwrap().is_none());
}

fn natural_key_lookup(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let u = accounts.create_user(NewUser::new().username(username("nk")).email(email("nk@x.org"))).unwrap();
    let found = accounts.get_by_natural_key(Some(&username("NK")), None, None).unwrap();
    assert_eq!(found.map(|f| f.id), Some(u.id));
    let found = accounts.get_by_natural_key(Some(&username("nk")), Some(&email("NK@x.org")), None).unwrap();
    assert_eq!(found.map(|f| f.id), Some(u.id));
    assert!(accounts.get_by_natural_key(Some(&username("nk")), Some(&email("other@x.org")), None).unwrap().is_none());
    assert!(accounts.get_by_natural_key(None, None, None).is_err());
}

fn tokens_follow_their_address(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let u = accounts.create_user(NewUser::new().username(username("tok")).email(email("t@x.org"))).unwrap();
    let token = accounts.email_token(u.id).unwrap().expect("created with the address");
    assert_eq!(token.address, "t@x.org");
    assert!(!token.state.verified);
    assert!(accounts.phone_token(u.id).unwrap().is_none());

    let code = accounts.generate_password(&token).unwrap();
    assert!(accounts.check_password(&token, code.as_str()).unwrap());
    assert!(accounts.email_token(u.id).unwrap().unwrap().state.verified);

    // a changed address resets the token; a removed one deletes it; a new one creates it
    let changes = IdentifierChanges {
        email: Change::Set(email("t2@x.org")),
        phone: Change::Set(phone("+12025550100")),
        ..Default::default()
    };
    accounts.update_identifiers(u.id, changes).unwrap();
    let token = accounts.email_token(u.id).unwrap().unwrap();
    assert_eq!(token.address, "t2@x.org");
    assert!(!token.state.verified);
    assert!(!token.state.has_live_code(accounts.now()));
    assert_eq!(accounts.phone_token(u.id).unwrap().unwrap().address, "+12025550100");
    let changes = IdentifierChanges { email: Change::Remove, ..Default::default() };
    accounts.update_identifiers(u.id, changes).unwrap();
    assert!(accounts.email_token(u.id).unwrap().is_none());
    // a code made for the old token does not carry over
    assert!(matches!(accounts.check_password(&token, code.as_str()), Err(CheckError::NoToken)));
}

fn codes_verify_once_and_throttle(db: &TestDb) {
    let (accounts, clock) = db.accounts(&[]);
    let u = accounts.create_user(NewUser::new().phone(phone("+12025551234"))).unwrap();
    let token = accounts.phone_token(u.id).unwrap().unwrap();
    let code = accounts.generate_password(&token).unwrap();
    assert_eq!(code.as_str().len(), 6);
    let wrong = if code.as_str() == "000000" { "111111" } else { "000000" };

    assert!(!accounts.check_password(&token, wrong).unwrap());
    let throttled = match accounts.check_password(&token, code.as_str()) {
        Err(CheckError::Throttled(t)) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(throttled.failures, 1);
    assert_eq!(throttled.retry_after_secs(accounts.now()), 1);
    clock.advance(Duration::seconds(1));
    assert!(!accounts.check_password(&token, wrong).unwrap());
    clock.advance(Duration::milliseconds(1999));
    assert!(matches!(accounts.check_password(&token, code.as_str()), Err(CheckError::Throttled(t)) if t.failures == 2));
    clock.advance(Duration::milliseconds(1));
    assert!(accounts.check_password(&token, code.as_str()).unwrap(), "right after the window");
    let stored = accounts.phone_token(u.id).unwrap().unwrap();
    assert!(stored.state.verified);
    assert_eq!(stored.state.backoff.failures, 0);
    // single use
    assert!(!accounts.check_password(&token, code.as_str()).unwrap());

    // void after ten failures: a right code then fails too
    let code = accounts.generate_password(&token).unwrap();
    for _ in 0..10 {
        clock.advance(Duration::hours(1));
        assert!(!accounts.check_password(&token, wrong).unwrap());
    }
    clock.advance(Duration::hours(1));
    assert!(!accounts.check_password(&token, code.as_str()).unwrap());
    assert_eq!(accounts.phone_token(u.id).unwrap().unwrap().state.backoff.failures, 11);
}

fn codes_expire(db: &TestDb) {
    let (accounts, clock) = db.accounts(&[("FLEX_USER_OTP_TTL", "60"), ("FLEX_USER_OTP_LENGTH", "8")]);
    let u = accounts.create_user(NewUser::new().email(email("e@x.org"))).unwrap();
    let token = accounts.email_token(u.id).unwrap().unwrap();
    let code = accounts.generate_password(&token).unwrap();
    assert_eq!(code.as_str().len(), 8);
    clock.advance(Duration::seconds(60));
    assert!(!accounts.check_password(&token, code.as_str()).unwrap(), "expired");
    // a new code replaces the old one and resets the count
    let old = code;
    let code = accounts.generate_password(&token).unwrap();
    assert_eq!(accounts.email_token(u.id).unwrap().unwrap().state.backoff.failures, 0);
    if old != code {
        assert!(!accounts.check_password(&token, old.as_str()).unwrap(), "replaced");
        clock.advance(Duration::seconds(1));
    }
    assert!(accounts.check_password(&token, code.as_str()).unwrap());
}

fn concurrent_checks_lose_no_failure_and_spend_a_code_once(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let u = accounts.create_user(NewUser::new().email(email("c@x.org"))).unwrap();
    let token = accounts.email_token(u.id).unwrap().unwrap();
    let code = accounts.generate_password(&token).unwrap();
    // The clock does not move: after the first failure every check is inside the window.
    // Of 12 simultaneous wrong checks exactly one is counted, the rest are refused.
    let results = in_parallel(12, |_| accounts.check_password(&token, "not the code"));
    let counted = results.iter().filter(|r| matches!(r, Ok(false))).count();
    let refused = results.iter().filter(|r| matches!(r, Err(CheckError::Throttled(_)))).count();
    assert_eq!((counted, refused), (1, 11), "{results:?}");
    assert_eq!(accounts.email_token(u.id).unwrap().unwrap().state.backoff.failures, 1);

    let code2 = accounts.generate_password(&token).unwrap();
    drop(code);
    let results = in_parallel(12, |_| accounts.check_password(&token, code2.as_str()));
    let wins = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(wins, 1, "{results:?}");
}

fn twenty_simultaneous_creates_give_one_user(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let results = in_parallel(20, |i| {
        accounts.create_user(NewUser::new().email(email("race@x.org")).username(username(&format!("racer{i}"))))
    });
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            match e {
                AccountError::Invalid(errors) => {
                    assert_eq!(errors.get(Field::Email), Some("A user with that email address already exists."))
                }
                other => panic!("not a clean error: {other:?}"),
            }
        }
    }
}

fn identifier_changes_keep_or_reset_verification(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let u = accounts.create_user(NewUser::new().username(username("ch")).email(email("ch@x.org"))).unwrap();
    accounts.create_user(NewUser::new().email(email("taken@x.org"))).unwrap();
    let token = accounts.email_token(u.id).unwrap().unwrap();
    let code = accounts.generate_password(&token).unwrap();
    assert!(accounts.check_password(&token, code.as_str()).unwrap());

    // same address, other case: nothing changes, still verified
    let updated = accounts
        .update_identifiers(u.id, IdentifierChanges { email: Change::Set(email("CH@X.org")), ..Default::default() })
        .unwrap();
    assert_eq!(updated.after.email.as_ref().unwrap().as_str(), "ch@x.org");
    assert!(updated.new_email().is_none());
    assert!(accounts.email_token(u.id).unwrap().unwrap().state.verified);

    // taken by someone else
    let errors = invalid(accounts.update_identifiers(
        u.id,
        IdentifierChanges { email: Change::Set(email("Taken@x.org")), ..Default::default() },
    ));
    assert_eq!(errors.get(Field::Email), Some("A user with that email address already exists."));

    // removing every identifier is refused, and changes nothing
    let all_gone = IdentifierChanges { username: Change::Remove, email: Change::Remove, phone: Change::Remove };
    let errors = invalid(accounts.update_identifiers(u.id, all_gone));
    assert_eq!(errors.general().count(), 1);
    let now = accounts.get_user(u.id).unwrap().unwrap();
    assert_eq!((now.display_name(), now.email.is_some()), ("ch", true));

    // a real change resets verification
    let updated = accounts
        .update_identifiers(u.id, IdentifierChanges { email: Change::Set(email("new@x.org")), ..Default::default() })
        .unwrap();
    assert_eq!(updated.new_email().map(Email::as_str), Some("new@x.org"));
    assert!(!accounts.email_token(u.id).unwrap().unwrap().state.verified);
}

const TOO_SIMILAR: &str = "That username is too similar to an existing username.";

fn confusable_usernames_are_refused(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    let admin = accounts.create_user(NewUser::new().username(username("admin")).password("pw")).unwrap();
    // U+0131 dotless ı (in either case) and `rn` for `m`: each looks like a taken name
    for look_alike in ["adm\u{131}n", "ADM\u{131}N", "adrnin"] {
        let errors = invalid(accounts.create_user(NewUser::new().username(username(look_alike)).password("pw")));
        assert_eq!(errors.get(Field::Username), Some(TOO_SIMILAR), "{look_alike}");
        assert!(accounts.find_user(&Identifier::Username(username(look_alike))).unwrap().is_none());
    }
    // the same name in other case is simply taken
    let errors = invalid(accounts.create_user(NewUser::new().username(username("Admin"))));
    assert_eq!(errors.get(Field::Username), Some("A user with that username already exists."));

    let paypal = accounts.create_user(NewUser::new().username(username("paypal")).email(email("p@x.org"))).unwrap();
    let other = accounts.create_user(NewUser::new().username(username("other")).email(email("o@x.org"))).unwrap();
    let rename = |id, name: &str| {
        accounts
            .update_identifiers(id, IdentifierChanges { username: Change::Set(username(name)), ..Default::default() })
    };
    let errors = invalid(rename(other.id, "paypa1"));
    assert_eq!(errors.get(Field::Username), Some(TOO_SIMILAR));
    assert_eq!(accounts.get_user(other.id).unwrap().unwrap().display_name(), "other", "nothing changed");
    // a user's own look-alike is no clash: `paypal` may become `PayPa1`
    assert_eq!(rename(paypal.id, "PayPa1").unwrap().after.display_name(), "PayPa1");
    // a removed or renamed username frees its skeleton
    rename(admin.id, "root").unwrap();
    accounts.create_user(NewUser::new().username(username("adm\u{131}n"))).unwrap();
    let gone = IdentifierChanges { username: Change::Remove, ..Default::default() };
    accounts.update_identifiers(paypal.id, gone).unwrap();
    rename(other.id, "paypal").unwrap();
}

fn twenty_simultaneous_look_alikes_give_one_user(db: &TestDb) {
    let (accounts, _) = db.accounts(&[]);
    // 20 different names (different keys) with one skeleton: `o`/`0`, `l`/`1` and `i`/`ı`
    let name = |i: usize| {
        let pick = |bit: usize, a: char, b: char| if i & (1 << bit) == 0 { a } else { b };
        ['b', pick(0, 'o', '0'), pick(1, 'o', '0'), pick(2, 'l', '1'), pick(3, 'l', '1'), pick(4, 'i', '\u{131}')]
            .into_iter()
            .collect::<String>()
    };
    let results = in_parallel(20, |i| accounts.create_user(NewUser::new().username(username(&name(i)))));
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for r in &results {
        match r {
            Ok(_) => {}
            Err(AccountError::Invalid(errors)) => assert_eq!(errors.get(Field::Username), Some(TOO_SIMILAR)),
            Err(other) => panic!("not a clean error: {other:?}"),
        }
    }
}

fn start_up_fills_the_skeletons_of_old_rows(db: &TestDb) {
    use diesel::prelude::*;
    use flex_user::db::schema::users;
    let (accounts, _) = db.accounts(&[]);
    let admin = accounts.create_user(NewUser::new().username(username("admin"))).unwrap();
    let bob = accounts.create_user(NewUser::new().username(username("Bob")).email(email("bob@x.org"))).unwrap();
    let nameless = accounts.create_user(NewUser::new().email(email("n@x.org"))).unwrap();
    let old = accounts.create_user(NewUser::new().username(username("placeholder")).email(email("o@x.org"))).unwrap();
    // As before the migration: no skeletons, and a look-alike pair the old rules let in.
    let mut conn = db.url.connect().unwrap();
    diesel::update(users::table.find(old.id))
        .set((users::username.eq("adm\u{131}n"), users::username_key.eq("adm\u{131}n")))
        .execute(&mut conn)
        .unwrap();
    diesel::update(users::table).set(users::username_skeleton.eq(None::<String>)).execute(&mut conn).unwrap();
    let skeletons = |conn: &mut flex_user::db::AnyConnection| -> Vec<Option<String>> {
        [admin.id, bob.id, nameless.id, old.id]
            .map(|id| users::table.find(id).select(users::username_skeleton).first(conn).unwrap())
            .into()
    };
    let start_up = || {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(logs.clone()).finish();
        tracing::subscriber::with_default(subscriber, || flex_user::db::connect(&db.url, 2).unwrap());
        logs.text()
    };

    let logs = start_up();
    let skeleton = |name: &str| Some(username(name).skeleton());
    // the older account keeps the skeleton; the younger look-alike stays empty, with a warning
    assert_eq!(skeletons(&mut conn), [skeleton("admin"), skeleton("bob"), None, None]);
    assert!(logs.contains("WARN") && logs.contains("confusable skeleton"), "{logs}");
    assert!(logs.contains(&format!("user_id={}", old.id)) && logs.contains(&format!("={}", admin.id)), "{logs}");
    assert!(!logs.contains("adm"), "ids, not usernames: {logs}");

    // the look-alike still works, and blocks nothing it should not; new look-alikes are refused
    let changes = IdentifierChanges { email: Change::Set(email("o2@x.org")), ..Default::default() };
    accounts.update_identifiers(old.id, changes).unwrap();
    let errors = invalid(accounts.create_user(NewUser::new().username(username("adrnin"))));
    assert_eq!(errors.get(Field::Username), Some(TOO_SIMILAR));

    // once the older one is renamed, the next start-up fills the other
    let rename = IdentifierChanges { username: Change::Set(username("root")), ..Default::default() };
    accounts.update_identifiers(admin.id, rename).unwrap();
    let logs = start_up();
    assert_eq!(skeletons(&mut conn), [skeleton("root"), skeleton("bob"), None, skeleton("adm\u{131}n")]);
    assert!(!logs.contains("WARN"), "{logs}");
}

/// Log lines written while it is the default subscriber's writer.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Runs `f(0..n)` on n threads released at the same instant.
fn in_parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let barrier = barrier.clone();
                let f = &f;
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread panicked")).collect()
    })
}

/// A sign-in the hashing pool refuses for load (a 503) was never evaluated: its turn of the
/// backoff is handed back, so the next attempt is not throttled as if the password had been
/// wrong; a turn already counted before stays counted.
fn a_sign_in_refused_for_load_costs_no_turn(db: &TestDb) {
    use diesel::prelude::*;
    use flex_user::accounts::{Accounts, Busy};
    use flex_user::db::schema::throttles;
    use flex_user::domain::RequestContext;
    use flex_user::flows::{Flows, SignIn};

    let settings = db.settings(&[]);
    let (accounts, clock) = db.accounts(&[]);
    accounts.create_user(NewUser::new().username(username("alice")).password("pw1")).unwrap();
    let flows = Flows::new(accounts.clone(), &settings);
    // a second instance on the same database whose pool refuses every job as waited too long
    let mut starved = settings.clone();
    starved.hash_pool.max_wait = std::time::Duration::ZERO;
    let busy =
        Flows::new(Accounts::new(accounts.pool().clone(), &starved).unwrap().with_clock(clock.clone()), &starved);
    let ctx = RequestContext::default();
    let rows = |conn: &mut flex_user::db::AnyConnection| -> Vec<i32> {
        throttles::table.select(throttles::failures).load(conn).unwrap()
    };

    for _ in 0..3 {
        let refused = busy.sign_in("alice", "pw1", &ctx).unwrap_err();
        assert!(refused.downcast_ref::<Busy>().is_some(), "{refused:?}");
    }
    assert_eq!(rows(&mut accounts.pool().get().unwrap()), Vec::<i32>::new(), "no turn is left claimed");
    assert!(matches!(flows.sign_in("alice", "pw1", &ctx).unwrap(), SignIn::SignedIn(_)));

    // one wrong password counts; a refusal after its window leaves that count as it was
    assert!(matches!(flows.sign_in("alice", "wrong", &ctx).unwrap(), SignIn::Wrong));
    clock.advance(Duration::seconds(2));
    assert!(busy.sign_in("alice", "pw1", &ctx).is_err());
    assert_eq!(rows(&mut accounts.pool().get().unwrap()), vec![1]);
    assert!(matches!(flows.sign_in("alice", "pw1", &ctx).unwrap(), SignIn::SignedIn(_)), "no window open");
}
