//! The store key and the encryption of the Bitrix24 tokens at rest.
//!
//! XChaCha20-Poly1305: its 24-byte nonces are safe to draw at random for every value, so no
//! counter has to survive restarts or be shared between processes. The associated data
//! names the field and the row (`access`/`refresh`, user id, member id), so a ciphertext
//! copied into another row or field fails to open instead of signing someone in as
//! another person.

use std::fmt;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::zeroize::{Zeroize, Zeroizing};
use secrecy::{ExposeSecret, SecretString};

use super::StoreError;

/// Format version of a sealed value, its first byte, so the scheme can change later.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// The 32-byte key of the store's encrypted values. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct StoreKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(***)")
    }
}

impl StoreKey {
    /// A key from its 64 hexadecimal characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Key(
                "expected 64 hexadecimal characters (32 bytes)".into(),
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = &text[2 * i..2 * i + 2];
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| StoreError::Key("expected hexadecimal characters".into()))?;
        }
        Ok(Self::from_bytes(*bytes))
    }

    /// A key from its raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut key = Key::from(bytes);
        let cipher = XChaCha20Poly1305::new(&key);
        key.zeroize();
        Self { cipher }
    }

    /// A fresh random key and its hex form (to write into a key file).
    pub fn generate() -> Result<(Self, SecretString), StoreError> {
        let mut key = Key::try_generate()
            .map_err(|_| StoreError::Key("the system random source failed".into()))?;
        let hex: Zeroizing<String> =
            Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect());
        let store_key = Self::from_bytes(key.into());
        key.zeroize();
        Ok((store_key, SecretString::from(hex.as_str())))
    }

    /// Reads the key file at `path`, or creates one (64 hex characters, mode 0600) when none
    /// exists. `true` when it was created: the caller warns that production should set the
    /// key itself. Two processes starting at once end with the same key: the file appears
    /// whole (written aside, then linked without replacing).
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), StoreError> {
        super::schema::refuse_if_exposed(path, "store key file")?;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return Self::from_hex(Zeroizing::new(text).as_str()).map(|key| (key, false));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(key_file_error("read", path, &e)),
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        super::schema::create_private_dir(dir)?;
        let (key, hex) = Self::generate()?;
        // tempfile creates the file with mode 0600.
        let mut file =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| key_file_error("create", path, &e))?;
        file.write_all(hex.expose_secret().as_bytes())
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| key_file_error("write", path, &e))?;
        match file.persist_noclobber(path) {
            Ok(_) => Ok((key, true)),
            // Another process won the race: use its key.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path).map_err(|e| key_file_error("read", path, &e))?,
                );
                Self::from_hex(&text).map(|key| (key, false))
            }
            Err(e) => Err(key_file_error("create", path, &e.error)),
        }
    }

    /// Encrypts `plain` for one field of one row: version, nonce, ciphertext and tag.
    pub fn seal(&self, plain: &str, aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = XNonce::try_generate()
            .map_err(|_| StoreError::Unavailable("the system random source failed".into()))?;
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| StoreError::Unavailable("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// A 32-byte key for another `purpose` (e.g. signing cookies), derived from this key
    /// so that every process sharing the store key derives the same one, while the store
    /// key itself never leaves this type. The key is held only as its cipher, so the
    /// derivation is the cipher's own pseudo-random function: the XChaCha20 keystream
    /// under a nonce reserved for `purpose` (the hash of its name). Sealing draws random
    /// 24-byte nonces, so it meets a reserved one with negligible probability.
    pub fn derive(&self, purpose: &str) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        use sha2::{Digest, Sha256};
        let name = Sha256::digest(format!("bitrix24-task-results-mcp derive {purpose}"));
        let nonce = XNonce::try_from(&name[..NONCE_LEN])
            .map_err(|_| StoreError::Unavailable("key derivation failed".into()))?;
        let stream = Zeroizing::new(
            self.cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &[0u8; 32],
                        aad: b"",
                    },
                )
                .map_err(|_| StoreError::Unavailable("key derivation failed".into()))?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&stream[..32]);
        Ok(out)
    }

    /// Decrypts what [`StoreKey::seal`] made for the same `aad`. `WrongKey` when it does not
    /// open: another key, or a value moved from another row.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretString, StoreError> {
        let Some((&VERSION, rest)) = sealed.split_first() else {
            return Err(StoreError::Unavailable(
                "an encrypted value has an unknown format".into(),
            ));
        };
        if rest.len() < NONCE_LEN {
            return Err(StoreError::Unavailable(
                "an encrypted value is truncated".into(),
            ));
        }
        let (nonce, msg) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| StoreError::Unavailable("an encrypted value is truncated".into()))?;
        let plain = self
            .cipher
            .decrypt(&nonce, Payload { msg, aad })
            .map_err(|_| StoreError::WrongKey)?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain)
            .map_err(|_| StoreError::Unavailable("a decrypted value is not text".into()))?;
        Ok(SecretString::from(text))
    }
}

/// The key (64 hex characters) in the file `--store-key-file` names: refused unless the
/// file is this user's and private to them, as the key file beside a database is.
pub fn read_key_file(path: &Path) -> Result<SecretString, StoreError> {
    super::schema::refuse_if_exposed(path, "store key file")?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| key_file_error("read", path, &e))?,
    );
    StoreKey::from_hex(&text).map_err(|e| match e {
        StoreError::Key(why) => StoreError::Key(format!("the key file {}: {why}", path.display())),
        other => other,
    })?;
    Ok(SecretString::from(text.trim()))
}

fn key_file_error(what: &str, path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Key(format!(
        "cannot {what} the key file {}: {e}",
        path.display()
    ))
}
