//! Secrets at rest: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under the operator's
//! 32-byte key. Every value gets a fresh random 24-byte nonce (safe to draw at random at any
//! volume, unlike the 12-byte nonce of plain ChaCha20-Poly1305 or AES-GCM), and the app id and
//! the secret's name are the associated data, so a ciphertext copied to another app or another
//! name does not open. Nothing here logs, and no type here shows a key or a value in `Debug`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use caas_types::AppId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a nonce (XChaCha20).
const NONCE_BYTES: usize = 24;
/// Bytes of the authentication tag.
const TAG_BYTES: usize = 16;
/// Prefix of a stored value: the format's version, so a later format can be told apart.
const FORMAT: &str = "v1:";
/// Hex digits of a key id.
const KEY_ID_LEN: usize = 16;

/// Why a key or a sealed value was refused. The texts name no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key text is neither 64 hex digits nor base64 of 32 bytes.
    #[error("the secrets key must be 32 bytes, as 64 hex digits or in base64 (e.g. `openssl rand -hex 32`)")]
    BadKey,
    /// The value was sealed under another key (a key changed without a rotation).
    #[error("a secret was sealed with key {stored}, this scheduler has key {ours} (see docs/OPERATIONS.md, rotating the secrets key)")]
    OtherKey {
        /// The id of the key that sealed it.
        stored: String,
        /// The id of this scheduler's key.
        ours: String,
    },
    /// The value does not open under this key, app and name: altered, or moved to another
    /// app or name.
    #[error("a secret does not decrypt: the stored value was altered or moved")]
    Open,
    /// The stored text is not a sealed value of a known format.
    #[error("a stored secret is malformed")]
    Malformed,
    /// Encryption failed (does not happen with a valid key; kept so nothing panics).
    #[error("encrypting a secret failed")]
    Seal,
}

/// The operator's secrets key. `Debug` shows only its id.
#[derive(Clone)]
pub struct SecretsKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SecretsKey {
    /// Parses a key: 64 hex digits, or base64 (standard or URL-safe, padded or not) of exactly
    /// 32 bytes. Surrounding whitespace (a trailing newline in a key file) is ignored.
    pub fn parse(text: &str) -> Result<SecretsKey, CryptoError> {
        let text = text.trim();
        let bytes = decode_hex(text)
            .or_else(|| {
                [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(text).ok())
            })
            .ok_or(CryptoError::BadKey)?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(SecretsKey::from_bytes(&key))
    }

    /// A key from its raw bytes.
    pub fn from_bytes(key: &[u8; KEY_BYTES]) -> SecretsKey {
        let digest = Sha256::digest(key);
        // Not secret: 64 bits of a one-way hash, to tell keys apart in rows and messages.
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        SecretsKey {
            cipher: XChaCha20Poly1305::new(key.into()),
            id,
        }
    }

    /// The key's id: 16 hex digits of SHA-256 of the key, stored beside what it sealed so a
    /// wrong key is named as such and a rotation knows what is left to re-encrypt.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `value` as the secret `name` of `app`: `v1:{key id}:` and base64 of nonce ‖
    /// ciphertext ‖ tag.
    pub fn seal(&self, app: &AppId, name: &str, value: &str) -> Result<String, CryptoError> {
        self.seal_aad(&associated_data(app, name), value)
    }

    /// Seals a webhook's signing secret; the webhook's id is the associated data (under its
    /// own prefix, so it never opens as an app's secret or the other way round).
    pub fn seal_webhook(&self, webhook: &str, value: &str) -> Result<String, CryptoError> {
        self.seal_aad(&webhook_data(webhook), value)
    }

    /// Opens what [`SecretsKey::seal_webhook`] made for the same webhook.
    pub fn open_webhook(&self, webhook: &str, stored: &str) -> Result<Plain, CryptoError> {
        self.open_aad(&webhook_data(webhook), stored)
    }

    fn seal_aad(&self, aad: &[u8], value: &str) -> Result<String, CryptoError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{FORMAT}{}:{}", self.id, STANDARD.encode(out)))
    }

    /// Opens what [`SecretsKey::seal`] made for the same `app` and `name`.
    pub fn open(&self, app: &AppId, name: &str, stored: &str) -> Result<Plain, CryptoError> {
        self.open_aad(&associated_data(app, name), stored)
    }

    fn open_aad(&self, aad: &[u8], stored: &str) -> Result<Plain, CryptoError> {
        let (id, raw) = split(stored).ok_or(CryptoError::Malformed)?;
        if id != self.id {
            return Err(CryptoError::OtherKey {
                stored: id.to_owned(),
                ours: self.id.clone(),
            });
        }
        let (nonce, sealed) = raw.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(Plain)
            .map_err(|_| CryptoError::Malformed)
    }
}

/// The id of the key that sealed `stored`, if it is a sealed value.
pub fn sealed_with(stored: &str) -> Option<&str> {
    split(stored).map(|(id, _)| id)
}

/// The length in bytes of the value sealed in `stored`, without opening it (for the size
/// limit of an app's config).
pub fn plain_len(stored: &str) -> Option<usize> {
    split(stored).map(|(_, raw)| raw.len() - NONCE_BYTES - TAG_BYTES)
}

/// The key id and the raw bytes (nonce ‖ ciphertext ‖ tag) of a stored value.
fn split(stored: &str) -> Option<(&str, Vec<u8>)> {
    let rest = stored.strip_prefix(FORMAT)?;
    let (id, b64) = rest.split_once(':')?;
    if id.len() != KEY_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let raw = STANDARD.decode(b64).ok()?;
    (raw.len() >= NONCE_BYTES + TAG_BYTES).then_some((id, raw))
}

/// A decrypted secret value, on its way into a container's environment. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Plain(String);

impl Plain {
    /// The value, for the container's environment (and only that).
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plain(<redacted>)")
    }
}

/// `caas-secret/v1`, the app and the name, NUL-separated (neither can hold a NUL), so no two
/// (app, name) pairs give the same bytes.
fn associated_data(app: &AppId, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + app.as_str().len() + name.len());
    aad.extend_from_slice(b"caas-secret/v1\0");
    aad.extend_from_slice(app.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// `caas-webhook/v1` and the webhook's id, NUL-separated.
fn webhook_data(webhook: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + webhook.len());
    aad.extend_from_slice(b"caas-webhook/v1\0");
    aad.extend_from_slice(webhook.as_bytes());
    aad
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != KEY_BYTES * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretsKey {
        SecretsKey::from_bytes(&[byte; KEY_BYTES])
    }

    fn app(name: &str) -> AppId {
        name.parse().expect("valid app id")
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_key_app_and_name() {
        let k = key(7);
        let sealed = k
            .seal(&app("shop"), "DB_PASSWORD", "hunter2")
            .expect("seals");
        assert!(sealed.starts_with(&format!("v1:{}:", k.id())));
        assert_eq!(sealed_with(&sealed), Some(k.id()));
        assert_eq!(plain_len(&sealed), Some("hunter2".len()));
        assert!(!sealed.contains("hunter2"));
        let plain = k.open(&app("shop"), "DB_PASSWORD", &sealed).expect("opens");
        assert_eq!(plain.into_inner(), "hunter2");
        // A fresh nonce each time: the same value never seals to the same text.
        let again = k
            .seal(&app("shop"), "DB_PASSWORD", "hunter2")
            .expect("seals");
        assert_ne!(sealed, again);
        // The empty value is a value.
        let empty = k.seal(&app("shop"), "E", "").expect("seals");
        assert_eq!(
            k.open(&app("shop"), "E", &empty)
                .expect("opens")
                .into_inner(),
            ""
        );
    }

    #[test]
    fn another_app_or_name_does_not_open_it() {
        let k = key(7);
        let sealed = k
            .seal(&app("shop"), "DB_PASSWORD", "hunter2")
            .expect("seals");
        assert_eq!(
            k.open(&app("other"), "DB_PASSWORD", &sealed),
            Err(CryptoError::Open)
        );
        assert_eq!(
            k.open(&app("shop"), "API_KEY", &sealed),
            Err(CryptoError::Open)
        );
        // The separator keeps ("ab", "C") and ("a", "bC") apart.
        let s = k.seal(&app("ab"), "C", "x").expect("seals");
        assert_eq!(k.open(&app("a"), "bC", &s), Err(CryptoError::Open));
    }

    #[test]
    fn another_key_does_not_open_it() {
        let sealed = key(7).seal(&app("shop"), "K", "v").expect("seals");
        assert_eq!(
            key(8).open(&app("shop"), "K", &sealed),
            Err(CryptoError::OtherKey {
                stored: key(7).id().to_owned(),
                ours: key(8).id().to_owned()
            })
        );
        // A key that claims the other's id still does not open it.
        let mut impostor = key(8);
        impostor.id = key(7).id().to_owned();
        assert_eq!(
            impostor.open(&app("shop"), "K", &sealed),
            Err(CryptoError::Open)
        );
        assert_ne!(key(7).id(), key(8).id());
        assert_eq!(key(7).id().len(), 16);
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let k = key(7);
        let sealed = k.seal(&app("shop"), "K", "value").expect("seals");
        let prefix = format!("v1:{}:", k.id());
        let raw = STANDARD.decode(&sealed[prefix.len()..]).expect("base64");
        for i in [0, NONCE_BYTES, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            let text = format!("{prefix}{}", STANDARD.encode(&bad));
            assert_eq!(
                k.open(&app("shop"), "K", &text),
                Err(CryptoError::Open),
                "byte {i}"
            );
        }
        let short = format!("{prefix}{}", STANDARD.encode(&raw[..NONCE_BYTES + 3]));
        let no_id = format!("v1:{}", STANDARD.encode(&raw));
        let bad_id = sealed.replacen(k.id(), "zz", 1);
        for bad in ["", "v1:", "v1:!!!", "v2:AAAA", &short, &no_id, &bad_id] {
            assert_eq!(
                k.open(&app("shop"), "K", bad),
                Err(CryptoError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_parse_from_hex_and_base64_of_32_bytes_only() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let from_hex = SecretsKey::parse(hex).expect("hex");
        let bytes = decode_hex(hex).expect("hex");
        let from_b64 = SecretsKey::parse(&format!("{}\n", STANDARD.encode(&bytes))).expect("b64");
        let from_url = SecretsKey::parse(&URL_SAFE_NO_PAD.encode(&bytes)).expect("b64url");
        assert_eq!(from_hex.id(), from_b64.id());
        assert_eq!(from_hex.id(), from_url.id());
        for bad in [
            "",
            "short",
            &hex[..62],
            &format!("{hex}00"),
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
            &hex.replace('0', "g"),
        ] {
            assert_eq!(
                SecretsKey::parse(bad).err(),
                Some(CryptoError::BadKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_key_and_no_value() {
        let k = key(42);
        let shown = format!("{k:?}");
        assert_eq!(shown, format!("SecretsKey {{ id: {:?}, .. }}", k.id()));
        let sealed = k
            .seal(&app("shop"), "K", "plain-text-value")
            .expect("seals");
        let plain = k.open(&app("shop"), "K", &sealed).expect("opens");
        assert_eq!(format!("{plain:?}"), "Plain(<redacted>)");
    }
}
