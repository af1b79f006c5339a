//! The process's log, captured in memory: for the test binaries that own the log subscriber
//! (`tests/logs.rs`, `tests/races.rs`). The server runs in-process, so what it logs lands here.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn text(&self) -> String {
        self.since(0)
    }

    /// What was logged after the first `start` bytes.
    pub fn since(&self, start: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[start..]).into_owned()
    }
}

/// Everything this process logs from the first call on (one subscriber per process, shared by
/// its tests; the first call's `filter` holds). No timestamps: they hold digit runs that could
/// match a code by chance.
pub fn process_logs(filter: &str) -> &'static LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}
