//! Phone numbers: parsed and validated with the libphonenumber port, stored as E.164.

use std::fmt;
use std::str::FromStr;

use phonenumber::{Mode, country};

use super::Invalid;

const INVALID: &str = "Enter a valid phone number (e.g. +12125552368).";
const NEEDS_COUNTRY: &str = "Enter the phone number with its country code, starting with +.";

/// The country used to read numbers typed without `+` (`FLEX_USER_DEFAULT_REGION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    /// An ISO 3166-1 alpha-2 code known to libphonenumber, e.g. `US`, `gb`.
    pub fn parse(code: &str) -> Result<Region, Invalid> {
        country::Id::from_str(&code.trim().to_ascii_uppercase())
            .map(Region)
            .map_err(|_| Invalid::new(format!("{code:?} is not a country code known to libphonenumber")))
    }
}

/// A valid phone number in E.164 form (`+` and digits only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str, default_region: Option<Region>) -> Result<Phone, Invalid> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Invalid::new(INVALID));
        }
        let region = if raw.starts_with('+') {
            None
        } else {
            Some(default_region.ok_or_else(|| Invalid::new(NEEDS_COUNTRY))?.0)
        };
        let number = phonenumber::parse(region, raw).map_err(|_| Invalid::new(INVALID))?;
        if !phonenumber::is_valid(&number) {
            return Err(Invalid::new(INVALID));
        }
        Ok(Phone(number.format().mode(Mode::E164).to_string()))
    }

    /// Reads a value stored by [`Phone::parse`] back from the database.
    pub(crate) fn from_stored(e164: String) -> Phone {
        Phone(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Phone {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Option<Region> {
        Some(Region::parse("us").unwrap())
    }

    #[test]
    fn stores_e164() {
        for typed in ["+1 202-555-1234", "+1 (202) 555 1234", "+12025551234", " +1.202.555.1234 "] {
            assert_eq!(Phone::parse(typed, None).unwrap().as_str(), "+12025551234", "{typed}");
        }
        assert_eq!(Phone::parse("+44 20 7946 0958", None).unwrap().as_str(), "+442079460958");
    }

    #[test]
    fn numbers_without_plus_need_a_default_region() {
        assert_eq!(Phone::parse("(202) 555-1234", None), Err(Invalid::new(NEEDS_COUNTRY)));
        assert_eq!(Phone::parse("(202) 555-1234", us()).unwrap().as_str(), "+12025551234");
        let gb = Some(Region::parse("GB").unwrap());
        assert_eq!(Phone::parse("020 7946 0958", gb).unwrap().as_str(), "+442079460958");
    }

    #[test]
    fn refuses_numbers_that_are_not_real() {
        for bad in ["", "+", "+1", "+1 202", "+1 000 000 0000", "+999 1234567", "phone", "+1 202 555 12345678"] {
            assert!(Phone::parse(bad, us()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn region_codes_are_checked() {
        assert!(Region::parse("ZZ").is_err());
        assert!(Region::parse("").is_err());
        assert!(Region::parse("de").is_ok());
    }
}
