//! The real `flex-user serve` binary as a child process (faults, scale-out).
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running `flex-user serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// What the server said it serves (`FLEX_USER_PUBLIC_URL` when that is set), without a
    /// trailing slash.
    pub url: String,
    /// Held so the server's stdout stays open.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts the binary with exactly `env` (nothing inherited), in the folder of `log`, with its
    /// log (stderr) written to `log`, and waits until it says where it serves: by then it has
    /// migrated the database and is listening.
    pub fn start(env: &[(&str, &str)], log: &Path) -> Server {
        let file = std::fs::File::create(log).expect("server log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flex-user"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().copied())
            .current_dir(log.parent().expect("the log's folder"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("start flex-user");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("flex-user is serving ") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the server did not say where it serves: {line:?}; log:\n{log}");
        };
        let url = url.trim_end_matches('/').to_owned();
        Server { child, url, _stdout: stdout }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a process that must be told its port
/// (nginx, or a server whose public URL is not its own address).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
