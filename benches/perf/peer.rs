//! A minimal synchronous MCP client over a child's stdin/stdout: one JSON line per
//! message, no async runtime between the clock and the pipe.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde_json::Value;

/// The protocol version the benchmark announces.
pub const PROTOCOL: &str = "2025-06-18";

pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    line: String,
    next_id: u64,
}

impl Peer {
    /// Spawns `cmd` with piped stdin/stdout and stderr discarded.
    pub fn spawn(cmd: &mut Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server");
        let stdin = child.stdin.take();
        let out = BufReader::with_capacity(1 << 16, child.stdout.take().expect("stdout"));
        Peer {
            child,
            stdin,
            out,
            line: String::with_capacity(1 << 16),
            next_id: 1,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes raw text (one or more JSON lines) in one write.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("write to server");
    }

    /// A fresh request id.
    pub fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The next message the server writes, and when its line was read.
    pub fn next_message(&mut self) -> (Value, Instant) {
        self.line.clear();
        let n = self
            .out
            .read_line(&mut self.line)
            .expect("read from server");
        let at = Instant::now();
        assert!(n > 0, "the server closed stdout");
        match serde_json::from_str(&self.line) {
            Ok(v) => (v, at),
            Err(e) => panic!("server wrote a non-JSON line ({e}): {}", self.line),
        }
    }

    /// Reads lines until the response to `id`, the only request in flight; returns it
    /// and when its line was read.
    pub fn wait_for(&mut self, id: u64) -> (Value, Instant) {
        loop {
            let (v, at) = self.next_message();
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("JSON-RPC error for request {id}: {err}");
                }
                return (v, at);
            }
        }
    }

    /// Reads lines until the response to `id` and returns only when it arrived; the line
    /// is checked cheaply (no full parse) so the clock sees only the pipe.
    pub fn wait_for_fast(&mut self, id: u64) -> Instant {
        // JSON-RPC answers start with `{"jsonrpc":"2.0","id":N,`; only the first `"id":`
        // counts, later ones belong to the payload.
        let needle = format!("\"id\":{id},");
        loop {
            self.line.clear();
            let n = self
                .out
                .read_line(&mut self.line)
                .expect("read from server");
            let at = Instant::now();
            assert!(
                n > 0,
                "the server closed stdout while we waited for response {id}"
            );
            if self
                .line
                .find("\"id\":")
                .map(|i| &self.line[i..])
                .is_some_and(|rest| rest.starts_with(&needle))
            {
                return at;
            }
        }
    }

    /// initialize, then the initialized notification; returns the initialize answer.
    pub fn initialize(&mut self) -> Value {
        let id = self.id();
        self.send(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"{PROTOCOL}\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"perf-bench\",\"version\":\"0\"}}}}}}\n"
        ));
        let (v, _) = self.wait_for(id);
        self.send("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        v
    }

    /// A `tools/call` request line.
    pub fn call_line(&mut self, tool: &str, arguments: &str) -> (u64, String) {
        let id = self.id();
        (
            id,
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{arguments}}}}}\n"
            ),
        )
    }

    /// Peak resident set size (VmHWM) of the child, in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Closes stdin and waits for the child to exit.
    pub fn close(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
