//! Helpers shared by the proof suite (`faults.rs`, `fuzz.rs`, `races.rs`): reading the code out
//! of a delivered message, and releasing N requests at once.
#![allow(dead_code)]

use std::sync::Barrier;

use base64::Engine as _;

/// The text/plain part of a raw email as the SMTP sink got it, decoded (7bit, 8bit,
/// quoted-printable or base64). Headers and MIME boundaries are left out: a Message-ID or a
/// boundary can hold a run of digits that looks like a code.
pub fn mail_text(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let lower = raw.to_ascii_lowercase();
    let Some(at) = lower.find("content-type: text/plain") else { return String::new() };
    let Some((headers, body)) = raw[at..].split_once("\n\n") else { return String::new() };
    let body = body.find("\n--").map_or(body, |end| &body[..end]);
    let encoding = headers.to_ascii_lowercase();
    if encoding.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD.decode(joined).unwrap_or_default();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    if !encoding.contains("quoted-printable") {
        return body.to_owned();
    }
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first standalone run of exactly `len` ASCII digits in `text`.
pub fn code_in(text: &str, len: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i - start == len {
            return Some(text[start..i].to_owned());
        }
    }
    None
}

/// The code in a raw email (from its text part).
pub fn mail_code(raw: &str, len: usize) -> Option<String> {
    code_in(&mail_text(raw), len)
}

/// Runs `f(0) … f(n-1)` on `n` threads that start together (a barrier releases them once all
/// are ready), and returns the results in order. Put the preparation (CSRF tokens, sessions)
/// before the call, so that only the requests themselves race.
pub fn at_once<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a racing thread panicked")).collect()
    })
}
