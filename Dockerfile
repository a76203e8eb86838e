# The server in a container, for a team over HTTP (docs/http.md). Build: docker build -t bitrix24-task-results-mcp .
# Run:  docker run -p 8000:8000 -e MCP_AUTH_TOKEN=$(openssl rand -hex 32) \
#         -e BITRIX24_WEBHOOK_URL=https://YOUR.bitrix24.com/rest/1/SECRET/ bitrix24-task-results-mcp
# The server refuses 0.0.0.0 without MCP_AUTH_TOKEN, so the container does too.

# Build stage: the commands CI runs (.ci/run: cargo test --locked), then the dist binary
# as `cargo xtask dist` builds it. CHECK=0 skips the tests for a quicker image.
FROM rust:1.95-slim-bookworm AS build
ARG CHECK=1
WORKDIR /src
COPY . .
RUN if [ "$CHECK" = 1 ]; then cargo test --locked; fi \
 && cargo build --locked --profile dist --bin bitrix24-task-results-mcp

# Final stage: the binary, the CA roots it verifies the portal's TLS certificate with
# (rustls-platform-verifier reads the system store), and nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcp
COPY --from=build /src/target/dist/bitrix24-task-results-mcp /usr/local/bin/bitrix24-task-results-mcp
USER 10001:10001
ENV MCP_TRANSPORT=http \
    MCP_LISTEN=0.0.0.0:8000 \
    RUST_LOG=info
EXPOSE 8000
# A client must send the Host it uses: add it with MCP_ALLOWED_HOSTS (e.g. mcp.example.com,localhost:8000).
# No HEALTHCHECK: the image has no curl; point the orchestrator's HTTP probes at GET /healthz
# (liveness) and GET /readyz (readiness). SIGTERM drains for MCP_DRAIN_SECONDS (5) first.
ENTRYPOINT ["/usr/local/bin/bitrix24-task-results-mcp"]
CMD ["--transport", "http", "--listen", "0.0.0.0:8000"]
