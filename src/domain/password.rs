//! New passwords, checked against the rules of Django's default project template.
//!
//! The contract asks for the four validators that `django-admin startproject` enables, ported
//! from Django 5.2's `django/contrib/auth/password_validation.py`, plus a maximum length:
//!
//! - `MinimumLengthValidator(8)`, and at most [`MAX_LENGTH`] characters;
//! - `UserAttributeSimilarityValidator(max_similarity=0.7)`, against the username and the email
//!   address;
//! - `CommonPasswordValidator`, with Django's own list of common passwords;
//! - `NumericPasswordValidator`.
//!
//! Lengths count characters (Unicode scalar values, as Python's `len` does), not bytes. A password
//! is never trimmed or normalised: only the comparisons lowercase or trim a copy, as Django does.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::LazyLock;

use unicode_normalization::char::is_combining_mark;

use super::Invalid;

/// The fewest characters a password may have (Django's `MinimumLengthValidator` default).
pub const MIN_LENGTH: usize = 8;
/// The most characters a password may have: ours, not Django's, to bound the work of hashing.
pub const MAX_LENGTH: usize = 1024;

/// Django's `max_similarity` for `UserAttributeSimilarityValidator`.
const MAX_SIMILARITY: f64 = 0.7;

/// Django's list of common passwords, from `django/contrib/auth/common-passwords.txt.gz` in
/// Django 5.2 (BSD-3-Clause), gunzipped: 19,640 lowercased, deduplicated entries of the 20,000
/// that Royce Williams compiled. See `COMMON-PASSWORDS-LICENSE` beside this file.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt").lines().map(|line| line.trim_matches(is_python_space)).collect()
});

/// A password that passed the contract's rules. Debug must not print it.
pub struct NewPassword(String);

impl NewPassword {
    /// Checks `raw` against every rule and returns all the failures, in the order short, long,
    /// too similar, common, numeric.
    ///
    /// `username` and `email` are the account's identifiers as stored (either may be None).
    pub fn parse(raw: &str, username: Option<&str>, email: Option<&str>) -> Result<NewPassword, Vec<Invalid>> {
        let mut errors = Vec::new();

        let length = raw.chars().count();
        if length < MIN_LENGTH {
            errors.push(Invalid::new(format!(
                "This password is too short. It must contain at least {MIN_LENGTH} characters."
            )));
        }
        if length > MAX_LENGTH {
            errors.push(Invalid::new(format!(
                "This password is too long. It must contain at most {MAX_LENGTH} characters."
            )));
        }
        let attributes = [("username", username), ("email address", email)];
        if let Some(verbose_name) = too_similar_to(raw, &attributes) {
            errors.push(Invalid::new(format!("The password is too similar to the {verbose_name}.")));
        }
        if is_common(raw) {
            errors.push(Invalid::new("This password is too common."));
        }
        if is_entirely_numeric(raw) {
            errors.push(Invalid::new("This password is entirely numeric."));
        }

        if errors.is_empty() { Ok(NewPassword(raw.to_owned())) } else { Err(errors) }
    }

    /// The password exactly as typed, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

/// `UserAttributeSimilarityValidator`: the verbose name of the first attribute that the password
/// is too similar to, if any. Like Django, it stops at the first hit, so at most one attribute is
/// reported.
fn too_similar_to(password: &str, attributes: &[(&'static str, Option<&str>)]) -> Option<&'static str> {
    let password: Vec<char> = password.to_lowercase().chars().collect();
    for &(verbose_name, value) in attributes {
        // Django skips a missing or empty attribute (`if not value`).
        let Some(value) = value.filter(|value| !value.is_empty()) else {
            continue;
        };
        // Django lowercases first, then splits: `re.split(r"\W+", value_lower) + [value_lower]`,
        // so each part of an email address is compared as well as the whole address.
        let value = value.to_lowercase();
        let similar = split_on_non_word(&value).chain([value.as_str()]).any(|part| {
            !exceeds_maximum_length_ratio(password.len(), part.chars().count())
                && quick_ratio(&password, part) >= MAX_SIMILARITY
        });
        if similar {
            return Some(verbose_name);
        }
    }
    None
}

/// Django's `exceeds_maximum_length_ratio`: a part that is at most a tenth of the password's
/// length cannot reach the similarity bound, so it is skipped. Lengths are in characters, and the
/// arithmetic is done in `f64` as in Python.
fn exceeds_maximum_length_ratio(password_length: usize, value_length: usize) -> bool {
    let length_bound_similarity = MAX_SIMILARITY / 2.0 * password_length as f64;
    password_length >= 10 * value_length && (value_length as f64) < length_bound_similarity
}

/// Python's `difflib.SequenceMatcher(a=password, b=part).quick_ratio()`, which is all Django
/// asks of `SequenceMatcher`: twice the number of characters the two have in common (counted as
/// multisets, regardless of order) over their total length, and 1.0 when both are empty.
///
/// The `difflib` crate has no `quick_ratio`, only `ratio`, which is a different, lower measure;
/// this is the same few lines as CPython's.
fn quick_ratio(password: &[char], part: &str) -> f64 {
    let mut available: HashMap<char, usize> = HashMap::new();
    let mut part_length = 0;
    for c in part.chars() {
        *available.entry(c).or_default() += 1;
        part_length += 1;
    }
    let mut matches = 0;
    for c in password {
        if let Some(count) = available.get_mut(c).filter(|count| **count > 0) {
            *count -= 1;
            matches += 1;
        }
    }
    let total = password.len() + part_length;
    if total == 0 { 1.0 } else { 2.0 * matches as f64 / total as f64 }
}

/// Python's `re.split(r"\W+", value)`: the pieces between runs of non-word characters. A leading
/// or trailing run gives an empty first or last piece, as in Python, but runs never give empty
/// pieces in between.
fn split_on_non_word(value: &str) -> impl Iterator<Item = &str> {
    let pieces: Vec<&str> = value.split(|c| !is_word_char(c)).collect();
    let last = pieces.len() - 1; // `split` always yields at least one piece
    pieces
        .into_iter()
        .enumerate()
        .filter(move |&(i, piece)| !piece.is_empty() || i == 0 || i == last)
        .map(|(_, piece)| piece)
}

/// Python's `\w` on `str`: a letter (L*), a character with a numeric value, or `_`.
///
/// Rust's `is_alphanumeric` also takes the rest of the Alphabetic property: combining marks such
/// as Devanagari vowel signs, and the enclosed Latin letters. Python counts those as `\W`, so
/// they are taken out here, or an Indic username would not split where Django splits it.
fn is_word_char(c: char) -> bool {
    (c.is_alphanumeric() && !is_combining_mark(c) && !is_enclosed_letter(c)) || c == '_'
}

/// The enclosed Latin letters: symbols (So) that Unicode also counts as Alphabetic.
fn is_enclosed_letter(c: char) -> bool {
    const RANGES: [RangeInclusive<char>; 4] = [
        '\u{24B6}'..='\u{24E9}',   // Ⓐ to ⓩ, circled
        '\u{1F130}'..='\u{1F149}', // 🄰 to 🅉, squared
        '\u{1F150}'..='\u{1F169}', // 🅐 to 🅩, negative circled
        '\u{1F170}'..='\u{1F189}', // 🅰 to 🆉, negative squared
    ];
    RANGES.iter().any(|range| range.contains(&c))
}

/// `CommonPasswordValidator`: `password.lower().strip() in passwords`.
fn is_common(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().trim_matches(is_python_space))
}

/// Python's `str.isspace`, which `strip()` uses: Rust's White_Space plus the four ASCII
/// information separators U+001C to U+001F, which Python also counts as whitespace.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `NumericPasswordValidator`: `password.isdigit()`, false for an empty password.
///
/// Python's `isdigit` is Numeric_Type Decimal or Digit: every decimal digit in any script (Nd)
/// plus digits such as superscripts and circled digits (part of No). Rust's `is_numeric` is every
/// number (Nd, Nl, No), a superset, so this refuses everything Django refuses and, beyond that,
/// only passwords made wholly of number-like symbols such as Roman numerals or fractions.
fn is_entirely_numeric(password: &str) -> bool {
    !password.is_empty() && password.chars().all(char::is_numeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: &str = "This password is too short. It must contain at least 8 characters.";
    const LONG: &str = "This password is too long. It must contain at most 1024 characters.";
    const SIMILAR_USERNAME: &str = "The password is too similar to the username.";
    const SIMILAR_EMAIL: &str = "The password is too similar to the email address.";
    const COMMON: &str = "This password is too common.";
    const NUMERIC: &str = "This password is entirely numeric.";

    /// The messages `parse` gives, or an empty list when the password is accepted.
    fn errors(raw: &str, username: Option<&str>, email: Option<&str>) -> Vec<String> {
        match NewPassword::parse(raw, username, email) {
            Ok(password) => {
                assert_eq!(password.expose(), raw, "a password is kept as typed");
                Vec::new()
            }
            Err(errors) => errors.into_iter().map(|invalid| invalid.to_string()).collect(),
        }
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(errors("Xq7#vLp", None, None), [SHORT]);
        assert_eq!(errors("Xq7#vLpz", None, None), Vec::<String>::new());
        // Eight characters in sixteen bytes are long enough; seven are not.
        assert_eq!(errors("жёлтыйк", None, None), [SHORT]);
        assert!(errors("жёлтыйкв", None, None).is_empty());
        assert_eq!(errors("", None, None), [SHORT]);
    }

    #[test]
    fn at_most_1024_characters() {
        let longest = "ab3$".repeat(MAX_LENGTH / 4);
        assert!(errors(&longest, Some("alice"), Some("alice@example.com")).is_empty());
        assert_eq!(errors(&format!("{longest}x"), None, None), [LONG]);
        // 1024 two-byte characters are allowed: the limit is not in bytes.
        assert!(errors(&"ж".repeat(MAX_LENGTH), None, None).is_empty());
        assert_eq!(errors(&"ж".repeat(MAX_LENGTH + 1), None, None), [LONG]);
    }

    #[test]
    fn entirely_numeric_in_any_script() {
        assert_eq!(errors("40719253", None, None), [NUMERIC]);
        // Arabic-Indic and Devanagari digits are digits too, as in Python's `isdigit`.
        assert_eq!(errors("٤٠٧١٩٢٥٣", None, None), [NUMERIC]);
        assert_eq!(errors("४०७१९२५३", None, None), [NUMERIC]);
        // So are superscripts and circled digits.
        assert_eq!(errors("²³¹²³¹²³", None, None), [NUMERIC]);
        assert_eq!(errors("①②③④⑤⑥⑦⑧", None, None), [NUMERIC]);
        // Deliberately stricter than Django, which accepts this: see `is_entirely_numeric`.
        assert_eq!(errors("½½½½½½½½", None, None), [NUMERIC]);
        assert!(errors("40719253a", None, None).is_empty());
        assert!(errors("4071 9253", None, None).is_empty());
    }

    #[test]
    fn common_passwords_are_refused() {
        assert_eq!(errors("password", None, None), [COMMON]);
        // The comparison lowercases and trims a copy, as Django's does.
        assert_eq!(errors("PassWord", None, None), [COMMON]);
        assert_eq!(errors("  Password\t", None, None), [COMMON]);
        assert_eq!(errors("Password1", None, None), [COMMON]);
        assert_eq!(errors("iloveyou", None, None), [COMMON]);
        // Non-ASCII entries of the list match too.
        assert_eq!(errors("пароль", None, None), [SHORT, COMMON]);
        // Near misses are not in the list.
        assert!(errors("password1984!", None, None).is_empty());
    }

    #[test]
    fn every_failing_rule_is_reported_in_order() {
        assert_eq!(errors("123456789", None, None), [COMMON, NUMERIC]);
        assert_eq!(errors("123456", None, None), [SHORT, COMMON, NUMERIC]);
        assert_eq!(errors("alice", Some("alice"), None), [SHORT, SIMILAR_USERNAME, COMMON]);
    }

    #[test]
    fn the_common_list_is_django_s() {
        assert_eq!(COMMON_PASSWORDS.len(), 19_640);
        assert!(COMMON_PASSWORDS.contains("123456"));
        assert!(!COMMON_PASSWORDS.contains(""));
        assert!(COMMON_PASSWORDS.iter().all(|p| p.to_lowercase() == *p));
    }

    #[test]
    fn too_similar_to_the_username() {
        assert_eq!(errors("alice12345", Some("alice123"), None), [SIMILAR_USERNAME]);
        // Case does not matter, and the characters' order does not either (`quick_ratio`).
        assert_eq!(errors("ALICE12345", Some("Alice123"), None), [SIMILAR_USERNAME]);
        assert_eq!(errors("54321ecila", Some("alice123"), None), [SIMILAR_USERNAME]);
        assert_eq!(errors("smith.j77", Some("j_smith"), None), [SIMILAR_USERNAME]);
        // Lowercasing follows Unicode, as Python's `lower` does (final sigma included).
        assert_eq!(errors("ΣΙΣΥΦΟΣ99", Some("σισυφος"), None), [SIMILAR_USERNAME]);
        assert_eq!(errors("İstanbul1", Some("istanbul"), None), [SIMILAR_USERNAME]);
        // Without the attribute there is nothing to compare.
        assert!(errors("alice12345", None, None).is_empty());
        assert!(errors("alice12345", Some(""), None).is_empty());
    }

    #[test]
    fn too_similar_to_a_part_of_the_email_address() {
        let email = Some("jsmith@example.com");
        assert_eq!(errors("jsmith2024!", None, email), [SIMILAR_EMAIL]);
        assert_eq!(errors("Example-2024", None, email), [SIMILAR_EMAIL]);
        assert_eq!(errors("jsmith", None, Some("j.smith@example.com")), [SHORT, SIMILAR_EMAIL]);
        // Only the first similar attribute is reported, as in Django.
        assert_eq!(errors("jsmith2024!", Some("jsmith"), email), [SIMILAR_USERNAME]);
    }

    #[test]
    fn parts_a_tenth_of_the_password_or_shorter_are_skipped() {
        // Django's `exceeds_maximum_length_ratio`, in characters.
        assert!(exceeds_maximum_length_ratio(30, 3));
        assert!(!exceeds_maximum_length_ratio(29, 3));
        assert!(!exceeds_maximum_length_ratio(30, 4));
        // The skip only speeds things up, except for an empty part: Django skips it unless the
        // password is empty too, where `quick_ratio` of two empty strings is 1.0. So an empty
        // password is "too similar" to a username with a trailing non-word character.
        assert!(exceeds_maximum_length_ratio(1, 0));
        assert!(!exceeds_maximum_length_ratio(0, 0));
        assert_eq!(errors("", Some("x."), None), [SHORT, SIMILAR_USERNAME]);
        assert_eq!(errors("", Some("x"), None), [SHORT]);
    }

    #[test]
    fn a_strong_passphrase_passes_with_attributes_present() {
        let password = "correct horse battery staple";
        let parsed = NewPassword::parse(password, Some("alice"), Some("alice@example.com")).expect("accepted");
        // Kept exactly as typed, spaces included.
        assert_eq!(parsed.expose(), password);
        assert!(errors("  padded passphrase  ", Some("bob"), None).is_empty());
        assert_eq!(NewPassword::parse("  padded passphrase  ", None, None).unwrap().expose(), "  padded passphrase  ");
    }

    #[test]
    fn debug_hides_the_password() {
        let parsed = NewPassword::parse("correct horse battery staple", None, None).unwrap();
        let shown = format!("{parsed:?}");
        assert_eq!(shown, "NewPassword(***)");
        assert!(!shown.contains("horse"));
    }

    #[test]
    fn quick_ratio_matches_python() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        // difflib.SequenceMatcher(a=..., b=...).quick_ratio() in CPython.
        assert_eq!(quick_ratio(&chars("alice12345"), "alice123"), 16.0 / 18.0);
        assert_eq!(quick_ratio(&chars("abcd"), "bcde"), 0.75);
        assert_eq!(quick_ratio(&chars("aab"), "abb"), 2.0 * 2.0 / 6.0);
        assert_eq!(quick_ratio(&chars(""), ""), 1.0);
        assert_eq!(quick_ratio(&chars(""), "abc"), 0.0);
    }

    #[test]
    fn splits_like_python_re_split() {
        let split = |s| split_on_non_word(s).collect::<Vec<_>>();
        assert_eq!(split("jsmith@example.com"), ["jsmith", "example", "com"]);
        assert_eq!(split("a--b"), ["a", "b"]);
        assert_eq!(split("--a--"), ["", "a", ""]);
        assert_eq!(split("--"), ["", ""]);
        assert_eq!(split(""), [""]);
        assert_eq!(split("first_last"), ["first_last"]);
        assert_eq!(split("josé.müller"), ["josé", "müller"]);
        // Python's `\w` takes neither combining marks nor enclosed letters.
        assert_eq!(split("नमस्ते"), ["नमस", "त", ""]);
        assert_eq!(split("ⓐⓑ.cd"), ["", "cd"]);
    }

    #[test]
    fn enclosed_letters_are_not_word_characters() {
        // Django splits this address into "", "example" and "com", none of them similar.
        let email = Some("ⓐⓑⓒⓓⓔⓕⓖⓗ@example.com");
        assert!(errors("ⓐⓑⓒⓓⓔⓕⓖ1", None, email).is_empty());
        assert_eq!(errors("abcdefg1", None, Some("abcdefgh@example.com")), [SIMILAR_EMAIL, COMMON]);
    }
}
