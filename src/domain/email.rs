//! Email addresses: trimmed, domain lower-cased and IDNA-encoded (django-flex-user's
//! `normalize_email`), unique case-insensitively.
//!
//! Only addresses the mailer can deliver to are accepted: a local part that is a dot-atom (no
//! leading, trailing or double dot) or a quoted string, and a domain name (never an address
//! literal such as `[127.0.0.1]`, nor a bare IP address). Everything accepted here is also a
//! valid `lettre::Address`, so a code is never queued for an address that cannot be sent to.

use std::fmt;

use super::Invalid;

/// RFC 5321's limit on a forward path.
pub const MAX_LENGTH: usize = 254;
/// RFC 5321's limits on a local part, a domain and one of its labels, in octets.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;

const INVALID: &str = "Enter a valid email address.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, Invalid> {
        let invalid = || Invalid::new(INVALID);
        // The last `@`: a quoted local part may hold one (`"a@b"@example.org`).
        let (local, domain) = raw.trim().rsplit_once('@').ok_or_else(invalid)?;
        let local = local_part(local).ok_or_else(invalid)?;
        let domain = domain_name(domain).ok_or_else(invalid)?;
        let email = format!("{local}@{domain}");
        if email.len() > MAX_LENGTH {
            return Err(invalid());
        }
        // The mailer's own check: the rules above are stricter, so this only guards against the
        // two drifting apart (an address lettre refuses would retry until its code expired).
        email.parse::<lettre::Address>().map_err(|_| invalid())?;
        Ok(Email(email))
    }

    /// Reads a value stored by [`Email::parse`] back from the database.
    pub(crate) fn from_stored(stored: String) -> Email {
        Email(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: the whole address lower-cased, so `Alice@x.org` and `alice@x.org`
    /// are one account (as the seed's case-insensitive email field).
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// The domain part, e.g. for messages ("we sent a code to a…@example.org").
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The local part in its canonical form, or `None` when it cannot be delivered to.
///
/// ASCII only, as Django's validator (a Unicode local part needs SMTPUTF8, which a relay may not
/// offer). A quoted string that needs no quotes is stored without them (`"alice"` is `alice`, the
/// same mailbox), and inside quotes only `"` and `\` keep their backslash, so one mailbox has one
/// spelling and the uniqueness key sees it.
fn local_part(raw: &str) -> Option<String> {
    let local = match raw.strip_prefix('"') {
        Some(quoted) => {
            let content = unquote(quoted.strip_suffix('"')?)?;
            if is_dot_atom(&content) { content } else { quote(&content) }
        }
        None if is_dot_atom(raw) => raw.to_owned(),
        None => return None,
    };
    (local.len() <= MAX_LOCAL).then_some(local)
}

/// RFC 5321 `Dot-string`: atoms of `atext` joined by single dots, so no leading, trailing or
/// double dot.
fn is_dot_atom(s: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

/// The content of an RFC 5321 `Quoted-string` (between the quotes), unescaped; `None` when it
/// is empty or holds what a quoted string cannot (a bare `"` or `\`, a control character).
fn unquote(content: &str) -> Option<String> {
    let printable = |c: char| matches!(c, ' '..='~');
    let mut out = String::with_capacity(content.len());
    let mut chars = content.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().filter(|&c| printable(c))?),
            '"' => return None,
            c if printable(c) => out.push(c),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

fn quote(content: &str) -> String {
    let mut out = String::with_capacity(content.len() + 2);
    out.push('"');
    for c in content.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The domain IDNA-encoded and lower-cased, or `None` unless it is a domain name: labels of
/// letters, digits and inner hyphens (RFC 5321 `Domain`), the last one not all digits, so
/// neither an address literal (`[127.0.0.1]`) nor a bare IP address (`127.0.0.1`) passes.
fn domain_name(raw: &str) -> Option<String> {
    // IDNA: "Bücher.example" is stored as "xn--bcher-kva.example"; the mapping step also
    // lower-cases, and refuses labels that are not valid IDNA (a bad `xn--` label).
    let domain = idna::domain_to_ascii(raw).ok()?;
    let label_ok = |label: &str| {
        (1..=MAX_LABEL).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last = domain.rsplit('.').next()?;
    let ok = domain.len() <= MAX_DOMAIN && domain.split('.').all(label_ok) && !last.chars().all(|c| c.is_ascii_digit());
    ok.then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(raw: &str) -> String {
        match Email::parse(raw) {
            Ok(email) => email.as_str().to_owned(),
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    #[test]
    fn trims_and_lowercases_the_domain_only() {
        let email = Email::parse("  Alice.Smith@Example.ORG \n").unwrap();
        assert_eq!(email.as_str(), "Alice.Smith@example.org");
        assert_eq!(email.key(), "alice.smith@example.org");
    }

    #[test]
    fn idna_encodes_the_domain() {
        let email = Email::parse("joerg@Bücher.Example").unwrap();
        assert_eq!(email.as_str(), "joerg@xn--bcher-kva.example");
        assert_eq!(email.domain(), "xn--bcher-kva.example");
        // already encoded, or in another script: one stored form
        assert_eq!(stored("joerg@XN--BCHER-KVA.example"), "joerg@xn--bcher-kva.example");
        assert_eq!(stored("info@пример.рф"), "info@xn--e1afmkfd.xn--p1ai");
        assert_eq!(stored("a@例え.テスト"), "a@xn--r8jz45g.xn--zckzah");
    }

    #[test]
    fn accepts_what_can_be_delivered_to() {
        for (typed, kept) in [
            ("alice@example.org", "alice@example.org"),
            ("first.last@sub.example.co.uk", "first.last@sub.example.co.uk"),
            ("user+tag@example.org", "user+tag@example.org"),
            ("o'brien@example.ie", "o'brien@example.ie"),
            ("!#$%&'*+-/=?^_`{|}~@example.org", "!#$%&'*+-/=?^_`{|}~@example.org"),
            ("x@a-b.example", "x@a-b.example"),
            ("x@123.example", "x@123.example"),
            ("x@example.c0m", "x@example.c0m"),
            ("dev@localhost", "dev@localhost"),
        ] {
            assert_eq!(stored(typed), kept, "{typed:?}");
        }
    }

    #[test]
    fn accepts_quoted_local_parts_in_one_spelling() {
        for (typed, kept) in [
            // a quoted string is the only way to these
            ("\"john doe\"@example.org", "\"john doe\"@example.org"),
            ("\".x\"@example.org", "\".x\"@example.org"),
            ("\"a..b\"@example.org", "\"a..b\"@example.org"),
            ("\"a@b\"@example.org", "\"a@b\"@example.org"),
            ("\"say \\\"hi\\\"\"@example.org", "\"say \\\"hi\\\"\"@example.org"),
            ("\"back\\\\slash\"@example.org", "\"back\\\\slash\"@example.org"),
            // needless quotes and escapes go: the same mailbox, the same stored value
            ("\"alice\"@example.org", "alice@example.org"),
            ("\"al\\ice\"@example.org", "alice@example.org"),
            ("\"j\\ d\"@Example.org", "\"j d\"@example.org"),
        ] {
            assert_eq!(stored(typed), kept, "{typed:?}");
        }
        assert_eq!(Email::parse("\"Alice\"@x.org").unwrap().key(), Email::parse("alice@x.org").unwrap().key());
    }

    #[test]
    fn everything_accepted_is_a_lettre_address() {
        for typed in [
            "alice@example.org",
            "!#$%&'*+-/=?^_`{|}~@example.org",
            "\"john doe\"@example.org",
            "\".x\"@example.org",
            "\"a@b\"@example.org",
            "\"say \\\"hi\\\"\"@example.org",
            "joerg@Bücher.Example",
            "dev@localhost",
        ] {
            let email = Email::parse(typed).unwrap();
            let address: lettre::Address = email.as_str().parse().unwrap_or_else(|e| panic!("{email}: {e}"));
            assert_eq!(address.to_string(), email.as_str());
        }
    }

    #[test]
    fn local_part_is_ascii_as_in_django() {
        // Django's EmailValidator takes an ASCII local part only; the domain may be Unicode.
        assert!(Email::parse("jörg@example.org").is_err());
        assert!(Email::parse("\"jörg\"@example.org").is_err());
        assert!(Email::parse("a@b@example.org").is_err());
    }

    #[test]
    fn refuses_what_cannot_be_delivered_to() {
        for bad in [
            "",
            "   ",
            "alice",
            "@example.org",
            "alice@",
            "alice@@example.org",
            "alice@exa mple.org",
            "alice@-example-.org",
            "alice@example-.org",
            "alice@exa_mple.org",
            "a b@example.org",
            // dots: leading, trailing, double, in the local part or the domain
            ".x@example.com",
            "x.@example.com",
            "a..b@example.com",
            "x@.example.com",
            "x@example.com.",
            "x@example..com",
            // address literals and bare IP addresses
            "x@[127.0.0.1]",
            "x@[IPv6:::1]",
            "x@127.0.0.1",
            "x@1.2.3",
            "x@::1",
            // quoted strings that are not
            "\"\"@example.org",
            "\"unclosed@example.org",
            "\"a\"b\"@example.org",
            "\"a\\\"@example.org",
            "\"tab\there\"@example.org",
            "\"a\"\"b\"@example.org",
            "x\"y\"@example.org",
            // not valid IDNA
            "x@xn--a.example",
            // specials outside quotes
            "a(b)@example.org",
            "a,b@example.org",
            "a:b@example.org",
            "<a@example.org>",
            "Alice <a@example.org>",
        ] {
            assert_eq!(Email::parse(bad), Err(Invalid::new(INVALID)), "{bad:?}");
        }
    }

    #[test]
    fn refuses_overlong_addresses() {
        let local = "a".repeat(64);
        let domain = format!("{}.example", "b".repeat(63));
        let long = format!("{local}@{domain}.{domain}.{domain}");
        assert!(long.len() > MAX_LENGTH);
        assert!(Email::parse(&long).is_err());
        assert!(Email::parse(&format!("{}@example.org", "a".repeat(65))).is_err(), "local part over 64");
        assert!(Email::parse(&format!("x@{}.org", "b".repeat(64))).is_err(), "label over 63");
        assert!(Email::parse(&format!("{local}@example.org")).is_ok());
    }
}
