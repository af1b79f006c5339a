//! Second factors: the authenticator app (TOTP, RFC 6238, by `totp-rs`) and recovery codes.
//! Passkeys are rows of the same `second_factors` table with `kind = 'passkey'`
//! ([`super::passkeys`]): every rule here that counts "a second factor" counts them.
//!
//! - An authenticator secret is 160 random bits, sealed at rest with XChaCha20-Poly1305 under a
//!   key derived from the secret key, bound to its user id (a sealed secret copied to another
//!   row does not open). A copy of the database alone cannot make codes.
//! - A code of the current 30-second step or one step either side is accepted, and a step only
//!   with a conditional `UPDATE … WHERE last_step < :step`: no step twice, none older than the
//!   last accepted, and of two concurrent posts of one code exactly one wins.
//! - Recovery codes: 10 at a time, 50 random bits each (`k7pq2-xm4rt`), stored as keyed hashes
//!   and used up with one `DELETE` (of two concurrent uses one wins).
//! - `users.factor_version` moves on every password change, factor added or removed, and "end
//!   other sessions" ([`bump_factor_version`]): trusted browsers, half-finished sign-ins and
//!   pending setups carry the value they were made under and are void once it moves.
//!
//! Secret-key rotation: a sealed secret that no longer opens under the current key is never an
//! error page. Its codes count as wrong (and a warning names the user in the log); recovery
//! codes, being keyed hashes, stop matching too. The account then needs the operator:
//! `flex-user reset-two-factor`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::RngExt as _;
use subtle::ConstantTimeEq as _;

use crate::db::schema::{recovery_codes, second_factors, users};
use crate::db::{AnyConnection, db_time};
use crate::secret::SecretKey;

/// How many recovery codes a set has.
pub const RECOVERY_CODES: usize = 10;
/// The authenticator's step, in seconds.
pub const TOTP_STEP: u64 = 30;
const TOTP_KIND: &str = "totp";
/// Crockford's base32 alphabet, lower-case: no `i`, `l`, `o`, `u`.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A TOTP secret in clear (160 bits). `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(***)")
    }
}

impl TotpSecret {
    pub fn random() -> TotpSecret {
        let mut bytes = vec![0u8; 20];
        rand::rng().fill(&mut bytes[..]);
        TotpSecret(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> TotpSecret {
        TotpSecret(bytes)
    }

    /// Reads the base32 text an app is given (RFC 4648, no padding, case-insensitive).
    pub fn from_base32(text: &str) -> Option<TotpSecret> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_uppercase();
        totp_rs::Secret::try_from_base32(text).ok().map(|s| TotpSecret(s.to_vec()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as apps take it typed.
    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone()).to_base32()
    }

    fn totp(&self, issuer: Option<&str>, account: &str) -> anyhow::Result<totp_rs::Totp> {
        let mut builder = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(TOTP_STEP)
            .with_secret(totp_rs::Secret::from(self.0.clone()));
        if !account.is_empty() {
            // the label's issuer and account are split at a colon
            builder =
                builder.with_account_name(account.replace(':', " ")).with_issuer(issuer.map(|i| i.replace(':', " ")));
        }
        Ok(builder.build()?)
    }

    /// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…`.
    pub fn uri(&self, issuer: &str, account: &str) -> anyhow::Result<String> {
        Ok(self.totp(Some(issuer), if account.is_empty() { "account" } else { account })?.to_url()?)
    }

    /// The step `code` belongs to, if it is the code of the step at `now` or one either side.
    pub fn check(&self, code: &str, now: DateTime<Utc>) -> Option<u64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let time = u64::try_from(now.timestamp()).ok()?;
        self.totp(None, "").ok()?.check(&code, time)
    }

    /// The code of the step at `now` (for tests and for callers that show one).
    pub fn code_at(&self, now: DateTime<Utc>) -> String {
        let time = u64::try_from(now.timestamp()).unwrap_or_default();
        self.totp(None, "").map(|t| t.generate(time).to_string()).unwrap_or_default()
    }
}

/// Seals and opens secrets at rest, and keys recovery-code hashes and trusted-browser MACs; all
/// under keys derived from the deployment's secret key.
#[derive(Clone)]
pub struct FactorKeys {
    secret: SecretKey,
}

impl FactorKeys {
    pub fn new(secret: &SecretKey) -> FactorKeys {
        FactorKeys { secret: secret.clone() }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        let key = hex::decode(self.secret.keyed_hash("second-factor-seal", b"xchacha20poly1305"))
            .expect("a keyed hash is hex");
        XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key")
    }

    /// `v1:` + base64(nonce ‖ ciphertext), bound to `context` (a user id, a session purpose).
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        use base64::Engine as _;
        let mut nonce = [0u8; 24];
        rand::rng().fill(&mut nonce[..]);
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    /// `None` when it does not open: another secret key, another context, or tampered.
    pub fn open(&self, sealed: &str, context: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sealed.strip_prefix("v1:")?).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        self.cipher().decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: context.as_bytes() }).ok()
    }

    fn recovery_hash(&self, user_id: i64, normalized: &str) -> String {
        self.secret.keyed_hash("recovery-code", format!("{user_id}:{normalized}").as_bytes())
    }

    /// MAC of a trusted-browser cookie's text.
    pub fn trusted_mac(&self, text: &str) -> String {
        self.secret.keyed_hash("trusted-browser", text.as_bytes())
    }

    /// Constant-time comparison of two MACs.
    pub fn same_mac(a: &str, b: &str) -> bool {
        a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
    }
}

fn totp_context(user_id: i64) -> String {
    format!("totp:{user_id}")
}

/// A recovery code as shown once: `xxxxx-xxxxx`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(***)")
    }
}

impl RecoveryCode {
    fn random() -> RecoveryCode {
        let mut rng = rand::rng();
        let chars: String = (0..10).map(|_| RECOVERY_ALPHABET[rng.random_range(0..32)] as char).collect();
        RecoveryCode(format!("{}-{}", &chars[..5], &chars[5..]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What someone typed as the stored form: case, dashes and spaces ignored, Crockford's
    /// look-alikes read (`o` as 0, `i` and `l` as 1). `None` unless it is 10 such characters.
    pub fn normalize(typed: &str) -> Option<String> {
        let mut out = String::with_capacity(10);
        for c in typed.chars().filter(|c| !matches!(c, '-' | ' ' | '\t')) {
            let c = match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            };
            if !c.is_ascii() || !RECOVERY_ALPHABET.contains(&(c as u8)) || out.len() == 10 {
                return None;
            }
            out.push(c);
        }
        (out.len() == 10).then_some(out)
    }
}

/// The account's authenticator row.
#[derive(Debug, Clone)]
pub(crate) struct TotpFactor {
    pub id: i64,
    sealed: String,
    pub last_step: i64,
}

impl TotpFactor {
    /// The secret, if it opens under the current key (see the module's note on rotation).
    pub fn secret(&self, keys: &FactorKeys, user_id: i64) -> Option<TotpSecret> {
        keys.open(&self.sealed, &totp_context(user_id)).map(TotpSecret)
    }
}

/// What an account has of second factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TwoFactorStatus {
    /// An authenticator app is on.
    pub totp: bool,
    /// ... and its secret opens under the current secret key.
    pub totp_usable: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// How many passkeys the account has.
    pub passkeys: i64,
}

impl TwoFactorStatus {
    /// True when signing in asks for a second step.
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// The factor version of an active user.
pub(crate) fn factor_version(conn: &mut AnyConnection, user_id: i64) -> QueryResult<Option<i32>> {
    users::table.find(user_id).filter(users::is_active.eq(true)).select(users::factor_version).first(conn).optional()
}

/// Moves the user's factor version: every trusted browser, half-finished sign-in and pending
/// authenticator setup of the account is void from now on.
pub fn bump_factor_version(conn: &mut AnyConnection, user_id: i64) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id)).set(users::factor_version.eq(users::factor_version + 1)).execute(conn)
}

/// Moves the factor version only if it is still `version` (compare-and-swap).
pub(crate) fn bump_factor_version_if(conn: &mut AnyConnection, user_id: i64, version: i32) -> QueryResult<bool> {
    let changed = diesel::update(users::table.find(user_id).filter(users::factor_version.eq(version)))
        .set(users::factor_version.eq(users::factor_version + 1))
        .execute(conn)?;
    Ok(changed == 1)
}

pub(crate) fn totp_factor(conn: &mut AnyConnection, user_id: i64) -> QueryResult<Option<TotpFactor>> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .filter(second_factors::kind.eq(TOTP_KIND))
        .select((second_factors::id, second_factors::data, second_factors::last_step))
        .first::<(i64, String, i64)>(conn)
        .optional()
        .map(|row| row.map(|(id, sealed, last_step)| TotpFactor { id, sealed, last_step }))
}

pub(crate) fn recovery_codes_left(conn: &mut AnyConnection, user_id: i64) -> QueryResult<i64> {
    recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)).count().get_result(conn)
}

pub(crate) fn status(conn: &mut AnyConnection, keys: &FactorKeys, user_id: i64) -> QueryResult<TwoFactorStatus> {
    let totp = totp_factor(conn, user_id)?;
    Ok(TwoFactorStatus {
        totp: totp.is_some(),
        totp_usable: totp.is_some_and(|t| t.secret(keys, user_id).is_some()),
        recovery_codes_left: recovery_codes_left(conn, user_id)?,
        passkeys: super::passkeys::count(conn, user_id)?,
    })
}

/// True when the account has any second factor (signing in then asks for it).
pub(crate) fn has_second_factor(conn: &mut AnyConnection, user_id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(second_factors::table.filter(second_factors::user_id.eq(user_id))))
        .get_result(conn)
}

/// Accepts `step` for the factor if it is later than the last accepted one: one atomic
/// conditional UPDATE, so a step is accepted once however many posts race.
pub(crate) fn accept_step(
    conn: &mut AnyConnection,
    factor_id: i64,
    step: u64,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let changed = diesel::update(
        second_factors::table.filter(second_factors::id.eq(factor_id)).filter(second_factors::last_step.lt(step)),
    )
    .set((second_factors::last_step.eq(step), second_factors::last_used_at.eq(Some(db_time(now)))))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Replaces the account's recovery codes with a new set, returned in clear (the only time).
pub(crate) fn new_recovery_codes_in(
    conn: &mut AnyConnection,
    keys: &FactorKeys,
    user_id: i64,
    now: DateTime<Utc>,
) -> QueryResult<Vec<RecoveryCode>> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let code = RecoveryCode::random();
        if codes.contains(&code) {
            continue;
        }
        let normalized = RecoveryCode::normalize(code.as_str()).expect("made in the alphabet");
        diesel::insert_into(recovery_codes::table)
            .values((
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(keys.recovery_hash(user_id, &normalized)),
                recovery_codes::created_at.eq(db_time(now)),
            ))
            .execute(conn)?;
        codes.push(code);
    }
    Ok(codes)
}

/// Uses up a recovery code: true when it was one of the account's unused codes (one DELETE:
/// of concurrent uses of one code, one wins).
pub(crate) fn consume_recovery_code(
    conn: &mut AnyConnection,
    keys: &FactorKeys,
    user_id: i64,
    typed: &str,
) -> QueryResult<bool> {
    let Some(normalized) = RecoveryCode::normalize(typed) else { return Ok(false) };
    let deleted = diesel::delete(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::code_hash.eq(keys.recovery_hash(user_id, &normalized))),
    )
    .execute(conn)?;
    Ok(deleted == 1)
}

/// Turns the authenticator on with `secret`, if the factor version is still `expected` (the one
/// the setup began under). `Ok(None)`: it moved, or an app is already on; nothing changed.
/// `Ok(Some(codes))`: on; `codes` is a new set when this is the account's first second factor.
/// `step` (the step of the confirming code) becomes the last accepted one, so that code cannot
/// also sign in. Run inside a transaction.
pub(crate) fn enable_totp_in(
    conn: &mut AnyConnection,
    keys: &FactorKeys,
    user_id: i64,
    expected: i32,
    secret: &TotpSecret,
    step: u64,
    now: DateTime<Utc>,
) -> QueryResult<Option<Vec<RecoveryCode>>> {
    let first = !has_second_factor(conn, user_id)?;
    if !bump_factor_version_if(conn, user_id, expected)? || totp_factor(conn, user_id)?.is_some() {
        return Ok(None);
    }
    diesel::insert_into(second_factors::table)
        .values((
            second_factors::user_id.eq(user_id),
            second_factors::kind.eq(TOTP_KIND),
            second_factors::data.eq(keys.seal(&secret.0, &totp_context(user_id))),
            second_factors::last_step.eq(i64::try_from(step).unwrap_or(i64::MAX)),
            second_factors::created_at.eq(db_time(now)),
        ))
        .execute(conn)?;
    let codes = if first { Some(new_recovery_codes_in(conn, keys, user_id, now)?) } else { None };
    Ok(Some(codes.unwrap_or_default()))
}

/// Turns the authenticator off; with no second factor left the recovery codes go too. True when
/// there was one.
pub(crate) fn disable_totp_in(conn: &mut AnyConnection, user_id: i64) -> QueryResult<bool> {
    let removed = diesel::delete(
        second_factors::table.filter(second_factors::user_id.eq(user_id)).filter(second_factors::kind.eq(TOTP_KIND)),
    )
    .execute(conn)?;
    if removed > 0 {
        factor_removed_in(conn, user_id)?;
    }
    Ok(removed > 0)
}

/// After one of the account's factors was removed (the app, a passkey): with no second factor
/// left the recovery codes go too, and the factor version moves. Run inside its transaction.
pub(crate) fn factor_removed_in(conn: &mut AnyConnection, user_id: i64) -> QueryResult<()> {
    if !has_second_factor(conn, user_id)? {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?;
    }
    bump_factor_version(conn, user_id)?;
    Ok(())
}

/// Removes every second factor and recovery code of the account (the operator's reset, the
/// unverified-channel rule, deletion), each removed factor recorded in the account's activity
/// as from `ctx`.
pub(crate) fn remove_all_in(
    conn: &mut AnyConnection,
    user_id: i64,
    ctx: &super::activity::RequestContext,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    use super::activity::{self, Event, Factor};
    let kinds: Vec<String> = diesel::delete(second_factors::table.filter(second_factors::user_id.eq(user_id)))
        .returning(second_factors::kind)
        .get_results(conn)?;
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?;
    bump_factor_version(conn, user_id)?;
    for kind in kinds {
        let factor = if kind == TOTP_KIND { Factor::AuthenticatorApp } else { Factor::Passkey };
        activity::record(conn, user_id, Event::SecondFactorRemoved(factor), ctx, now)?;
    }
    Ok(())
}

/// The throttle row of the account's second step: every second factor (a code, a recovery code,
/// a passkey) backs off on this one row.
pub(crate) fn second_factor_throttle_key(secret: &SecretKey, user_id: i64) -> String {
    secret.keyed_hash("second-factor", user_id.to_string().as_bytes())
}

/// What a second-factor check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactorCheck {
    /// A right authenticator code, of a step not accepted before.
    Totp,
    /// An unused recovery code, now used up; `left` remain.
    RecoveryCode { left: i64 },
    /// Wrong, replayed, or the account has no such factor (counted).
    Wrong,
    /// Inside the backoff window: nothing was checked, decrypted or hashed.
    Throttled(super::Throttled),
}

/// The library's second-factor operations, for Rust callers (the web flows use them too).
impl super::Accounts {
    pub(crate) fn factor_keys(&self) -> FactorKeys {
        FactorKeys::new(&self.keys().secret)
    }

    /// Whether the account has an authenticator app and how many recovery codes are left.
    pub fn two_factor_status(&self, user_id: i64) -> anyhow::Result<TwoFactorStatus> {
        Ok(status(&mut *self.conn()?, &self.factor_keys(), user_id)?)
    }

    /// The account's factor version (`None`: no such active user). See [`bump_factor_version`].
    pub fn factor_version(&self, user_id: i64) -> anyhow::Result<Option<i32>> {
        Ok(factor_version(&mut *self.conn()?, user_id)?)
    }

    /// Voids every trusted browser, half-finished sign-in and pending setup of the account.
    pub fn bump_factor_version(&self, user_id: i64) -> anyhow::Result<()> {
        bump_factor_version(&mut *self.conn()?, user_id)?;
        Ok(())
    }

    /// Turns the authenticator app on with `secret` once `code` proves the app has it (now, or
    /// one step either side). `Ok(None)`: wrong code, an app already on, or no such user.
    /// `Ok(Some(codes))`: on; `codes` is the new set of recovery codes when this was the account's
    /// first second factor (shown once), else empty.
    pub fn enable_totp(
        &self,
        user_id: i64,
        secret: &TotpSecret,
        code: &str,
    ) -> anyhow::Result<Option<Vec<RecoveryCode>>> {
        let Some(version) = self.factor_version(user_id)? else { return Ok(None) };
        self.enable_totp_at_version(user_id, version, secret, code)
    }

    /// [`Accounts::enable_totp`] only while the factor version is still `version` (the one a
    /// setup began under).
    pub(crate) fn enable_totp_at_version(
        &self,
        user_id: i64,
        version: i32,
        secret: &TotpSecret,
        code: &str,
    ) -> anyhow::Result<Option<Vec<RecoveryCode>>> {
        let now = self.now();
        let Some(step) = secret.check(code, now) else { return Ok(None) };
        let keys = self.factor_keys();
        let mut conn = self.conn()?;
        Ok(crate::db::write_transaction(&mut conn, |conn| {
            enable_totp_in(conn, &keys, user_id, version, secret, step, now)
        })?)
    }

    /// Turns the authenticator app off (recovery codes go with the last factor). True when it was on.
    pub fn disable_totp(&self, user_id: i64) -> anyhow::Result<bool> {
        let mut conn = self.conn()?;
        Ok(crate::db::write_transaction(&mut conn, |conn| disable_totp_in(conn, user_id))?)
    }

    /// A new set of recovery codes (the old set is void), or `None` when the account has no
    /// second factor (recovery codes exist only beside one).
    pub fn recovery_codes(&self, user_id: i64) -> anyhow::Result<Option<Vec<RecoveryCode>>> {
        let keys = self.factor_keys();
        let now = self.now();
        let mut conn = self.conn()?;
        Ok(crate::db::write_transaction(&mut conn, |conn| {
            if !has_second_factor(conn, user_id)? {
                return Ok(None);
            }
            new_recovery_codes_in(conn, &keys, user_id, now).map(Some)
        })?)
    }

    /// Removes every second factor and recovery code of the account (`flex-user
    /// reset-two-factor`), recorded in its activity without an IP address or browser (an
    /// operator's act). `Ok(false)`: no such user.
    pub fn reset_two_factor(&self, user_id: i64) -> anyhow::Result<bool> {
        let now = self.now();
        let mut conn = self.conn()?;
        Ok(crate::db::write_transaction(&mut conn, |conn| {
            if super::users::get(conn, user_id)?.is_none() {
                return Ok(false);
            }
            remove_all_in(conn, user_id, &Default::default(), now)?;
            Ok::<_, diesel::result::Error>(true)
        })?)
    }

    /// Checks a second factor: an authenticator code or an unused recovery code.
    ///
    /// Backoff per account (the rule of codes, capped at 15 minutes): the attempt claims its turn
    /// on the throttle row first, atomically, so inside a window nothing is decrypted or hashed
    /// and concurrent guesses cannot pass together. An authenticator code is accepted only for a
    /// step later than the last accepted one (a conditional UPDATE); a recovery code is used up
    /// by one DELETE. Either way, of concurrent posts of one code exactly one wins.
    pub fn verify_second_factor(&self, user_id: i64, code: &str) -> anyhow::Result<SecondFactorCheck> {
        self.verify_second_factor_then(user_id, code, |_, _| Ok(()))
    }

    /// [`Accounts::verify_second_factor`], and when the factor is right, `then` inside the
    /// transaction that spends it: what the caller records of the sign-in (its event, the
    /// recovery-code notice) commits with the spending, or neither does.
    pub(crate) fn verify_second_factor_then(
        &self,
        user_id: i64,
        code: &str,
        then: impl FnOnce(&mut AnyConnection, &SecondFactorCheck) -> anyhow::Result<()>,
    ) -> anyhow::Result<SecondFactorCheck> {
        use super::throttle::{SIGN_IN_BACKOFF_CAP, store as throttles};
        let now = self.now();
        let key = second_factor_throttle_key(&self.keys().secret, user_id);
        let mut conn = self.conn()?;
        // the turn is claimed (and committed) before anything is checked
        if let Err(throttled) = throttles::claim(&mut conn, &key, now, SIGN_IN_BACKOFF_CAP)? {
            return Ok(SecondFactorCheck::Throttled(throttled));
        }
        let keys = self.factor_keys();
        let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        crate::db::write_transaction(&mut conn, |conn| {
            let result = if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
                check_totp_in(conn, &keys, user_id, &digits, now)?
            } else if consume_recovery_code(conn, &keys, user_id, code)? {
                SecondFactorCheck::RecoveryCode { left: recovery_codes_left(conn, user_id)? }
            } else {
                SecondFactorCheck::Wrong
            };
            if result != SecondFactorCheck::Wrong {
                throttles::clear(conn, &key)?;
                then(conn, &result)?;
            }
            Ok(result)
        })
    }
}

/// An authenticator code for the account, accepted when right for a step later than the last
/// accepted one (which it becomes); wrong otherwise.
fn check_totp_in(
    conn: &mut AnyConnection,
    keys: &FactorKeys,
    user_id: i64,
    digits: &str,
    now: DateTime<Utc>,
) -> QueryResult<SecondFactorCheck> {
    let Some(factor) = totp_factor(conn, user_id)? else { return Ok(SecondFactorCheck::Wrong) };
    let Some(secret) = factor.secret(keys, user_id) else {
        tracing::warn!(
            user_id,
            "this account's authenticator secret does not open under the current secret key \
             (was FLEX_USER_SECRET_KEY changed?); `flex-user reset-two-factor` lets the user set it up again"
        );
        return Ok(SecondFactorCheck::Wrong);
    };
    Ok(match secret.check(digits, now) {
        Some(step) if step as i64 > factor.last_step && accept_step(conn, factor.id, step, now)? => {
            SecondFactorCheck::Totp
        }
        _ => SecondFactorCheck::Wrong,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: &str) -> FactorKeys {
        FactorKeys::new(&SecretKey::parse(&byte.repeat(32)).unwrap())
    }

    #[test]
    fn sealed_secrets_open_only_under_their_key_and_context() {
        let (a, b) = (keys("ab"), keys("cd"));
        let sealed = a.seal(b"twenty bytes secret!", "totp:1");
        assert!(!sealed.contains("twenty"));
        assert_eq!(a.open(&sealed, "totp:1").as_deref(), Some(&b"twenty bytes secret!"[..]));
        assert_eq!(a.open(&sealed, "totp:2"), None);
        assert_eq!(b.open(&sealed, "totp:1"), None);
        assert_eq!(a.open("v1:garbage", "totp:1"), None);
        assert_eq!(a.open("", "totp:1"), None);
        assert_ne!(a.seal(b"x", "c"), a.seal(b"x", "c"), "a fresh nonce each time");
    }

    #[test]
    fn rfc6238_vector_and_the_window_of_one_step() {
        // RFC 6238 appendix B, SHA-1: T = 59 s gives 94287082 (8 digits); its last 6 digits
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        let t = DateTime::from_timestamp(59, 0).unwrap();
        assert_eq!(secret.code_at(t), "287082");
        let at = DateTime::from_timestamp(1_000_000_020, 0).unwrap();
        let step = 1_000_000_020 / 30;
        let code = secret.code_at(at);
        assert_eq!(secret.check(&code, at), Some(step));
        assert_eq!(secret.check(&code, at + chrono::Duration::seconds(30)), Some(step));
        assert_eq!(secret.check(&code, at - chrono::Duration::seconds(30)), Some(step));
        assert_eq!(secret.check(&code, at + chrono::Duration::seconds(60)), None);
        assert_eq!(secret.check(&code, at - chrono::Duration::seconds(60)), None);
        assert_eq!(secret.check("12345", at), None);
        assert_eq!(secret.check("+12345", at), None);
    }

    #[test]
    fn otpauth_uri_names_issuer_and_account() {
        let secret = TotpSecret(vec![0u8; 20]);
        assert_eq!(secret.base32(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        let uri = secret.uri("flex-user", "alice").unwrap();
        assert_eq!(uri, "otpauth://totp/flex-user:alice?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=flex-user");
    }

    #[test]
    fn recovery_codes_normalize() {
        let code = RecoveryCode::random();
        assert_eq!(code.as_str().len(), 11);
        let n = RecoveryCode::normalize(code.as_str()).unwrap();
        assert_eq!(RecoveryCode::normalize(&code.as_str().to_uppercase()), Some(n.clone()));
        assert_eq!(RecoveryCode::normalize(&format!(" {} ", n.replace('-', " "))), Some(n));
        assert_eq!(RecoveryCode::normalize("k7pq2-xm4rO"), Some("k7pq2xm4r0".into()));
        assert_eq!(RecoveryCode::normalize("k7pq2-xm4r"), None);
        assert_eq!(RecoveryCode::normalize("k7pq2-xm4rtt"), None);
        assert_eq!(RecoveryCode::normalize("k7pq2-xm4ru"), None);
        assert_eq!(RecoveryCode::normalize("123456"), None);
    }

    #[test]
    fn macs_compare_in_constant_time_by_value() {
        let k = keys("ab");
        let m = k.trusted_mac("1.0.99");
        assert!(FactorKeys::same_mac(&m, &k.trusted_mac("1.0.99")));
        assert!(!FactorKeys::same_mac(&m, &k.trusted_mac("1.1.99")));
        assert!(!FactorKeys::same_mac(&m, ""));
    }
}
