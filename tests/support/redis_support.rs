//! A real `redis-server` for a test: started on a free loopback port with no persistence,
//! in its own temporary directory, and killed when dropped. Tests never skip: without
//! `redis-server` they fail and say how to install it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Listening with TLS only, on a certificate of a CA of its own (`ca.crt`).
    tls: bool,
    /// `--requirepass`, when set.
    password: Option<String>,
    /// An append-only file synced on every write, so a restart keeps the data.
    persistent: bool,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with(false, None)
    }

    /// A server that keeps its data across [`RedisServer::restart`] (`appendfsync always`).
    pub fn start_persistent() -> Self {
        let mut server = Self::start_with(false, None);
        server.persistent = true;
        server.restart();
        server
    }

    /// A server that requires `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(false, Some(password.into()))
    }

    /// A server that speaks TLS only, for `rediss://localhost:PORT`; its CA is
    /// [`RedisServer::ca_file`]. The certificates are made with the `openssl` command.
    pub fn start_tls() -> Self {
        Self::start_with(true, None)
    }

    fn start_with(tls: bool, password: Option<String>) -> Self {
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            tls,
            password,
            persistent: false,
        };
        if tls {
            server.make_certificates();
        }
        // The free port may be taken between the probe and the server's bind: another.
        for _ in 0..5 {
            if server.spawn() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server exited at start five times on free ports");
    }

    /// The CA that signed a TLS server's certificate (PEM).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `rediss://localhost:PORT/DB` of a TLS server.
    pub fn tls_url(&self, db: u8) -> String {
        format!("rediss://localhost:{}/{db}", self.port)
    }

    fn make_certificates(&self) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write the certificate extensions");
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=redis-test-ca",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run openssl ({e}): install it with `apt-get install openssl` (or run .ci/deps)")
                });
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `redis://127.0.0.1:PORT/DB`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL; only a persistent one keeps its data).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port: empty, unless persistent.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Starts the process and waits for it; `false` when it exited at once.
    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        if self.tls {
            command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .args([
                    "--tls-cert-file",
                    "server.crt",
                    "--tls-key-file",
                    "server.key",
                ])
                .args(["--tls-ca-cert-file", "ca.crt"])
                .current_dir(self.dir.path());
        } else {
            command.args(["--port", &port]);
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let appendonly = if self.persistent { "yes" } else { "no" };
        let child = command
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                appendonly,
            ])
            .args(["--appendfsync", "always"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need it; install it with \
                     `apt-get install redis-server` (or run .ci/deps)"
                )
            });
        self.child = Some(child);
        // Polls the port; a server that never answers fails the test instead of hanging.
        for _ in 0..400 {
            if self.ping() {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    fn ping(&self) -> bool {
        if self.tls {
            return Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(self.ca_file())
                .args(["-h", "localhost", "-p", &self.port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"));
        }
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        // A server with a password answers NOAUTH: up, all the same.
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
    }

    /// Runs `redis-cli` against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (installed with redis-server)");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
