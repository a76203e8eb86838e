//! Discovery documents: protected resource metadata (RFC 9728) and authorization server
//! metadata (RFC 8414), from which clients learn everything else.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{SCOPE, SignIn};

/// `/.well-known/oauth-protected-resource[/mcp]`.
pub async fn protected_resource(State(sign_in): State<SignIn>) -> Json<Value> {
    Json(json!({
        "resource": sign_in.resource(),
        "authorization_servers": [sign_in.issuer()],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": "Bitrix24 task results",
    }))
}

/// `/.well-known/oauth-authorization-server` (and OpenID's discovery path, which some
/// clients try first).
pub async fn authorization_server(State(sign_in): State<SignIn>) -> Json<Value> {
    let issuer = sign_in.issuer();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "scopes_supported": [SCOPE],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": super::register::AUTH_METHODS,
        // /revoke authenticates clients as /token does (RFC 7009 §2.1).
        "revocation_endpoint_auth_methods_supported": super::register::AUTH_METHODS,
        // Clients (Claude Code, Codex through rmcp, the Python SDK) send a document URL
        // only when this is true, and register at /register otherwise.
        "client_id_metadata_document_supported": sign_in.inner.clients.documents_on(),
        "authorization_response_iss_parameter_supported": true,
    }))
}
