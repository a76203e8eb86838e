//! Newline-delimited JSON-RPC over a byte stream (stdio): the framing; what a line means
//! is judged by [`super::jsonrpc`].
//!
//! The judgement of each line (what rmcp would drop, and how it is answered instead)
//! lives in [`super::jsonrpc`], shared with the HTTP transports.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;

use super::jsonrpc::{INVALID_REQUEST, Verdict, answer, error, judge};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// Largest message accepted, as in rmcp's stdio transport (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

type Writer<W> = Arc<Mutex<Option<W>>>;

/// The server side of JSON-RPC over a reader (client to server) and a writer.
pub struct JsonRpcLines<R, W> {
    read: BufReader<R>,
    line: Vec<u8>,
    /// Dropping the rest of an oversized line; kept here because `receive` can be
    /// cancelled (rmcp polls it in a `select!`) in the middle of a line.
    discarding: bool,
    write: Writer<W>,
}

impl<R, W> JsonRpcLines<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    /// A transport reading requests from `read` and writing answers to `write`.
    pub fn new(read: R, write: W) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            write: Arc::new(Mutex::new(Some(write))),
        }
    }

    /// Reads one line into `self.line`; cancel-safe (no await between copying bytes out
    /// of the buffer and consuming them).
    async fn read_line(&mut self) -> std::io::Result<Line> {
        loop {
            let (used, step) = {
                let available = self.read.fill_buf().await?;
                if available.is_empty() {
                    return Ok(Line::Eof);
                }
                let newline = available.iter().position(|b| *b == b'\n');
                let take = newline.map_or(available.len(), |i| i + 1);
                if self.discarding {
                    (
                        take,
                        if newline.is_some() {
                            Step::EndDiscard
                        } else {
                            Step::More
                        },
                    )
                } else if self.line.len() + take > MAX_LINE_BYTES {
                    self.line.clear();
                    (
                        take,
                        if newline.is_some() {
                            Step::Oversized
                        } else {
                            Step::StartDiscard
                        },
                    )
                } else {
                    self.line.extend_from_slice(&available[..take]);
                    (
                        take,
                        if newline.is_some() {
                            Step::Line
                        } else {
                            Step::More
                        },
                    )
                }
            };
            self.read.consume(used);
            match step {
                Step::Line => return Ok(Line::Complete),
                Step::More => {}
                Step::EndDiscard => self.discarding = false,
                Step::Oversized => return Ok(Line::Oversized),
                Step::StartDiscard => {
                    self.discarding = true;
                    return Ok(Line::Oversized);
                }
            }
        }
    }

    /// Writes `reply` from its own task: `receive` may be cancelled at any await, and a
    /// half-written line would corrupt the stream.
    fn reply(&self, replies: Vec<Value>) {
        let write = self.write.clone();
        tokio::spawn(async move {
            for reply in replies {
                let _ = write_line(&write, &reply).await;
            }
        });
    }
}

enum Line {
    Complete,
    Oversized,
    Eof,
}

enum Step {
    Line,
    More,
    EndDiscard,
    Oversized,
    StartDiscard,
}

async fn write_line<W, T>(write: &Writer<W>, message: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: serde::Serialize,
{
    let mut bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let mut guard = write.lock().await;
    let Some(w) = guard.as_mut() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "the transport is closed",
        ));
    };
    w.write_all(&bytes).await?;
    w.flush().await
}

impl<R, W> Transport<RoleServer> for JsonRpcLines<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move { write_line(&write, &item).await }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let verdict = match self.read_line().await {
                Ok(Line::Complete) => {
                    let verdict = judge(&self.line);
                    self.line.clear();
                    verdict
                }
                Ok(Line::Oversized) => {
                    tracing::warn!(max_bytes = MAX_LINE_BYTES, "dropped an oversized message");
                    answer(error(
                        None,
                        INVALID_REQUEST,
                        &format!("message larger than {} MiB", MAX_LINE_BYTES / (1024 * 1024)),
                    ))
                }
                Ok(Line::Eof) => return None,
                Err(e) => {
                    tracing::error!("cannot read stdin: {e}");
                    return None;
                }
            };
            match verdict {
                Verdict::Serve(message) => return Some(message),
                Verdict::Ignore => {}
                Verdict::Answer(replies) => {
                    tracing::debug!(?replies, "answered a malformed message");
                    self.reply(replies);
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let mut guard = self.write.lock().await;
        if let Some(mut w) = guard.take() {
            let _ = w.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::jsonrpc::PARSE_ERROR;

    #[tokio::test]
    async fn a_cancelled_receive_resumes_the_same_line_and_replies_whole_lines() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_r, server_w) = tokio::io::split(server);
        let (client_r, mut client_w) = tokio::io::split(client);
        let mut t = JsonRpcLines::new(server_r, server_w);
        client_w
            .write_all(br#"{"jsonrpc":"2.0","id":1,"#)
            .await
            .unwrap();
        // No newline yet: receive cannot finish; dropping it must keep the half line.
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), t.receive()).await;
        assert!(pending.is_err());
        client_w
            .write_all(b"\"method\":\"ping\"}\nnot json\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let first = serde_json::to_value(t.receive().await.unwrap()).unwrap();
        assert_eq!(first["id"], 1);
        let second = serde_json::to_value(t.receive().await.unwrap()).unwrap();
        assert_eq!(second["id"], 2);
        let mut replies = tokio::io::BufReader::new(client_r).lines();
        let reply: Value =
            serde_json::from_str(&replies.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], PARSE_ERROR);
    }
}
