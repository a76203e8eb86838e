//! The floor for the benchmarks (`cargo bench --bench perf`): the smallest idiomatic
//! rmcp stdio server, one trivial tool, nothing else. It is built with the same release
//! profile as the real server, so the difference between the two is our own cost.

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to send back.
    text: String,
}

#[derive(Clone)]
struct Bare {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Bare {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// Returns its argument.
    #[tool]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bare {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The same non-blocking pipe transport the real server uses, so the comparison
    // measures our work and not a different stdio implementation.
    let service = Bare::new().serve(rmcp::transport::stdio_pipes()).await?;
    service.waiting().await?;
    Ok(())
}
