//! A direct REST POST from the benchmark to the sandbox: reqwest with keep-alive, driven
//! by a current-thread runtime on the calling thread (no hand-off between the clock and
//! the socket).

use std::time::{Duration, Instant};

pub struct Direct {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    body: String,
}

impl Direct {
    pub fn new(url: String, body: String) -> Direct {
        // reqwest is built without a bundled TLS provider (as in the server).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .expect("reqwest client");
        Direct {
            rt,
            client,
            url,
            body,
        }
    }

    /// One POST; returns the elapsed time and the status, after the whole body is read.
    pub fn post(&self) -> (Duration, u16, bytes_len::Len) {
        let started = Instant::now();
        let (status, len) = self.rt.block_on(async {
            let response = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(self.body.clone())
                .send()
                .await
                .expect("direct POST");
            let status = response.status().as_u16();
            let body = response.bytes().await.expect("direct POST body");
            (status, body.len())
        });
        (started.elapsed(), status, bytes_len::Len(len))
    }
}

pub mod bytes_len {
    /// Length of an answer body.
    #[derive(Debug, Clone, Copy)]
    pub struct Len(pub usize);
}
