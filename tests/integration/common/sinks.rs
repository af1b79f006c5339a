//! Real listeners for messages, inside the test process: an SMTP server (mailin-embedded) and
//! an HTTP sink for the SMS webhook.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
struct SmtpHandler {
    mails: Arc<Mutex<Vec<Mail>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for SmtpHandler {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let mail = Mail { to: std::mem::take(&mut self.to), data: String::from_utf8_lossy(&self.data).into_owned() };
        self.data.clear();
        self.mails.lock().unwrap().push(mail);
        mailin_embedded::response::OK
    }
}

/// An SMTP server (mailin-embedded) on its own thread, collecting messages.
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        SmtpSink::start_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn start_on(listener: TcpListener) -> SmtpSink {
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let handler = SmtpHandler { mails: mails.clone(), to: Vec::new(), data: Vec::new() };
        std::thread::spawn(move || {
            let mut server = mailin_embedded::Server::new(handler);
            // One thread per connection being served, started up front and never stopped (the
            // server has no shutdown): 64 per test app put the whole suite near the per-process
            // limit of memory maps (65530) and past it as tests were added. Our client opens a
            // connection per message and closes it, so a busy sink only queues a connection.
            server.with_name("sink.test").with_num_threads(16).with_tcp_listener(listener);
            // the error type is not Send: it stays on this thread
            if let Err(e) = server.serve() {
                eprintln!("SMTP sink stopped: {e}");
            }
        });
        SmtpSink { addr, mails }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

/// A tiny HTTP server collecting JSON POSTs; it answers `500` to the first `fail_first`.
pub struct HttpSink {
    pub addr: SocketAddr,
    posts: Arc<Mutex<Vec<serde_json::Value>>>,
    pub fail_first: Arc<AtomicUsize>,
}

impl HttpSink {
    pub fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let fail_first = Arc::new(AtomicUsize::new(0));
        let (p, f) = (posts.clone(), fail_first.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (p, f) = (p.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = HttpSink::serve(stream, &p, &f);
                });
            }
        });
        HttpSink { addr, posts, fail_first }
    }

    fn serve(
        stream: TcpStream,
        posts: &Mutex<Vec<serde_json::Value>>,
        fail_first: &AtomicUsize,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut length = 0;
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let failing = fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !failing && request_line.starts_with("POST /sms ") {
            posts.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
        }
        let status = if failing { "500 Internal Server Error" } else { "200 OK" };
        let mut stream = stream;
        write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        stream.flush()
    }

    pub fn url(&self) -> String {
        format!("http://{}/sms", self.addr)
    }

    pub fn posts(&self) -> Vec<serde_json::Value> {
        self.posts.lock().unwrap().clone()
    }
}

/// A server that accepts connections and never says a word.
pub fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}
