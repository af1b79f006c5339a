//! Usernames, by the rule of django-flex-user.
//!
//! A username is NFKC-normalised first and every check runs on that form, so what is checked is
//! what is stored. It must start with a letter, a mark or a non-decimal number, go on with
//! letters, marks, numbers, `.`, `_` and `-`, and meet UTS #39 "moderately restrictive". So it can
//! never be taken for an email address (no `@`) or a phone number (no `+`, no leading digit).

use std::fmt;

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

use super::Invalid;

/// At most this many Unicode scalar values, counted after NFKC.
pub const MAX_LENGTH: usize = 150;

/// A valid username: NFKC-normalised, otherwise as the user typed it (case kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Checks a username as typed. Nothing is trimmed: `" x"` is refused, not fixed.
    pub fn parse(raw: &str) -> Result<Username, Invalid> {
        // Normalise first: fullwidth `０` must be caught as the digit it stands for, and composed
        // and combining spellings must be stored alike.
        let name: String = raw.nfkc().collect();
        let Some(first) = name.chars().next() else {
            return Err(Invalid::new("Enter a username."));
        };
        if name.chars().count() > MAX_LENGTH {
            return Err(Invalid::new(format!("A username can have at most {MAX_LENGTH} characters.")));
        }
        // Before the category checks, so a zero-width space gets a message that explains it;
        // some of these (U+034F, variation selectors, U+3164) are marks or letters by category.
        if name.chars().any(is_invisible) {
            return Err(Invalid::new("A username must not contain invisible characters."));
        }
        if !may_start(first) {
            return Err(Invalid::new("A username must start with a letter."));
        }
        if !name.chars().all(may_follow) {
            return Err(Invalid::new("A username can contain only letters, numbers and . _ -"));
        }
        // Checked apart from the restriction level (which also fails on these) to say why.
        if !name.chars().all(GeneralSecurityProfile::identifier_allowed) {
            return Err(Invalid::new("A username must not contain unusual characters."));
        }
        if !name.as_str().check_restriction_level(RestrictionLevel::ModeratelyRestrictive) {
            return Err(Invalid::new("A username must not mix scripts that look alike (such as Latin and Cyrillic)."));
        }
        Ok(Username(name))
    }

    /// Reads a value stored by [`Username::parse`] back from the database.
    pub(crate) fn from_stored(stored: String) -> Username {
        Username(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: full Unicode case folding of the NFKC form, re-normalised with NFKC
    /// (so `Straße` and `STRASSE` share a key, and composed/combining forms too).
    pub fn key(&self) -> String {
        // Folding can leave a sequence that NFKC composes (`J\u{30c}` folds to `j\u{30c}`, which
        // is `ǰ`), so normalise again or the key would depend on how the fold came out.
        caseless::default_case_fold_str(&self.0).nfkc().collect()
    }

    /// The UTS #39 confusable skeleton of the name: names that share one look alike (`admın`
    /// with a dotless ı and `admin`, `rnodern` and `modern`, `aIice` with a capital I and
    /// `alice`), so only one of them may exist.
    ///
    /// Taken first over the name as it is shown (that is where a capital I looks like an l),
    /// then case-folded and taken again, so that names equal but for case mostly agree too
    /// (the key's own uniqueness catches the rest); folded at the end because some prototypes
    /// are capitals (`0` → `O`), and without it `g00gle` would not meet `google`.
    pub fn skeleton(&self) -> String {
        let shown: String = unicode_security::skeleton(&self.0).collect();
        let skeleton: String = unicode_security::skeleton(&caseless::default_case_fold_str(&shown)).collect();
        caseless::default_case_fold_str(&skeleton).nfd().collect()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn category(c: char) -> GeneralCategory {
    CodePointMapData::<GeneralCategory>::new().get(c)
}

/// Default_Ignorable_Code_Point: zero-width characters, joiners, soft hyphen, bidi controls,
/// variation selectors, fillers and tags, all of which render as nothing.
fn is_invisible(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// L, Mn, Mc, Nl, No: not a decimal digit (a phone number) nor an enclosing mark.
const MAY_START: GeneralCategoryGroup = GeneralCategoryGroup::Letter
    .union(GeneralCategoryGroup::NonspacingMark)
    .union(GeneralCategoryGroup::SpacingMark)
    .union(GeneralCategoryGroup::LetterNumber)
    .union(GeneralCategoryGroup::OtherNumber);

/// L, M, N; `.`, `_` and `-` are allowed apart.
const MAY_FOLLOW: GeneralCategoryGroup =
    GeneralCategoryGroup::Letter.union(GeneralCategoryGroup::Mark).union(GeneralCategoryGroup::Number);

fn may_start(c: char) -> bool {
    MAY_START.contains(category(c))
}

fn may_follow(c: char) -> bool {
    matches!(c, '.' | '_' | '-') || MAY_FOLLOW.contains(category(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSED: &str = "validUs\u{e9}rname";
    const COMBINING: &str = "validUse\u{301}rname";

    fn accepts(raw: &str) -> Username {
        Username::parse(raw).unwrap_or_else(|e| panic!("{raw:?} was refused: {e}"))
    }

    fn refusal(raw: &str) -> String {
        match Username::parse(raw) {
            Ok(name) => panic!("{raw:?} was accepted as {name:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn key(raw: &str) -> String {
        accepts(raw).key()
    }

    const START: &str = "A username must start with a letter.";
    const ONLY: &str = "A username can contain only letters, numbers and . _ -";
    const INVISIBLE: &str = "A username must not contain invisible characters.";
    const MIXED: &str = "A username must not mix scripts that look alike (such as Latin and Cyrillic).";
    const UNUSUAL: &str = "A username must not contain unusual characters.";
    const LENGTH: &str = "A username can have at most 150 characters.";

    #[test]
    fn accepts_plain_ascii() {
        assert_eq!(accepts("valid.username").as_str(), "valid.username");
        accepts("valid_user-name.2");
    }

    #[test]
    fn accepts_composed_and_combining_as_one_stored_value() {
        let composed = accepts(COMPOSED);
        let combining = accepts(COMBINING);
        assert_eq!(composed.as_str(), COMPOSED);
        assert_eq!(combining, composed);
    }

    #[test]
    fn accepts_ethiopic() {
        accepts("ትክክለኛ-የተጠቃሚ-ስም");
    }

    #[test]
    fn accepts_roman_numeral_one_as_latin_i() {
        assert_eq!(accepts("\u{2160}validUsername").as_str(), "IvalidUsername");
    }

    #[test]
    fn accepts_fullwidth_digit_after_the_start() {
        assert_eq!(accepts("validUsername\u{ff10}").as_str(), "validUsername0");
    }

    #[test]
    fn accepts_150_characters() {
        accepts(&"a".repeat(MAX_LENGTH));
        // Characters, not bytes.
        accepts(&"\u{e9}".repeat(MAX_LENGTH));
        // Counted after NFKC: 300 typed, 150 stored.
        accepts(&"e\u{301}".repeat(MAX_LENGTH));
    }

    #[test]
    fn accepts_japanese_chinese_and_korean() {
        for name in [
            "山田太郎",
            "やまだ",
            "ヤマダ",
            "田中さん",
            "ラーメン_好き",
            "tanaka田中さん",
            "张伟",
            "王芳2024",
            "김철수",
            "kim김철수",
            "〇田",
        ] {
            accepts(name);
        }
    }

    #[test]
    fn accepts_other_single_scripts_and_latin_with_one_other() {
        for name in ["иван", "αλέξης", "محمد", "ali_محمد", "राहुल", "josé.garcía"] {
            accepts(name);
        }
    }

    #[test]
    fn keeps_case() {
        assert_eq!(accepts("Admin").as_str(), "Admin");
        assert_eq!(accepts("Admin").to_string(), "Admin");
        assert_eq!(accepts("Admin").as_ref(), "Admin");
    }

    #[test]
    fn accepts_a_leading_mark_as_the_rule_says() {
        // The rule lets a name start with Mn or Mc; it is only odd to look at, not dangerous.
        accepts("\u{301}abc");
    }

    #[test]
    fn refuses_empty() {
        assert_eq!(refusal(""), "Enter a username.");
    }

    #[test]
    fn refuses_bad_starts() {
        for raw in [" x", ".x", "-x", "_x", "+x", "0x", "\u{ff10}x", "\u{660}x", "\u{b2}x"] {
            assert_eq!(refusal(raw), START, "{raw:?}");
        }
    }

    #[test]
    fn refuses_phone_numbers() {
        for raw in ["2025551234", "(202)555-1234", "+12025551234"] {
            assert_eq!(refusal(raw), START, "{raw:?}");
        }
    }

    #[test]
    fn refuses_other_characters() {
        for raw in ["in valid", "a@b.c", "x+y", "a'b", "a/b", "a\u{3000}b", "a\u{a0}b"] {
            assert_eq!(refusal(raw), ONLY, "{raw:?}");
        }
    }

    #[test]
    fn refuses_151_characters() {
        assert_eq!(refusal(&"a".repeat(MAX_LENGTH + 1)), LENGTH);
        // U+3392 SQUARE MHZ is one character typed, three after NFKC.
        assert_eq!(refusal(&format!("a{}", "\u{3392}".repeat(50))), LENGTH);
    }

    #[test]
    fn refuses_latin_mixed_with_cyrillic_or_greek() {
        assert_eq!(refusal("\u{430}dmin"), MIXED);
        assert_eq!(refusal("p\u{430}ypal"), MIXED);
        assert_eq!(refusal("alpha\u{3b2}"), MIXED);
        assert_eq!(refusal("\u{3bf}mega"), MIXED);
        // Two non-Latin scripts are not allowed either.
        assert_eq!(refusal("иванαλέξης"), MIXED);
    }

    #[test]
    fn refuses_invisible_characters() {
        for c in [
            '\u{200b}',  // zero-width space
            '\u{200c}',  // zero-width non-joiner
            '\u{200d}',  // zero-width joiner
            '\u{ad}',    // soft hyphen
            '\u{2060}',  // word joiner
            '\u{feff}',  // zero-width no-break space
            '\u{34f}',   // combining grapheme joiner (a mark by category)
            '\u{fe0f}',  // variation selector (a mark by category)
            '\u{3164}',  // Hangul filler (a letter by category)
            '\u{e0061}', // tag letter
            '\u{200e}',  // left-to-right mark
            '\u{200f}',  // right-to-left mark
            '\u{202e}',  // right-to-left override
            '\u{2066}',  // left-to-right isolate
            '\u{61c}',   // Arabic letter mark
        ] {
            assert_eq!(refusal(&format!("ad{c}min")), INVISIBLE, "U+{:04X}", c as u32);
            assert_eq!(refusal(&format!("{c}admin")), INVISIBLE, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn refuses_characters_restricted_by_uts_39() {
        // U+01BF LATIN LETTER WYNN: a letter, but Identifier_Status=Restricted (obsolete).
        assert_eq!(refusal("\u{1bf}ynn"), UNUSUAL);
    }

    #[test]
    fn key_folds_case_fully() {
        assert_eq!(key("Admin"), key("admin"));
        assert_eq!(key("Admin"), "admin");
        assert_eq!(key("ΣΑΣ"), key("σας"));
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("Straße"), "strasse");
    }

    #[test]
    fn key_is_the_same_for_composed_and_combining() {
        assert_eq!(key(COMPOSED), key(COMBINING));
        assert_eq!(key(COMPOSED), "validus\u{e9}rname");
    }

    #[test]
    fn key_tells_different_names_apart() {
        assert_ne!(key("admin"), key("admin1"));
        assert_ne!(key("resume"), key("r\u{e9}sum\u{e9}"));
    }

    fn skeleton(raw: &str) -> String {
        accepts(raw).skeleton()
    }

    #[test]
    fn skeleton_is_shared_by_names_that_look_alike() {
        // U+0131 LATIN SMALL LETTER DOTLESS I: Latin only, so the restriction level lets it pass
        assert_eq!(skeleton("adm\u{131}n"), skeleton("admin"));
        assert_eq!(skeleton("ADM\u{131}N"), skeleton("admin"));
        assert_eq!(skeleton("rnodern"), skeleton("modern"));
        assert_eq!(skeleton("paypa1"), skeleton("paypal"));
        assert_eq!(skeleton("g00gle"), skeleton("google"));
        // beyond Latin: Katakana's long vowel mark U+30FC and the Han numeral one U+4E00
        assert_eq!(skeleton("\u{30ab}\u{30fc}\u{30c9}"), skeleton("\u{30ab}\u{4e00}\u{30c9}"));
    }

    #[test]
    fn skeleton_sees_the_name_as_shown_and_folded() {
        // a capital I looks like an l only as shown
        assert_eq!(skeleton("aIice"), skeleton("alice"));
        assert_eq!(skeleton("Admin"), skeleton("admin"));
        assert_eq!(skeleton(COMPOSED), skeleton(COMBINING));
        // names equal but for case that the skeleton keeps apart are one key anyway
        assert_eq!(key("Straße"), key("STRASSE"));
    }

    #[test]
    fn skeleton_tells_different_names_apart() {
        assert_ne!(skeleton("admin"), skeleton("admin2"));
        assert_ne!(skeleton("alice"), skeleton("alex"));
        assert_ne!(skeleton("resume"), skeleton("r\u{e9}sum\u{e9}"));
    }

    #[test]
    fn key_is_normalised_again_after_folding() {
        // `J` + U+030C has no precomposed capital; folded, `j` + U+030C composes to U+01F0.
        assert_eq!(key("J\u{30c}ohn"), "\u{1f0}ohn");
    }
}
