//! Who made a request, as the security records keep it: the client's IP address, its
//! User-Agent, and for a browser the keyed hash of its long-lived browser id.

use std::net::IpAddr;

/// The longest User-Agent kept (real ones are a few hundred characters at most).
pub const MAX_USER_AGENT: usize = 512;

/// A User-Agent header as kept: control characters dropped, at most [`MAX_USER_AGENT`]
/// characters, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(String);

impl UserAgent {
    /// `None` for a missing or blank header.
    pub fn parse(raw: &str) -> Option<UserAgent> {
        let kept: String = raw.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT).collect();
        let kept = kept.trim();
        (!kept.is_empty()).then(|| UserAgent(kept.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The browser and system it names, e.g. "Firefox on Linux" (see [`describe_user_agent`]).
    pub fn describe(&self) -> String {
        describe_user_agent(Some(&self.0))
    }
}

/// What a User-Agent names, for people: "Firefox on Linux", "Chrome on Android", "Safari on
/// iPhone", or "Unknown browser". Parsed by woothee (no version numbers: they say little to a
/// person, and a notice must hold no long run of digits).
pub fn describe_user_agent(raw: Option<&str>) -> String {
    let unknown = |v: &str| v.is_empty() || v == woothee::woothee::VALUE_UNKNOWN;
    let parsed = raw.and_then(|ua| woothee::parser::Parser::new().parse(ua));
    match parsed {
        Some(r) if !unknown(r.name) && !unknown(r.os) => format!("{} on {}", r.name, r.os),
        Some(r) if !unknown(r.name) => r.name.to_owned(),
        Some(r) if !unknown(r.os) => format!("Unknown browser on {}", r.os),
        _ => "Unknown browser".to_owned(),
    }
}

/// The request a security event or a session use came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<UserAgent>,
    /// A keyed hash of this browser's long-lived id (its cookie). `None` for API clients and
    /// tools: they are never told apart as browsers, so they cause no new-browser notice.
    pub browser: Option<String>,
}

impl RequestContext {
    /// The IP address as stored (`None` when unknown).
    pub fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_canonical().to_string())
    }

    pub fn user_agent_text(&self) -> Option<&str> {
        self.user_agent.as_ref().map(UserAgent::as_str)
    }

    /// The browser and system, for people.
    pub fn browser_name(&self) -> String {
        describe_user_agent(self.user_agent_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                                  Chrome/131.0.6778.39 Mobile Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

    #[test]
    fn names_the_browser_and_system() {
        assert_eq!(describe_user_agent(Some(FIREFOX)), "Firefox on Linux");
        assert_eq!(describe_user_agent(Some(CHROME_ANDROID)), "Chrome on Android");
        assert_eq!(describe_user_agent(Some(SAFARI_IPHONE)), "Safari on iPhone");
        assert_eq!(describe_user_agent(Some("curl/8.5.0")), "HTTP Library");
        assert_eq!(describe_user_agent(Some("x")), "Unknown browser");
        assert_eq!(describe_user_agent(None), "Unknown browser");
    }

    #[test]
    fn user_agents_are_bounded_and_printable() {
        assert_eq!(UserAgent::parse("  "), None);
        assert_eq!(UserAgent::parse("a\u{0}b\nc").unwrap().as_str(), "abc");
        assert_eq!(UserAgent::parse(&"x".repeat(5000)).unwrap().as_str().len(), MAX_USER_AGENT);
    }

    #[test]
    fn mapped_ipv4_is_stored_as_ipv4() {
        let ctx = RequestContext { ip: Some("::ffff:192.0.2.7".parse().unwrap()), ..Default::default() };
        assert_eq!(ctx.ip_text().as_deref(), Some("192.0.2.7"));
    }
}
