//! Metrics in tests: the address a server logs for `--metrics-listen`, a scrape, the
//! sockets a process listens on, `promtool check metrics`, and a real Prometheus server
//! started by the test on a free loopback port, scraping every second. Tests never skip:
//! without `prometheus` and `promtool` (Debian's `prometheus` package, which `.ci/deps`
//! installs) they fail and say how to install them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Upper bound on waiting for something that should come within seconds (a hang, not
/// slowness, when reached).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Every label name a series may carry (`le`: the histograms' buckets).
pub const LABEL_NAMES: [&str; 11] = [
    "tool", "outcome", "method", "status", "route", "who", "op", "part", "reason", "version", "le",
];

/// Waits until `stderr()` holds the server's `metrics on http://ADDR/metrics` line;
/// returns `ADDR`.
pub async fn metrics_addr(stderr: impl Fn() -> String) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = stderr();
        if let Some(rest) = text.split("metrics on http://").nth(1) {
            return rest.split("/metrics").next().unwrap().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not log its metrics address; stderr:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET http://ADDR/metrics`: the exposition (panics unless 200 in the text format).
pub async fn scrape(addr: &str) -> String {
    let reply = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape /metrics");
    assert_eq!(reply.status(), reqwest::StatusCode::OK);
    let kind = reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    reply.text().await.unwrap()
}

/// The value of the series `line_start` (name and labels exactly as exposed), if present.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Every label name and value in an exposition.
pub fn labels(exposition: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let inside = rest.rsplit_once('}').map(|(i, _)| i).unwrap_or_default();
        for pair in inside.split("\",") {
            if let Some((k, v)) = pair.split_once("=\"") {
                found.insert((k.to_string(), v.trim_end_matches('"').to_string()));
            }
        }
    }
    found
}

/// Asserts that every label of `exposition` has a name of [`LABEL_NAMES`].
pub fn assert_known_labels(exposition: &str) {
    for (name, value) in labels(exposition) {
        assert!(
            LABEL_NAMES.contains(&name.as_str()),
            "unexpected label {name}={value:?} in:\n{exposition}"
        );
    }
}

/// The loopback TCP ports process `pid` listens on (Linux: its socket inodes matched
/// against `/proc/net/tcp{,6}` entries in state LISTEN).
pub fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the process's fds") {
        let Ok(target) = std::fs::read_link(fd.unwrap().path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A = LISTEN), inode
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// A program the metrics tests need, or a failure saying how to install it.
fn needed(program: &str) -> Command {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{program}` is not installed: the metrics tests run a real Prometheus. Run .ci/deps \
         (or `apt-get install prometheus`, which also installs promtool)"
    );
    Command::new(program)
}

/// `promtool check metrics` on `exposition`: every line it printed (none when clean).
pub fn promtool_check(exposition: &str) -> String {
    let mut child = needed("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && said.trim().is_empty() {
        said = format!("promtool exited with {}", out.status);
    }
    said
}

/// A Prometheus server of the test's own, scraping one target every second.
pub struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (the OS may hand it out again before it is used; then the
/// start fails loudly).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (`HOST:PORT`, path `/metrics`) every second,
    /// with its data in a temporary directory, and waits until it is ready.
    pub async fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: mcp\n    scrape_interval: 1s\n    \
                 scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = needed("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            base: format!("http://{listen}"),
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = http()
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return prometheus;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus did not become ready; its log:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What prometheus wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through the HTTP API: each series' labels (of `by`) and value.
    pub async fn query(&self, query: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/query", self.base),
            &[("query", query)],
        )
        .unwrap();
        let body: Value = http()
            .get(url)
            .send()
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(body["status"], "success", "{query}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let key = by
                    .iter()
                    .map(|l| series["metric"][l].as_str().unwrap_or_default().to_string())
                    .collect();
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (key, value)
            })
            .collect()
    }

    /// Polls `query` until it shows exactly `expected` (label values of `by` → value);
    /// fails with the last answer when that does not happen within [`PATIENCE`].
    pub async fn wait_for(&self, query: &str, by: &[&str], expected: &[(&[&str], f64)]) {
        let expected: BTreeMap<Vec<String>, f64> = expected
            .iter()
            .map(|(k, v)| (k.iter().map(|s| s.to_string()).collect(), *v))
            .collect();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let seen = self.query(query, by).await;
            if seen == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus never showed {expected:?} for {query}; last: {seen:?}\nits log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A plain HTTP client (reqwest is built without a default TLS provider).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}
