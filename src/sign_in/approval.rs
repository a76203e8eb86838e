//! The cookies of the consent page: the browser's anti-forgery nonce, and the signed
//! "this browser approved this client" that lets a person skip the page next time.
//!
//! A remembered approval is `payload.mac`: the payload (base64url JSON of the person's
//! `member_id`, user id and the time of the approval) and an HMAC-SHA256 over the
//! client id and the payload, so a cookie names no client in clear and is worth nothing
//! for another client. The key is derived from the store key
//! ([`crate::store::StoreKey::derive`]), so replicas sharing a store honour each other's
//! cookies, and a new store key forgets every approval. Cookies are parsed by hand:
//! two headers in one format need no cookie crate.

use std::fmt;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::zeroize::Zeroizing;
use sha2::{Digest, Sha256};

use crate::store::{StoreError, StoreKey};

/// What the store key is derived into for signing approvals; a new version forgets them.
const PURPOSE: &str = "consent-cookie-v1";
/// Longest cookie value read (a genuine one is under 200 bytes).
const MAX_VALUE: usize = 1024;

/// The key signing remembered approvals. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ConsentKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for ConsentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsentKey(***)")
    }
}

impl ConsentKey {
    /// The key every process holding `store_key` derives alike.
    pub fn from_store_key(store_key: &StoreKey) -> Result<Self, StoreError> {
        store_key.derive(PURPOSE).map(Self)
    }

    fn mac(&self, client_id: &str, payload: &str) -> Hmac<Sha256> {
        // new_from_slice accepts keys of any length; a 32-byte key cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        // Length-prefixed, so no (client, payload) pair can be read as another.
        mac.update(&(client_id.len() as u64).to_be_bytes());
        mac.update(client_id.as_bytes());
        mac.update(payload.as_bytes());
        mac
    }
}

/// A person's approval of one client in one browser.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// The portal of the person who approved.
    pub member_id: String,
    /// Their Bitrix24 user id.
    pub user_id: i64,
    /// When they approved (unix seconds).
    pub issued_at: i64,
}

impl Approval {
    /// The cookie value for `client_id`.
    pub fn seal(&self, key: &ConsentKey, client_id: &str) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = key.mac(client_id, &payload).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The approval in `value` when it was sealed with `key` for `client_id`.
    pub fn open(value: &str, key: &ConsentKey, client_id: &str) -> Option<Approval> {
        if value.len() > MAX_VALUE {
            return None;
        }
        let (payload, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant-time comparison of the tag.
        key.mac(client_id, payload).verify_slice(&tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The name of the cookie remembering approvals of `client_id` (a hash: client ids may
/// be URLs, which are no cookie names). `__Host-` over https: the browser then accepts it
/// only from this host, secure, for the whole site, so no sibling domain can plant one.
pub fn approval_cookie(client_id: &str, secure: bool) -> String {
    let hash = Sha256::digest(client_id.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}b24mcp_ok_{hex}", prefix(secure))
}

/// The name of the browser's anti-forgery cookie.
pub fn nonce_cookie(secure: bool) -> String {
    format!("{}b24mcp_consent", prefix(secure))
}

fn prefix(secure: bool) -> &'static str {
    if secure { "__Host-" } else { "" }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax` (sent when the client's link opens
/// `/authorize`, not on another site's POST), `Path=/`, `Secure` over https.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

/// The value of cookie `name` in the request, if sent (the first, if several).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ConsentKey {
        ConsentKey::from_store_key(&StoreKey::from_bytes([byte; 32])).unwrap()
    }

    fn approval() -> Approval {
        Approval {
            member_id: "m1".into(),
            user_id: 7,
            issued_at: 1_700_000_000,
        }
    }

    #[test]
    fn an_approval_opens_only_for_its_client_and_key() {
        let sealed = approval().seal(&key(1), "client-a");
        assert_eq!(
            Approval::open(&sealed, &key(1), "client-a"),
            Some(approval())
        );
        assert_eq!(Approval::open(&sealed, &key(1), "client-b"), None);
        assert_eq!(Approval::open(&sealed, &key(2), "client-a"), None);
        // Processes sharing the store key derive the same key.
        assert_eq!(
            Approval::open(&sealed, &key(1), "client-a"),
            Approval::open(&approval().seal(&key(1), "client-a"), &key(1), "client-a")
        );
    }

    #[test]
    fn a_tampered_approval_does_not_open() {
        let sealed = approval().seal(&key(1), "c");
        let (payload, tag) = sealed.split_once('.').unwrap();
        let other = Approval {
            user_id: 1,
            ..approval()
        }
        .seal(&key(1), "c");
        let (other_payload, _) = other.split_once('.').unwrap();
        for forged in [
            format!("{other_payload}.{tag}"),
            format!("{payload}.{}", &tag[1..]),
            format!("{payload}x.{tag}"),
            payload.to_string(),
            String::new(),
            "a".repeat(5000),
        ] {
            assert_eq!(Approval::open(&forged, &key(1), "c"), None, "{forged}");
        }
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_store_key() {
        let store = StoreKey::from_bytes([3; 32]);
        let a = store.derive("one").unwrap();
        assert_eq!(*a, *store.derive("one").unwrap());
        assert_ne!(*a, *store.derive("two").unwrap());
        assert_ne!(*a, *StoreKey::from_bytes([4; 32]).derive("one").unwrap());
        assert!(format!("{:?}", key(1)).contains("***"));
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; b24mcp_consent=xyz".parse().unwrap());
        h.append(header::COOKIE, "c=3".parse().unwrap());
        assert_eq!(cookie(&h, "b24mcp_consent"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
        assert!(approval_cookie("x", true).starts_with("__Host-b24mcp_ok_"));
        assert_eq!(
            set_cookie("n", "v", 60, true),
            "n=v; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
