//! MCP over stdin/stdout: stdout carries JSON-RPC only; logs go to stderr.

use rmcp::ServiceExt;
use rmcp::service::ServerInitializeError;
use tokio_util::sync::CancellationToken;

use super::lines::JsonRpcLines;
use crate::server::TaskResultsServer;

/// Serves one client on stdio until stdin closes or `ct` is cancelled.
pub async fn serve(server: TaskResultsServer, ct: CancellationToken) -> anyhow::Result<()> {
    // stdio_pipes() reads through the reactor when stdin/stdout are pipes (what MCP
    // clients give us), so cancellation is not stuck behind a blocking stdin read;
    // JsonRpcLines answers the malformed lines rmcp's own framing would drop.
    let (read, write) = rmcp::transport::stdio_pipes();
    let service = match server
        .serve_with_ct(JsonRpcLines::new(read, write), ct)
        .await
    {
        Ok(service) => service,
        // A signal before the handshake finished is a normal exit.
        Err(ServerInitializeError::Cancelled) => return Ok(()),
        // The client went away before completing the handshake.
        Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
        Err(e) => return Err(anyhow::anyhow!("MCP handshake failed: {e}")),
    };
    let reason = service.waiting().await?;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}
