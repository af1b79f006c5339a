//! Email addresses: trimmed, domain lower-cased and IDNA-encoded (django-flex-user's
//! `normalize_email`), unique case-insensitively.

use std::fmt;

use validator::ValidateEmail;

use super::Invalid;

/// RFC 5321's limit on a forward path.
pub const MAX_LENGTH: usize = 254;

const INVALID: &str = "Enter a valid email address.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, Invalid> {
        let trimmed = raw.trim();
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(|| Invalid::new(INVALID))?;
        if local.is_empty() || domain.is_empty() {
            return Err(Invalid::new(INVALID));
        }
        // IDNA: "Bücher.example" is stored as "xn--bcher-kva.example"; the mapping step also
        // lower-cases, and refuses labels that are not valid domain names.
        let domain = idna::domain_to_ascii(domain).map_err(|_| Invalid::new(INVALID))?;
        let email = format!("{local}@{domain}");
        if email.chars().count() > MAX_LENGTH || !email.validate_email() {
            return Err(Invalid::new(INVALID));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn local_part_is_ascii_as_in_django() {
        // Django's EmailValidator takes an ASCII local part only; the domain may be Unicode.
        assert!(Email::parse("jörg@example.org").is_err());
        assert!(Email::parse("a@b@example.org").is_err());
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "   ",
            "alice",
            "@example.org",
            "alice@",
            "alice@@example.org",
            "alice@exa mple.org",
            "alice@-example-.org",
            "a b@example.org",
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
    }
}
