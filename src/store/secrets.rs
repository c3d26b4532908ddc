//! Secrets at rest: the state key file, keyed password hashes and encryption of stored tokens.
//!
//! One 32-byte random key lives in a file beside the state DB (`<state>.key`, mode 0600) or at
//! `state.key_file`. Two subkeys are derived from it: one for HMAC-SHA256 of passwords (so a
//! changed source password can be detected without storing it), one for ChaCha20-Poly1305
//! encryption of the persisted refresh token. A check value derived from the key is kept in the
//! database, so a missing or wrong key file is noticed at start-up instead of making every
//! stored password hash look changed; losing the key never exposes a secret.

use chacha20poly1305::aead::{Aead, KeyInit as AeadKeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

use super::StoreError;
use crate::model::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The keys derived from the state key file.
pub struct Keys {
    mac_key: [u8; 32],
    enc_key: [u8; 32],
}

impl Drop for Keys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.mac_key);
        zeroize::Zeroize::zeroize(&mut self.enc_key);
    }
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(master).expect("HMAC accepts any key length");
    mac.update(label.as_bytes());
    let out = mac.finalize().into_bytes();
    let mut k = [0u8; 32];
    k.copy_from_slice(&out);
    k
}

pub use crate::model::PASSWORD_MAC_UNKNOWN;

impl Keys {
    /// Reads the key file; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Keys>, StoreError> {
        let refuse = |message: String| StoreError::Key {
            path: path.display().to_string(),
            message,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(refuse(format!("cannot read: {e}"))),
        };
        warn_if_exposed(path);
        let master = hex::decode(String::from_utf8_lossy(&bytes).trim())
            .map_err(|_| refuse("not a hex-encoded key".into()))?;
        if master.len() < 32 {
            return Err(refuse("key shorter than 32 bytes".into()));
        }
        Ok(Some(Self::from_master(&master)))
    }

    /// Creates the key file (mode 0600) with a fresh random key; fails if it exists.
    pub fn create(path: &Path) -> Result<Keys, StoreError> {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        write_private(path, hex::encode(&key).as_bytes()).map_err(|e| StoreError::Key {
            path: path.display().to_string(),
            message: format!("cannot create: {e}"),
        })?;
        Ok(Self::from_master(&key))
    }

    fn from_master(master: &[u8]) -> Keys {
        Keys {
            mac_key: derive(master, "concur-sync password mac v1"),
            enc_key: derive(master, "concur-sync token encryption v1"),
        }
    }

    /// A value the database keeps to tell whether a key file is the one its secrets were made
    /// with; it reveals nothing about the key.
    pub fn check_value(&self) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.mac_key)
            .expect("HMAC accepts any key length");
        mac.update(b"concur-sync key check v1");
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// Reads the key file, creating it (mode 0600) with a fresh random key when it is missing.
    pub fn load_or_create(path: &Path) -> Result<Keys, StoreError> {
        match Self::read(path)? {
            Some(keys) => Ok(keys),
            None => Self::create(path),
        }
    }

    /// Keys for tests and throwaway state (the demo).
    pub fn ephemeral() -> Keys {
        let mut master = [0u8; 32];
        rand::rng().fill_bytes(&mut master);
        Self::from_master(&master)
    }

    /// Keyed hash of a password, bound to the user so equal passwords differ across users.
    pub fn password_mac(&self, employee_id: &str, password: &Secret) -> [u8; 16] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.mac_key)
            .expect("HMAC accepts any key length");
        mac.update(employee_id.as_bytes());
        mac.update(&[0]);
        mac.update(password.expose().as_bytes());
        let out = mac.finalize().into_bytes();
        let mut r = [0u8; 16];
        r.copy_from_slice(&out[..16]);
        r
    }

    /// Encrypts a secret for storage: 12-byte random nonce followed by the ciphertext.
    pub fn encrypt(&self, plaintext: &Secret) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new((&self.enc_key).into());
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.expose().as_bytes())
            .expect("ChaCha20-Poly1305 encryption of a short buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what [`Keys::encrypt`] produced; `None` when the key changed or data is damaged.
    pub fn decrypt(&self, data: &[u8]) -> Option<Secret> {
        if data.len() < 12 {
            return None;
        }
        let cipher = ChaCha20Poly1305::new((&self.enc_key).into());
        let pt = cipher
            .decrypt(Nonce::from_slice(&data[..12]), &data[12..])
            .ok()?;
        String::from_utf8(pt).ok().map(Secret::new)
    }
}

/// Warns (once per process) when the key file may be read or changed by users other than its
/// owner.
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            key_file = %path.display(),
            mode = format!("{:04o}", meta.permissions().mode() & 0o7777),
            "the state key file is accessible by other users; restrict it with chmod 600"
        );
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k1 = Keys::load_or_create(&p).unwrap();
        let k2 = Keys::load_or_create(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let pw = Secret::new("Welcome1!");
        assert_eq!(k1.password_mac("1", &pw), k2.password_mac("1", &pw));
        assert_ne!(k1.password_mac("1", &pw), k1.password_mac("2", &pw));
        let ct = k1.encrypt(&pw);
        assert!(!ct.windows(9).any(|w| w == b"Welcome1!"));
        assert_eq!(k2.decrypt(&ct).unwrap().expose(), "Welcome1!");
        assert!(Keys::ephemeral().decrypt(&ct).is_none());
    }
}
