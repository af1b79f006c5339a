//! Passkeys (WebAuthn, verified by `webauthn-rs`): rows of `second_factors` with kind
//! `'passkey'`, and the challenges of ceremonies in progress (`passkey_challenges`).
//!
//! - A row holds the passkey's name, a random public id (what the pages show and the remove
//!   form posts: it tells nothing of how many rows other accounts have), the credential id
//!   (base64url, unique: a credential belongs to one account) and, in `data`, the credential as
//!   webauthn-rs keeps it (public key, sign counter, backup flags) with the user handle it was
//!   made for. Nothing in it is secret: a copy of the database signs nothing.
//! - After each authentication the credential is updated as webauthn-rs advises
//!   (`Passkey::update_credential` with the `AuthenticationResult`) by a compare-and-swap on the
//!   stored `data`, so two concurrent uses of one counter cannot both move it. webauthn-rs itself
//!   refuses a counter that did not grow (a cloned authenticator).
//! - A challenge row is keyed by the SHA-256 of a random id the browser holds, bound to its kind
//!   and account, and used once: [`claim`] deletes it and goes on only when its DELETE removed
//!   the row, so of two finishes of one ceremony one goes on. Rows expire after
//!   [`CHALLENGE_TTL`] and are pruned by the housekeeping tick.
//! - Adding or removing a passkey moves the factor version (voiding trusted browsers, half
//!   sign-ins and pending setups); the first second factor brings recovery codes, the last one
//!   takes them away ([`super::factors`]).

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{Passkey, Uuid};

use super::factors::{self, FactorKeys, RecoveryCode};
use crate::db::schema::{passkey_challenges, second_factors};
use crate::db::{AnyConnection, db_time};
use crate::secret::SecretKey;

pub(crate) const PASSKEY_KIND: &str = "passkey";
/// How long a ceremony's challenge waits for its finish.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// The longest passkey name kept (in characters).
pub const NAME_MAX: usize = 64;

/// A passkey as its owner's pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyInfo {
    /// Random, unique: the `{id}` of `/account/passkeys/{id}/delete`.
    pub public_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What `data` holds for a passkey.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PasskeyData {
    /// The WebAuthn user handle the credential was made under.
    handle: Uuid,
    passkey: Passkey,
}

/// A passkey row with its credential, for a ceremony.
#[derive(Debug, Clone)]
pub(crate) struct StoredPasskey {
    pub id: i64,
    pub user_id: i64,
    pub handle: Uuid,
    pub passkey: Passkey,
    /// `data` as read, the value the compare-and-swap of [`record_use`] expects.
    data: String,
}

/// The WebAuthn user handle of an account: 128 bits of a keyed hash of its id (no personal
/// data, the same for each of the account's passkeys, so an authenticator keeps one credential
/// per account). Each row keeps the handle it was made under, which is the one checked.
pub(crate) fn user_handle(secret: &SecretKey, user_id: i64) -> Uuid {
    let hash = hex::decode(secret.keyed_hash("passkey-user-handle", user_id.to_string().as_bytes()))
        .expect("a keyed hash is hex");
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    Uuid::from_bytes(bytes)
}

/// A credential id as the table keys it (base64url, no padding).
pub(crate) fn credential_key(credential_id: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential_id)
}

type Row = (i64, i64, String);

fn stored(rows: Vec<Row>) -> Vec<StoredPasskey> {
    rows.into_iter()
        .filter_map(|(id, user_id, data)| {
            let parsed: PasskeyData = match serde_json::from_str(&data) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::warn!(user_id, factor_id = id, error = %e, "a stored passkey does not parse; skipped");
                    return None;
                }
            };
            Some(StoredPasskey { id, user_id, handle: parsed.handle, passkey: parsed.passkey, data })
        })
        .collect()
}

/// The account's passkeys, oldest first, as the pages list them.
pub(crate) fn list(conn: &mut AnyConnection, user_id: i64) -> QueryResult<Vec<PasskeyInfo>> {
    let rows: Vec<(Option<String>, String, chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)> =
        second_factors::table
            .filter(second_factors::user_id.eq(user_id))
            .filter(second_factors::kind.eq(PASSKEY_KIND))
            .order((second_factors::created_at.asc(), second_factors::id.asc()))
            .select((
                second_factors::public_id,
                second_factors::name,
                second_factors::created_at,
                second_factors::last_used_at,
            ))
            .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(public_id, name, created, used)| PasskeyInfo {
            public_id: public_id.unwrap_or_default(),
            name,
            created_at: created.and_utc(),
            last_used_at: used.map(|u| u.and_utc()),
        })
        .collect())
}

/// How many passkeys the account has.
pub(crate) fn count(conn: &mut AnyConnection, user_id: i64) -> QueryResult<i64> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .filter(second_factors::kind.eq(PASSKEY_KIND))
        .count()
        .get_result(conn)
}

/// The account's passkeys with their credentials.
pub(crate) fn stored_of(conn: &mut AnyConnection, user_id: i64) -> QueryResult<Vec<StoredPasskey>> {
    let rows = second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .filter(second_factors::kind.eq(PASSKEY_KIND))
        .order(second_factors::id.asc())
        .select((second_factors::id, second_factors::user_id, second_factors::data))
        .load::<Row>(conn)?;
    Ok(stored(rows))
}

/// The passkey with this credential id, whoever's it is.
pub(crate) fn by_credential(conn: &mut AnyConnection, credential_id: &[u8]) -> QueryResult<Option<StoredPasskey>> {
    let rows = second_factors::table
        .filter(second_factors::kind.eq(PASSKEY_KIND))
        .filter(second_factors::credential_id.eq(credential_key(credential_id)))
        .select((second_factors::id, second_factors::user_id, second_factors::data))
        .load::<Row>(conn)?;
    Ok(stored(rows).into_iter().next())
}

/// What adding a passkey came to.
#[derive(Debug)]
pub(crate) enum Addition {
    /// Added; the new recovery codes when it was the account's first second factor.
    Done(Vec<RecoveryCode>),
    /// The factor version moved since the ceremony began (or the account is gone): nothing changed.
    Void,
    /// That credential is already registered (to this account or another): nothing changed.
    Duplicate,
}

/// Adds `passkey` named `name` to the account, if its factor version is still `expected` (the one
/// the ceremony began under), moving it. Run inside a transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_in(
    conn: &mut AnyConnection,
    keys: &FactorKeys,
    user_id: i64,
    expected: i32,
    name: &str,
    handle: Uuid,
    passkey: &Passkey,
    now: DateTime<Utc>,
) -> anyhow::Result<Addition> {
    let credential_id = credential_key(passkey.cred_id().as_ref());
    let taken: bool = diesel::select(diesel::dsl::exists(
        second_factors::table.filter(second_factors::credential_id.eq(&credential_id)),
    ))
    .get_result(conn)?;
    if taken {
        return Ok(Addition::Duplicate);
    }
    let first = !factors::has_second_factor(conn, user_id)?;
    if !factors::bump_factor_version_if(conn, user_id, expected)? {
        return Ok(Addition::Void);
    }
    let data = serde_json::to_string(&PasskeyData { handle, passkey: passkey.clone() })?;
    diesel::insert_into(second_factors::table)
        .values((
            second_factors::user_id.eq(user_id),
            second_factors::kind.eq(PASSKEY_KIND),
            second_factors::name.eq(name),
            second_factors::data.eq(data),
            second_factors::credential_id.eq(Some(credential_id)),
            second_factors::public_id.eq(Some(super::sessions::new_public_id())),
            second_factors::created_at.eq(db_time(now)),
        ))
        .execute(conn)?;
    let codes = if first { factors::new_recovery_codes_in(conn, keys, user_id, now)? } else { Vec::new() };
    Ok(Addition::Done(codes))
}

/// Removes the account's passkey with this public id; with no second factor left the recovery
/// codes go too, and the factor version moves. False when the account has no such passkey.
pub(crate) fn remove_in(conn: &mut AnyConnection, user_id: i64, public_id: &str) -> QueryResult<bool> {
    let removed = diesel::delete(
        second_factors::table
            .filter(second_factors::user_id.eq(user_id))
            .filter(second_factors::kind.eq(PASSKEY_KIND))
            .filter(second_factors::public_id.eq(public_id)),
    )
    .execute(conn)?;
    if removed == 0 {
        return Ok(false);
    }
    factors::factor_removed_in(conn, user_id)?;
    Ok(true)
}

/// True when the account has a passkey with this public id.
pub(crate) fn owns(conn: &mut AnyConnection, user_id: i64, public_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        second_factors::table
            .filter(second_factors::user_id.eq(user_id))
            .filter(second_factors::kind.eq(PASSKEY_KIND))
            .filter(second_factors::public_id.eq(public_id)),
    ))
    .get_result(conn)
}

/// After an authentication with `passkey` (its credential already updated from the result):
/// stores it and the time of use, only if the row still holds what was read (compare-and-swap).
/// False: another use changed it meanwhile, or it was removed; the authentication must fail.
pub(crate) fn record_use(
    conn: &mut AnyConnection,
    stored: &StoredPasskey,
    passkey: &Passkey,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let data = serde_json::to_string(&PasskeyData { handle: stored.handle, passkey: passkey.clone() })?;
    let changed = diesel::update(
        second_factors::table.filter(second_factors::id.eq(stored.id)).filter(second_factors::data.eq(&stored.data)),
    )
    .set((second_factors::data.eq(data), second_factors::last_used_at.eq(Some(db_time(now)))))
    .execute(conn)?;
    Ok(changed == 1)
}

/// The kinds of ceremony a challenge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Register,
    SignIn,
    SecondStep,
}

impl ChallengeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Register => "register",
            ChallengeKind::SignIn => "sign_in",
            ChallengeKind::SecondStep => "second_step",
        }
    }
}

/// The longest challenge id ever looked up (ours are 64 characters).
const MAX_CHALLENGE_ID: usize = 128;

fn challenge_hash(id: &str) -> String {
    super::sessions::id_hash(id)
}

/// Keeps a ceremony's `state` until [`CHALLENGE_TTL`] from `now`; returns the random id the
/// browser holds (only its hash is stored).
pub(crate) fn store_challenge(
    conn: &mut AnyConnection,
    kind: ChallengeKind,
    user_id: Option<i64>,
    state: &str,
    now: DateTime<Utc>,
) -> QueryResult<String> {
    use rand::distr::{Alphanumeric, SampleString as _};
    let id = Alphanumeric.sample_string(&mut rand::rng(), 64);
    diesel::insert_into(passkey_challenges::table)
        .values((
            passkey_challenges::id_hash.eq(challenge_hash(&id)),
            passkey_challenges::kind.eq(kind.as_str()),
            passkey_challenges::user_id.eq(user_id),
            passkey_challenges::state.eq(state),
            passkey_challenges::expires_at.eq(db_time(now + CHALLENGE_TTL)),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Takes the challenge `id` of `kind` out, once: its state and account when it existed, was of
/// that kind, had not expired, and this call's DELETE removed it (of concurrent claims one wins).
pub(crate) fn claim(
    conn: &mut AnyConnection,
    kind: ChallengeKind,
    id: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<(Option<i64>, String)>> {
    if id.is_empty() || id.len() > MAX_CHALLENGE_ID {
        return Ok(None);
    }
    let hash = challenge_hash(id);
    let row: Option<(Option<i64>, String, chrono::NaiveDateTime)> = passkey_challenges::table
        .filter(passkey_challenges::id_hash.eq(&hash))
        .filter(passkey_challenges::kind.eq(kind.as_str()))
        .select((passkey_challenges::user_id, passkey_challenges::state, passkey_challenges::expires_at))
        .first(conn)
        .optional()?;
    let Some((user_id, state, expires_at)) = row else { return Ok(None) };
    let deleted =
        diesel::delete(passkey_challenges::table.filter(passkey_challenges::id_hash.eq(&hash))).execute(conn)?;
    Ok((deleted == 1 && now < expires_at.and_utc()).then_some((user_id, state)))
}

/// Deletes expired challenges; returns how many.
pub(crate) fn prune_challenges(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(passkey_challenges::table.filter(passkey_challenges::expires_at.le(db_time(now)))).execute(conn)
}

/// Deletes every challenge bound to the account (its deletion).
pub(crate) fn remove_challenges_of(conn: &mut AnyConnection, user_id: i64) -> QueryResult<usize> {
    diesel::delete(passkey_challenges::table.filter(passkey_challenges::user_id.eq(user_id))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handles_are_stable_per_account_and_key() {
        let a = SecretKey::parse(&"ab".repeat(32)).unwrap();
        let b = SecretKey::parse(&"cd".repeat(32)).unwrap();
        assert_eq!(user_handle(&a, 1), user_handle(&a, 1));
        assert_ne!(user_handle(&a, 1), user_handle(&a, 2));
        assert_ne!(user_handle(&a, 1), user_handle(&b, 1));
    }

    #[test]
    fn a_challenge_is_claimed_once_for_its_kind_and_only_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::Sqlite(dir.path().join("t.db").to_string_lossy().into_owned());
        let pool = crate::db::connect(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        let now = Utc::now();
        let id = store_challenge(&mut conn, ChallengeKind::SignIn, None, "state", now).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(claim(&mut conn, ChallengeKind::Register, &id, now).unwrap(), None, "another kind's");
        assert_eq!(claim(&mut conn, ChallengeKind::SignIn, &id, now).unwrap(), Some((None, "state".to_owned())));
        assert_eq!(claim(&mut conn, ChallengeKind::SignIn, &id, now).unwrap(), None, "used once");
        assert_eq!(claim(&mut conn, ChallengeKind::SignIn, "", now).unwrap(), None);
        assert_eq!(claim(&mut conn, ChallengeKind::SignIn, &"x".repeat(500), now).unwrap(), None);

        let late = store_challenge(&mut conn, ChallengeKind::SignIn, None, "s", now).unwrap();
        let just = store_challenge(&mut conn, ChallengeKind::SignIn, None, "s", now).unwrap();
        assert_eq!(claim(&mut conn, ChallengeKind::SignIn, &late, now + CHALLENGE_TTL).unwrap(), None, "expired");
        let almost = now + CHALLENGE_TTL - Duration::seconds(1);
        assert!(claim(&mut conn, ChallengeKind::SignIn, &just, almost).unwrap().is_some());
        // an expired claim took the row out too; pruning takes the rest
        store_challenge(&mut conn, ChallengeKind::SecondStep, None, "s", now).unwrap();
        assert_eq!(prune_challenges(&mut conn, now + CHALLENGE_TTL).unwrap(), 1);
    }

    #[test]
    fn credential_keys_are_base64url() {
        assert_eq!(credential_key(&[0xfb, 0xff, 0x00]), "-_8A");
    }
}
