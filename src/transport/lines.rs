//! Newline-delimited JSON-RPC over a byte stream (stdio): the framing, by tokio-util's
//! [`LinesCodec`]; what a line means is judged by [`super::jsonrpc`], shared with the
//! HTTP transports.
//!
//! The codec is driven by hand over our own buffer rather than through `FramedRead`,
//! which ends its stream after a decoder error: an over-long or non-UTF-8 line is
//! answered and the next line read as usual.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

use super::jsonrpc::{INVALID_REQUEST, PARSE_ERROR, Verdict, answer, error, judge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// Largest message accepted, newline included, as in rmcp's stdio transport (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Room made in the buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

type Writer<W> = Arc<Mutex<Option<W>>>;

/// The server side of JSON-RPC over a reader (client to server) and a writer.
pub struct JsonRpcLines<R, W> {
    read: R,
    /// Bytes read and not yet framed. With the codec's own state (the rest of an
    /// oversized line being dropped), it survives a cancelled `receive` (rmcp polls it
    /// in a `select!`) in the middle of a line.
    buf: BytesMut,
    codec: LinesCodec,
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
            read,
            buf: BytesMut::new(),
            // The codec's limit excludes the newline.
            codec: LinesCodec::new_with_max_length(MAX_LINE_BYTES - 1),
            write: Arc::new(Mutex::new(Some(write))),
        }
    }

    /// The next line; cancel-safe (`read_buf` reads nothing if cancelled, and decoding
    /// does not await).
    async fn read_line(&mut self) -> std::io::Result<Line> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(line)) => return Ok(Line::Complete(line)),
                Ok(None) => {}
                Err(LinesCodecError::MaxLineLengthExceeded) => return Ok(Line::Oversized),
                // The codec has already taken the line off the buffer.
                Err(LinesCodecError::Io(_)) => return Ok(Line::NotUtf8),
            }
            self.buf.reserve(READ_CHUNK);
            // An unterminated last line is dropped, as before.
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Ok(Line::Eof);
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
    Complete(String),
    Oversized,
    NotUtf8,
    Eof,
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
                Ok(Line::Complete(line)) => judge(line.as_bytes()),
                Ok(Line::NotUtf8) => answer(error(
                    None,
                    PARSE_ERROR,
                    "Parse error: the message is not valid UTF-8",
                )),
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

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_answered_and_the_next_one_served() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_r, server_w) = tokio::io::split(server);
        let (client_r, mut client_w) = tokio::io::split(client);
        let mut t = JsonRpcLines::new(server_r, server_w);
        client_w
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let served = serde_json::to_value(t.receive().await.unwrap()).unwrap();
        assert_eq!(served["id"], 2);
        let mut replies = tokio::io::BufReader::new(client_r).lines();
        let reply: Value =
            serde_json::from_str(&replies.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], PARSE_ERROR);
        assert!(reply.get("id").is_none(), "{reply}");
    }

    #[tokio::test]
    async fn the_limit_is_16_mib_newline_included() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_r, server_w) = tokio::io::split(server);
        let (client_r, mut client_w) = tokio::io::split(client);
        let mut t = JsonRpcLines::new(server_r, server_w);
        let line = |id: u32, total: usize| {
            let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"p":""#);
            let tail = "\"}}\n";
            let pad = "y".repeat(total - head.len() - tail.len());
            format!("{head}{pad}{tail}")
        };
        let (fits, over) = (line(1, MAX_LINE_BYTES), line(2, MAX_LINE_BYTES + 1));
        tokio::spawn(async move {
            client_w.write_all(fits.as_bytes()).await.unwrap();
            client_w.write_all(over.as_bytes()).await.unwrap();
            client_w
                .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n")
                .await
                .unwrap();
        });
        let first = serde_json::to_value(t.receive().await.unwrap()).unwrap();
        assert_eq!(first["id"], 1);
        let next = serde_json::to_value(t.receive().await.unwrap()).unwrap();
        assert_eq!(next["id"], 3, "the over-long line is not served");
        let mut replies = tokio::io::BufReader::new(client_r).lines();
        let reply: Value =
            serde_json::from_str(&replies.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], INVALID_REQUEST);
        assert!(reply.get("id").is_none(), "{reply}");
    }
}
