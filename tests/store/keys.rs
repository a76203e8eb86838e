//! What every backend shares and needs no storage to test: the store key (its file,
//! its format) and token hashes.

use bitrix24_task_results_mcp::store::{StoreError, StoreKey, TokenHash};
use secrecy::ExposeSecret;

use crate::contract::KEY;

#[test]
fn a_key_file_is_created_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("new-dir").join("store.sqlite3.key");
    let (first, created) = StoreKey::load_or_create(&key_path).unwrap();
    assert!(created);
    let text = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(text.len(), 64);
    assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
    let (second, created) = StoreKey::load_or_create(&key_path).unwrap();
    assert!(!created);
    // Same key: what one seals the other opens.
    let sealed = first.seal("value", b"aad").unwrap();
    assert_eq!(
        second.open(&sealed, b"aad").unwrap().expose_secret(),
        "value"
    );
    assert!(matches!(
        second.open(&sealed, b"other"),
        Err(StoreError::WrongKey)
    ));

    std::fs::write(&key_path, "not a key").unwrap();
    let err = StoreKey::load_or_create(&key_path).unwrap_err();
    assert!(matches!(err, StoreError::Key(_)), "{err:?}");
}

#[test]
fn keys_are_64_hex_characters() {
    assert!(StoreKey::from_hex(&format!("  {KEY}\n")).is_ok());
    assert!(StoreKey::from_hex(&KEY.to_uppercase()).is_ok());
    for bad in [
        "",
        &KEY[..62],
        &format!("{KEY}00"),
        &KEY.replace('0', "g"),
        &"é".repeat(32),
    ] {
        let err = StoreKey::from_hex(bad).unwrap_err();
        assert!(matches!(err, StoreError::Key(_)), "{bad:?}");
        assert!(!err.to_string().contains(&KEY[..16]), "{err}");
    }
}

#[test]
fn token_hashes_compare_by_value_and_print_a_prefix_only() {
    let a = TokenHash::of("token");
    assert_eq!(a, TokenHash::of("token"));
    assert_ne!(a, TokenHash::of("token2"));
    assert_eq!(TokenHash::from_bytes(*a.as_bytes()), a);
    let full: String = a.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let shown = format!("{a:?}");
    assert!(
        shown.starts_with("TokenHash(") && shown.contains(&full[..8]),
        "{shown}"
    );
    assert!(!shown.contains(&full[..16]), "{shown}");
}
