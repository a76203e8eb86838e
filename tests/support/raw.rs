//! A raw JSON-RPC client for the binary over stdio: it writes arbitrary bytes to stdin
//! and keeps every stdout line and all of stderr, so tests can check what a real client
//! would never send and everything the server ever wrote.
#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use super::common::command;

/// Bounds a wait for an answer so a missing answer fails the test instead of hanging it.
/// Not a speed check: an answer normally takes milliseconds.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

pub struct RawSession {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: mpsc::UnboundedReceiver<Value>,
    /// Messages read while waiting for another id.
    pending: Vec<Value>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl RawSession {
    /// Spawns the binary with a clean environment plus `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> RawSession {
        Self::spawn(args, env, true)
    }

    /// Like [`RawSession::start`], but the read end of the server's stderr is closed at
    /// once, as a client that does not want the logs might do.
    pub fn start_with_closed_stderr(args: &[&str], env: &[(&str, &str)]) -> RawSession {
        Self::spawn(args, env, false)
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], keep_stderr: bool) -> RawSession {
        let mut cmd = command(args, env);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the server binary");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        // Dropping the pipe closes its read end: the server's writes then fail (EPIPE).
        let stderr_pipe = child.stderr.take().filter(|_| keep_stderr);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, messages) = mpsc::unbounded_channel();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line.clone());
                // Non-JSON is kept in `lines` for the purity check; only JSON is routed.
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let sink = stderr.clone();
        tokio::spawn(async move {
            let Some(mut stderr_pipe) = stderr_pipe else {
                return;
            };
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        RawSession {
            child,
            stdin,
            messages,
            pending: Vec::new(),
            lines,
            stderr,
        }
    }

    /// Writes raw bytes to stdin as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write to stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Writes one line (a newline is appended).
    pub async fn line(&mut self, text: &str) {
        self.write(format!("{text}\n").as_bytes()).await;
    }

    /// Sends one JSON message as a line.
    pub async fn send(&mut self, msg: &Value) {
        self.line(&msg.to_string()).await;
    }

    /// The next message that carries `id` (a response to it); others are kept.
    pub async fn response(&mut self, id: &Value) -> Value {
        if let Some(i) = self.pending.iter().position(|m| m.get("id") == Some(id)) {
            return self.pending.remove(i);
        }
        let found = tokio::time::timeout(ANSWER_DEADLINE, async {
            loop {
                let msg = self
                    .messages
                    .recv()
                    .await
                    .expect("stdout closed before the answer");
                if msg.get("id") == Some(id) {
                    return msg;
                }
                self.pending.push(msg);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no answer to id {id}; stderr:\n{}", self.stderr()))
    }

    /// Waits for the next message without an `id` (answers to unreadable requests are
    /// written concurrently with other answers, so they can arrive in any order).
    pub async fn next_id_less(&mut self) -> Value {
        let is_id_less = |m: &Value| m.get("id").is_none_or(Value::is_null);
        if let Some(i) = self.pending.iter().position(is_id_less) {
            return self.pending.remove(i);
        }
        let found = tokio::time::timeout(ANSWER_DEADLINE, async {
            loop {
                let msg = self
                    .messages
                    .recv()
                    .await
                    .expect("stdout closed before the answer");
                if is_id_less(&msg) {
                    return msg;
                }
                self.pending.push(msg);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no id-less answer; stderr:\n{}", self.stderr()))
    }

    /// Takes every kept message that has no `id` (e.g. errors about unreadable requests).
    pub fn take_id_less(&mut self) -> Vec<Value> {
        while let Ok(m) = self.messages.try_recv() {
            self.pending.push(m);
        }
        let (without, with): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..)
            .partition(|m| m.get("id").is_none_or(Value::is_null));
        self.pending = with;
        without
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(&id).await
    }

    /// `initialize` + `notifications/initialized`.
    pub async fn initialize(&mut self) -> Value {
        let r = self
            .request(
                json!("init"),
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}),
            )
            .await;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        r
    }

    /// Calls a tool and returns the JSON-RPC answer.
    pub async fn call(&mut self, id: Value, tool: &str, args: Value) -> Value {
        self.request(id, "tools/call", json!({"name": tool, "arguments": args}))
            .await
    }

    /// Proves the session still serves: a ping is answered.
    pub async fn assert_alive(&mut self, id: &str) {
        let r = self.request(json!(id), "ping", json!({})).await;
        assert_eq!(r["result"], json!({}), "{r}");
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Everything on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the process to exit on its own (stdin stays open).
    pub async fn wait_for_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(ANSWER_DEADLINE, self.child.wait())
            .await
            .expect("the server exits")
            .unwrap()
    }

    /// Closes stdin and waits for the process to exit.
    pub async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(ANSWER_DEADLINE, self.child.wait())
            .await
            .expect("the server exits after stdin closes")
            .unwrap();
        // Let the readers drain what is left in the pipes.
        for _ in 0..50 {
            if self.messages.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lines = self.stdout_lines();
        let stderr = self.stderr();
        (status, lines, stderr)
    }
}

/// Whether a stdout line is one JSON-RPC 2.0 message (request, notification or response).
pub fn is_jsonrpc_message(line: &str) -> Result<(), String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:.200}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("not an object: {line:.200}"))?;
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(format!("no \"jsonrpc\":\"2.0\": {line:.200}"));
    }
    let is_response = obj.contains_key("result") ^ obj.contains_key("error");
    let is_call = obj.get("method").is_some_and(Value::is_string)
        && !obj.contains_key("result")
        && !obj.contains_key("error");
    if !(is_response || is_call) {
        return Err(format!("neither a request nor a response: {line:.200}"));
    }
    Ok(())
}

/// How many stdout lines are answers without an `id`.
pub fn count_id_less(lines: &[String]) -> usize {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m.get("error").is_some() && m.get("id").is_none_or(Value::is_null))
        .count()
}

/// Asserts every stdout line is a JSON-RPC message.
pub fn assert_stdout_is_jsonrpc(lines: &[String]) {
    for line in lines {
        if let Err(e) = is_jsonrpc_message(line) {
            panic!("stdout carries something other than JSON-RPC: {e}");
        }
    }
}

/// Asserts nothing panicked in the server (its panic hook writes `panic at …`, and a
/// caught panic in a tool answers with the guard's marker).
pub fn assert_no_panic(stderr: &str, lines: &[String]) {
    assert!(
        !stderr.contains("panic at ") && !stderr.contains("panicked at"),
        "the server panicked:\n{stderr}"
    );
    for line in lines {
        assert!(
            !line.contains("Internal error in bitrix24-task-results-mcp"),
            "a tool call panicked: {line:.400}"
        );
    }
}
