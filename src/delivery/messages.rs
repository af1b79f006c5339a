//! The wording of every message.
//!
//! CONTRACT.md, "Messages": the plain text of a message that carries a code has the code as a
//! standalone run of exactly `FLEX_USER_OTP_LENGTH` digits and no other run of that many digits
//! (the SMS WebOTP line, which repeats it, aside). So nothing else printed here may hold a long
//! run of digits: a time to live is said in hours, minutes and seconds (never "1440 minutes"),
//! no date is printed, and a link or host name is left out of a code message when it holds such
//! a run (a port like `:8080`, a host like `app2024.example.org`). The texts are plain ASCII
//! with short lines, so they travel as 7-bit email unchanged.

use chrono::Duration;

use url::Url;

pub use crate::accounts::Purpose;
use crate::accounts::{Channel, OtpCode};

/// An email: subject, plain text and HTML.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for EmailContent {
    /// Shows the subject only: the text may hold a code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailContent").field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// The host of the site, without port (`[::1]` for an IPv6 address).
pub fn site_host(site: &Url) -> String {
    site.host_str().unwrap_or("localhost").to_owned()
}

/// True when `text` holds a run of `n` or more ASCII digits.
pub fn has_digit_run(text: &str, n: usize) -> bool {
    longest_digit_run(text) >= n
}

fn longest_digit_run(text: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for b in text.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// `page` (a relative path such as `verify/email`) under the site's URL, whose path is taken as
/// a folder even without a trailing slash.
pub fn page_url(site: &Url, page: &str) -> Url {
    let mut base = site.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.set_query(None);
    base.set_fragment(None);
    base.join(page).unwrap_or(base)
}

/// A duration in words, each number under 100 for any time to live up to four days:
/// "15 minutes", "2 hours", "1 hour and 30 minutes", "90 seconds" is "1 minute and 30 seconds".
pub fn duration_words(ttl: Duration) -> String {
    let secs = ttl.num_seconds().max(0) as u64;
    if secs == 0 {
        return "less than a second".into();
    }
    // up to a day, say hours (a code valid "24 hours" reads better than "1 day")
    let (days, rest) = if secs <= 86_400 { (0, secs) } else { (secs / 86_400, secs % 86_400) };
    let units = [(days, "day"), (rest / 3600, "hour"), (rest % 3600 / 60, "minute"), (rest % 60, "second")];
    let parts: Vec<String> = units
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    match parts.as_slice() {
        [] => "less than a second".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Escapes text for HTML.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Wraps paragraphs of HTML in a minimal document.
pub(crate) fn html_document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n</head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.5;\">\n{body}</body>\n</html>\n",
        esc(title)
    )
}

/// What a code message may say about where it comes from, given the code length `n`.
struct Origin {
    /// The host, for the subject (never checked for digits: the contract is about the text).
    host: String,
    /// "on HOST" or, when the host holds a long digit run, nothing.
    on_host: String,
    /// The page to enter the code on, when its URL has no port and no long digit run.
    link: Option<Url>,
}

impl Origin {
    fn new(site: &Url, page: &str, n: usize) -> Origin {
        let host = site_host(site);
        let on_host = if has_digit_run(&host, n) { String::new() } else { format!(" on {host}") };
        let link = Some(page_url(site, page)).filter(|u| u.port().is_none() && !has_digit_run(u.as_str(), n));
        Origin { host, on_host, link }
    }
}

/// An email carrying a code.
pub fn code_email(purpose: Purpose, code: &OtpCode, ttl: Duration, site: &Url) -> EmailContent {
    let code = code.as_str();
    let ttl = duration_words(ttl);
    let (page, subject_what, intro, outro) = match purpose {
        Purpose::Verify => (
            "verify/email",
            "Your verification code",
            "Here is the code to verify this email address",
            "If you did not ask for this code, you can ignore this email.",
        ),
        Purpose::PasswordReset => (
            "password-reset/verify",
            "Your password reset code",
            "Someone asked to reset the password of your account",
            "If this was not you, ignore this email: your password\nhas not been changed.",
        ),
        Purpose::SignIn => (
            "sign-in/code/verify",
            "Your sign-in code",
            "Here is the code to sign in to your account",
            "If you did not ask to sign in, ignore this email: nobody\ncan sign in without this code.",
        ),
    };
    let origin = Origin::new(site, page, code.len());
    let subject = format!("{subject_what} for {}", origin.host);
    let enter = match &origin.link {
        Some(link) => format!("Enter it at\n{link}\nwithin {ttl}."),
        None => format!("Enter it on the page where you asked for it, within\n{ttl}."),
    };
    let text =
        format!("{intro}{on_host}:\n\n    {code}\n\n{enter}\n\n{outro}\n", on_host = origin.on_host, enter = enter,);
    let enter_html = match &origin.link {
        Some(link) => format!("Enter it at <a href=\"{0}\">{0}</a> within {1}.", esc(link.as_str()), esc(&ttl)),
        None => format!("Enter it on the page where you asked for it, within {}.", esc(&ttl)),
    };
    let html = html_document(
        &subject,
        &format!(
            "<p>{}{}:</p>\n\
             <p style=\"font-size: 1.75em; font-weight: bold; letter-spacing: 0.15em; font-family: monospace;\">{}</p>\n\
             <p>{}</p>\n<p>{}</p>\n",
            esc(intro),
            esc(&origin.on_host),
            esc(code),
            enter_html,
            esc(&outro.replace('\n', " ")),
        ),
    );
    EmailContent { subject, text, html }
}

/// An SMS carrying a code, ending with the WebOTP line `@HOST #CODE`.
pub fn code_sms(purpose: Purpose, code: &OtpCode, ttl: Duration, site: &Url) -> String {
    let code = code.as_str();
    let host = site_host(site);
    let of_host = if has_digit_run(&host, code.len()) { String::new() } else { format!("{host} ") };
    let ttl = duration_words(ttl);
    let line = match purpose {
        Purpose::Verify => format!("Your {of_host}verification code is {code}. It expires in {ttl}."),
        Purpose::PasswordReset => format!(
            "Your {of_host}password reset code is {code}. It expires in {ttl}. \
             If this was not you, ignore this message."
        ),
        Purpose::SignIn => format!(
            "Your {of_host}sign-in code is {code}. It expires in {ttl}. \
             If you did not ask to sign in, ignore this message."
        ),
    };
    format!("{line}\n\n@{host} #{code}")
}

/// An email to the OLD address of an account whose email address (or phone number) was changed
/// or removed. It carries no code.
pub fn change_notice_email(channel: Channel, site: &Url) -> EmailContent {
    let host = site_host(site);
    let what = match channel {
        Channel::Email => "email address",
        Channel::Phone => "phone number",
    };
    let reset = page_url(site, "password-reset");
    let subject = format!("The {what} of your account on {host} was changed");
    let para1 = format!("The {what} of your account on {host} was just changed or removed.");
    let para2 = "If you made this change, there is nothing more to do.";
    let para3 = "If you did not, someone else may be using your account: reset your password at";
    let text = format!("{para1}\n\n{para2}\n\n{para3}\n{reset}\nand check the details of your account.\n");
    let html = html_document(
        &subject,
        &format!(
            "<p>{}</p>\n<p>{}</p>\n<p>{} <a href=\"{reset}\">{reset}</a> and check the details of your account.</p>\n",
            esc(&para1),
            esc(para2),
            esc(para3),
            reset = esc(reset.as_str()),
        ),
    );
    EmailContent { subject, text, html }
}

/// An SMS to the OLD phone number of an account whose number was changed or removed.
pub fn change_notice_sms(site: &Url) -> String {
    let host = site_host(site);
    let reset = page_url(site, "password-reset");
    format!(
        "The phone number of your {host} account was changed or removed. \
         If this was not you, reset your password at {reset}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        let w = |s| duration_words(Duration::seconds(s));
        assert_eq!(w(1), "1 second");
        assert_eq!(w(60), "1 minute");
        assert_eq!(w(90), "1 minute and 30 seconds");
        assert_eq!(w(900), "15 minutes");
        assert_eq!(w(3600), "1 hour");
        assert_eq!(w(5400), "1 hour and 30 minutes");
        assert_eq!(w(7200), "2 hours");
        assert_eq!(w(86_399), "23 hours, 59 minutes and 59 seconds");
        assert_eq!(w(86_400), "24 hours");
        assert_eq!(w(2 * 86_400 + 3600), "2 days and 1 hour");
    }

    #[test]
    fn every_code_message_holds_the_code_once_and_says_what_it_is_for() {
        let runs = |text: &str, n: usize| {
            text.split(|c: char| !c.is_ascii_digit()).filter(|r| r.len() >= n).map(str::to_owned).collect::<Vec<_>>()
        };
        for site in ["https://auth.example.org", "http://127.0.0.1:8080", "https://app2024123.example.org/auth"] {
            let site = Url::parse(site).unwrap();
            for n in 4..=10 {
                let code = OtpCode::generate(n);
                for (purpose, says) in
                    [(Purpose::Verify, "verif"), (Purpose::PasswordReset, "reset"), (Purpose::SignIn, "sign-in code")]
                {
                    let ttl = Duration::minutes(15);
                    let mail = code_email(purpose, &code, ttl, &site);
                    assert_eq!(runs(&mail.text, n), [code.as_str()], "{purpose:?} {site} {n}: {}", mail.text);
                    assert!(mail.subject.to_lowercase().contains(says), "{}", mail.subject);
                    let sms = code_sms(purpose, &code, ttl, &site);
                    let (text, webotp) = sms.rsplit_once("\n\n").unwrap();
                    assert_eq!(runs(text, n), [code.as_str()], "{purpose:?} {site} {n}: {sms}");
                    assert_eq!(webotp, format!("@{} #{}", site_host(&site), code.as_str()));
                    assert!(text.contains(says), "{sms}");
                }
                // a sign-in code never calls itself a reset or a verification
                let mail = code_email(Purpose::SignIn, &code, Duration::minutes(15), &site);
                let sms = code_sms(Purpose::SignIn, &code, Duration::minutes(15), &site);
                for text in [mail.text.to_lowercase(), sms.to_lowercase()] {
                    assert!(!text.contains("reset") && !text.contains("verification"), "{text}");
                }
            }
        }
    }

    #[test]
    fn pages_under_the_site() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(page_url(&u("https://x.org"), "verify/email").as_str(), "https://x.org/verify/email");
        assert_eq!(page_url(&u("https://x.org/auth"), "verify/email").as_str(), "https://x.org/auth/verify/email");
        assert_eq!(page_url(&u("https://x.org/auth/?a=1"), "a").as_str(), "https://x.org/auth/a");
        assert_eq!(site_host(&u("http://127.0.0.1:8080/")), "127.0.0.1");
    }
}
