//! What every page promises a person in a browser (CONTRACT.md), checked on every sample page
//! of `tests/samples` (signed in and out, forms re-shown with their messages, long addresses,
//! the error pages) in headless Chromium with axe-core, at 390 and 1280 px wide, in light and
//! dark mode: no serious or critical axe violation, no sideways scrolling, the viewport meta, a
//! label for every visible input. What needs no browser (the HTML of each view, nothing the
//! Content-Security-Policy would block) is checked in `tests/views.rs`.
//!
//! The browser checks need Chromium (`FLEX_USER_CHROMIUM`, else `/usr/bin/chromium` or
//! `chromium` on the PATH) and axe-core (`FLEX_USER_AXE_JS`, else
//! `tests/browser/node_modules/axe-core/axe.min.js` after `npm ci --prefix tests/browser`).
//! `.ci/run` installs both. Without them the test prints a NOTICE and passes, except with
//! `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Viewport widths in CSS px: a common phone, a laptop.
const WIDTHS: [u32; 2] = [390, 1280];
/// Chromium processes at a time.
const PARALLEL: usize = 2;
/// A browser checks its pages one after another, about 0.6 CPU-seconds a page; a batch that
/// takes longer than this (plus [`TIMEOUT_PER_PAGE`] a page) has hung.
const TIMEOUT_BASE: Duration = Duration::from_secs(60);
const TIMEOUT_PER_PAGE: Duration = Duration::from_secs(5);
/// Exactly what CONTRACT.md asks for.
const VIEWPORT: &str = "width=device-width, initial-scale=1";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Bypasses the test harness's output capture, so the line is seen in a plain `cargo test`.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn find_chromium() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("FLEX_USER_CHROMIUM") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("FLEX_USER_CHROMIUM={} does not exist", p.display())) };
    }
    let default = PathBuf::from("/usr/bin/chromium");
    if default.is_file() {
        return Ok(default);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no Chromium (install the Debian package `chromium`, or set FLEX_USER_CHROMIUM)".to_string())
}

fn find_axe() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("FLEX_USER_AXE_JS") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("FLEX_USER_AXE_JS={} does not exist", p.display())) };
    }
    let p = manifest_dir().join("tests/browser/node_modules/axe-core/axe.min.js");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("no axe-core at {} (run `npm ci --prefix tests/browser`, or set FLEX_USER_AXE_JS)", p.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scheme {
    Light,
    Dark,
}

impl Scheme {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Scheme::Light => &["--blink-settings=preferredColorScheme=1"],
            Scheme::Dark => &["--force-dark-mode", "--blink-settings=preferredColorScheme=0"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Light => "light",
            Scheme::Dark => "dark",
        }
    }
}

/// What check.js reports from one frame.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Report {
    error: Option<String>,
    inner_width: u32,
    client_width: u32,
    scroll_width: u32,
    dark: bool,
    viewport: Option<String>,
    stylesheets: u32,
    stylesheets_loaded: u32,
    unlabelled: Vec<String>,
    wider: Vec<String>,
    background: String,
    violations: Vec<Violation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Violation {
    id: String,
    impact: Option<String>,
    help: String,
    nodes: Vec<String>,
}

impl Violation {
    fn fails(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FrameReport {
    page: String,
    frame_width: u32,
    report: Report,
}

/// Reports by page file name, then by width.
type Reports = BTreeMap<String, BTreeMap<u32, Report>>;

/// Opens `frames.html?pages=…&widths=…` in one headless Chromium, which loads `pages` one after
/// another into a frame of each width. Returns the reports it got, and what went wrong if it did
/// not get them all.
fn run_batch(chromium: &Path, dir: &Path, pages: &[String], scheme: Scheme) -> (Reports, Option<String>) {
    let mut reports = Reports::new();
    let error = match run_chromium(chromium, dir, pages, scheme, &mut reports) {
        Err(e) => Some(e),
        Ok(()) => {
            let missing: Vec<&String> =
                pages.iter().filter(|p| reports.get(*p).is_none_or(|r| r.len() != WIDTHS.len())).collect();
            (!missing.is_empty()).then(|| format!("no report for {missing:?}"))
        }
    };
    (reports, error)
}

fn run_chromium(
    chromium: &Path,
    dir: &Path,
    pages: &[String],
    scheme: Scheme,
    reports: &mut Reports,
) -> Result<(), String> {
    let profile = tempfile::Builder::new().prefix("chromium-profile-").tempdir().map_err(|e| e.to_string())?;
    let mut url = url::Url::from_file_path(dir.join("_frames.html")).map_err(|()| "bad temp dir".to_string())?;
    let widths: Vec<String> = WIDTHS.iter().map(u32::to_string).collect();
    url.query_pairs_mut().append_pair("pages", &pages.join(",")).append_pair("widths", &widths.join(","));
    let stdout_path = profile.path().join("stdout");
    let stderr_path = profile.path().join("stderr");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        // /dev/shm is often tiny in containers
        "--disable-dev-shm-usage",
        // scrollbars take no room, as on a phone: innerWidth is all the page gets
        "--hide-scrollbars",
        "--window-size=1720,1000",
        // the dump waits for this much virtual time; idle time passes at once
        "--virtual-time-budget=600000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.path().join("data").display()))
    .args(scheme.flags())
    .arg(url.as_str())
    .stdin(Stdio::null())
    .stdout(fs::File::create(&stdout_path).map_err(|e| e.to_string())?)
    .stderr(fs::File::create(&stderr_path).map_err(|e| e.to_string())?);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
    let timeout = TIMEOUT_BASE + TIMEOUT_PER_PAGE * pages.len() as u32;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() > deadline {
            // the whole process group: the browser and its renderers
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let mut rest = stdout.as_str();
    while let Some(start) = rest.find("CHECK-RESULT ") {
        let after = &rest[start + "CHECK-RESULT ".len()..];
        let end = after.find(" CHECK-END").ok_or("a report without its end marker")?;
        let frame: FrameReport =
            serde_json::from_str(&after[..end]).map_err(|e| format!("unreadable report ({e}): {}", &after[..end]))?;
        if !WIDTHS.contains(&frame.frame_width) {
            return Err(format!("a report from an unknown frame: {frame:?}"));
        }
        reports.entry(frame.page).or_default().insert(frame.frame_width, frame.report);
        rest = &after[end..];
    }
    if status.is_some_and(|s| s.success()) && stdout.contains("CHECK-DONE ") {
        return Ok(());
    }
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
    let how = match status {
        None => format!("took longer than {timeout:?}"),
        Some(s) => format!("stopped early ({s})"),
    };
    Err(format!("Chromium {how}; its stderr ends:\n      {}", tail.join("\n      ")))
}

/// The problems one frame's report shows.
fn problems(report: &Report, width: u32, scheme: Scheme) -> Vec<String> {
    if let Some(e) = &report.error {
        return vec![e.clone()];
    }
    let mut found = Vec::new();
    if report.inner_width != width {
        found.push(format!("the test harness gave the page a viewport {} px wide, not {width}", report.inner_width));
    }
    if report.dark != (scheme == Scheme::Dark) {
        found.push(format!(
            "prefers-color-scheme: dark is {} (the colour scheme did not apply; body background {})",
            report.dark, report.background
        ));
    }
    if report.stylesheets == 0 || report.stylesheets_loaded != report.stylesheets {
        found.push(format!("{} of {} stylesheets loaded", report.stylesheets_loaded, report.stylesheets));
    }
    if report.scroll_width > report.inner_width {
        found.push(format!(
            "scrolls sideways: content {} px wide in a {} px viewport ({} px inside scrollbars); wider: {:?}",
            report.scroll_width, report.inner_width, report.client_width, report.wider
        ));
    }
    if report.viewport.as_deref() != Some(VIEWPORT) {
        found.push(format!("viewport meta is {:?}, not {VIEWPORT:?}", report.viewport));
    }
    for input in &report.unlabelled {
        found.push(format!("an input without a label: {input}"));
    }
    for v in report.violations.iter().filter(|v| v.fails()) {
        found.push(format!(
            "axe {} ({}): {}\n        {}",
            v.id,
            v.impact.as_deref().unwrap_or("?"),
            v.help,
            v.nodes.join("\n        ")
        ));
    }
    found
}

/// A page that breaks every rule, to show the harness really sees each kind of problem (a
/// harness that silently checks nothing would otherwise pass every page).
const CANARY: &str = r##"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>canary</title><link rel="stylesheet" href="static/style.css"></head>
<body>
<main><h1>Canary</h1>
<p class="low-contrast">Pale text</p>
<input type="text" name="unlabelled">
<div class="too-wide">A box wider than a phone</div>
</main>
<style>.low-contrast { color: #c8c8c8; background: #fff; } .too-wide { width: 600px; }</style>
</body>
</html>
"##;

fn check_canary(reports: &BTreeMap<u32, Report>) -> Vec<String> {
    let mut missed = Vec::new();
    let Some(phone) = reports.get(&WIDTHS[0]) else { return vec!["canary: no report".into()] };
    if let Some(e) = &phone.error {
        return vec![format!("canary: {e}")];
    }
    let ids: Vec<(&str, bool)> = phone.violations.iter().map(|v| (v.id.as_str(), v.fails())).collect();
    for rule in ["color-contrast", "label"] {
        if !ids.contains(&(rule, true)) {
            missed.push(format!("canary: axe did not report a serious {rule} violation (it reported {ids:?})"));
        }
    }
    if phone.scroll_width <= phone.inner_width {
        missed.push(format!("canary: a 600 px box did not scroll sideways at {} px", phone.inner_width));
    }
    if phone.viewport.is_some() || phone.unlabelled.is_empty() {
        missed.push("canary: the missing viewport meta or label went unnoticed".into());
    }
    missed
}

/// Writes the pages with the checks injected, the frames page and the canary; returns the page
/// file names.
fn prepare(dir: &Path, axe: &Path) -> Vec<String> {
    let written = crate::samples::write_pages(dir).expect("write the sample pages");
    fs::copy(axe, dir.join("axe.min.js")).expect("copy axe.min.js");
    let browser = manifest_dir().join("tests/browser");
    fs::copy(browser.join("check.js"), dir.join("check.js")).expect("copy check.js");
    fs::copy(browser.join("frames.html"), dir.join("_frames.html")).expect("copy frames.html");
    let inject = r#"<script src="axe.min.js"></script><script src="check.js"></script></body>"#;
    let mut names = Vec::new();
    for path in written {
        let html = fs::read_to_string(&path).unwrap();
        assert_eq!(html.matches("</body>").count(), 1, "{}", path.display());
        fs::write(&path, html.replace("</body>", inject)).unwrap();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    fs::write(dir.join("_canary.html"), CANARY.replace("</body>", inject)).unwrap();
    names
}

#[test]
fn every_page_in_chromium_with_axe_at_390_and_1280_px_light_and_dark() {
    let tools = find_chromium().and_then(|c| find_axe().map(|a| (c, a)));
    let (chromium, axe) = match tools {
        Ok(tools) => tools,
        Err(why) if on_ci() => panic!("browser checks cannot run on CI: {why}"),
        Err(why) => {
            say(&format!("NOTICE: skipping browser checks: {why}"));
            return;
        }
    };
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("flex-user-pages-").tempdir().unwrap();
    let pages = prepare(dir.path(), &axe);

    // One browser per colour scheme (starting one costs as much as checking two pages), each
    // with every page and, first, the canary.
    let all: Vec<String> = std::iter::once("_canary.html".to_string()).chain(pages.iter().cloned()).collect();
    let jobs = vec![(all.clone(), Scheme::Light), (all, Scheme::Dark)];
    let queue = Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>());
    let results: Mutex<Vec<(Scheme, Reports)>> = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let Some((batch, scheme)) = queue.lock().unwrap().pop() else { break };
                    let all_count = batch.len();
                    let (mut reports, error) = run_batch(&chromium, dir.path(), &batch, scheme);
                    if let Some(first) = error {
                        // one retry of what is missing, for a browser that crashed or hung
                        let missing: Vec<String> = batch
                            .into_iter()
                            .filter(|p| reports.get(p).is_none_or(|r| r.len() != WIDTHS.len()))
                            .collect();
                        let second = if missing.is_empty() {
                            Some("(not retried)".to_string())
                        } else {
                            let (more, error) = run_batch(&chromium, dir.path(), &missing, scheme);
                            reports.extend(more);
                            error
                        };
                        if let Some(second) = second {
                            let which =
                                if missing.len() == all_count { "every page".into() } else { format!("{missing:?}") };
                            let msg = format!("{which} ({}): {first}\n  then: {second}", scheme.name());
                            errors.lock().unwrap().push(msg);
                        }
                    }
                    results.lock().unwrap().push((scheme, reports));
                }
            });
        }
    });
    let mut results: Vec<(String, Scheme, BTreeMap<u32, Report>)> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .flat_map(|(scheme, reports)| reports.into_iter().map(move |(page, r)| (page, scheme, r)))
        .collect();
    results.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));

    let mut failures = errors.into_inner().unwrap();
    let mut minor = 0;
    let mut checked = 0;
    let mut canaries = 0;
    for (page, scheme, reports) in &results {
        if reports.len() != WIDTHS.len() {
            failures.push(format!("{page} ({}): reports for {:?} px only", scheme.name(), reports.keys()));
        }
        if page == "_canary.html" {
            canaries += 1;
            failures.extend(check_canary(reports));
            continue;
        }
        checked += 1;
        for (&width, report) in reports {
            minor += report.violations.iter().filter(|v| !v.fails()).count();
            for p in problems(report, width, *scheme) {
                failures.push(format!("{page} at {width} px, {}: {p}", scheme.name()));
            }
        }
    }
    if checked != 2 * pages.len() || canaries != 2 {
        failures.push(format!("{checked} of {} pages and {canaries} of 2 canaries checked", 2 * pages.len()));
    }
    say(&format!(
        "browser checks: {} pages x {:?} px x light/dark in {:.0?} ({} moderate or minor axe findings, not counted)",
        pages.len(),
        WIDTHS,
        started.elapsed(),
        minor
    ));
    assert!(failures.is_empty(), "{} problems:\n  {}", failures.len(), failures.join("\n  "));
}
