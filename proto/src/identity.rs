//! A signing identity: a member's secret key with its certificate, and how it is stored
//! on disk (two small hex text files, so operators can inspect and copy them).

use std::path::Path;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use thiserror::Error;

use crate::cert::{self, CertError};
use crate::crypto::{self, SECRET_KEY_LEN, SIGNATURE_LEN};
use crate::pb::common::Role;

/// Why an identity could not be loaded or assembled.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Reading or writing a key or certificate file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate is unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The certificate is for another key.
    #[error("certificate does not belong to this key")]
    KeyMismatch,
}

/// A member's secret key together with its certificate.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    cert_bytes: Bytes,
    org: String,
    role: Role,
    subject: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("org", &self.org)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Pairs a key with its encoded certificate; the certificate must name this key.
    pub fn new(key: SigningKey, cert_bytes: Bytes) -> Result<Self, IdentityError> {
        let (_, body) = cert::decode(&cert_bytes)?;
        if body.public_key.as_ref() != key.verifying_key().as_bytes().as_slice() {
            return Err(IdentityError::KeyMismatch);
        }
        let role = Role::try_from(body.role).unwrap_or(Role::Unspecified);
        Ok(Self {
            key,
            cert_bytes,
            org: body.org,
            role,
            subject: body.subject,
        })
    }

    /// Loads `<stem>.key` and `<stem>.cert` as written by [`Identity::save`].
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Self, IdentityError> {
        let key = load_signing_key(key_path)?;
        let cert = read_hex(cert_path)?;
        Self::new(key, cert.into())
    }

    /// Writes the key (mode 0600 on Unix) and the certificate as hex text files.
    pub fn save(&self, key_path: &Path, cert_path: &Path) -> Result<(), IdentityError> {
        save_signing_key(&self.key, key_path)?;
        write_text(cert_path, &hex::encode(&self.cert_bytes), false)
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        crypto::sign(&self.key, msg)
    }

    /// The encoded certificate, exactly as it goes into headers and signatures.
    pub fn cert_bytes(&self) -> &Bytes {
        &self.cert_bytes
    }

    /// The org named by the certificate.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The role named by the certificate.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The holder's name from the certificate.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The secret key (for issuing certificates when this is a CA identity).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// Reads a hex-encoded 32-byte Ed25519 seed.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, IdentityError> {
    let raw = read_hex(path)?;
    let seed: [u8; SECRET_KEY_LEN] =
        raw.as_slice()
            .try_into()
            .map_err(|_| IdentityError::Format {
                path: path.display().to_string(),
                reason: format!(
                    "expected {SECRET_KEY_LEN} bytes of key, found {}",
                    raw.len()
                ),
            })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a key seed as hex, readable only by its owner.
pub fn save_signing_key(key: &SigningKey, path: &Path) -> Result<(), IdentityError> {
    write_text(path, &hex::encode(key.to_bytes()), true)
}

/// Reads a file holding hex text (surrounding whitespace ignored).
pub fn read_hex(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    })?;
    hex::decode(text.trim()).map_err(|e| IdentityError::Format {
        path: path.display().to_string(),
        reason: format!("not hex: {e}"),
    })
}

fn write_text(path: &Path, text: &str, secret: bool) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    use std::io::Write;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)
}
