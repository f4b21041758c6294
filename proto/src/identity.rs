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

/// What a new member's certificate says: the org and role that policies match on, the
/// member's name and serial, and when the certificate is valid (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The member's org.
    pub org: String,
    /// Its role.
    pub role: Role,
    /// Its name, unique in the org (`peer0@BankA`).
    pub subject: String,
    /// The certificate's serial number.
    pub serial: u64,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds).
    pub not_after: u64,
}

impl Enrollment {
    /// `name@org` in `role`, serial 1, valid from the epoch for as long as anything runs —
    /// what tests, simulations and benchmarks want; operators' members come from
    /// `ordo crypto` with a real validity.
    pub fn new(org: &str, role: Role, name: &str) -> Self {
        Self {
            org: org.to_string(),
            role,
            subject: format!("{name}@{org}"),
            serial: 1,
            not_before: 0,
            not_after: u64::MAX / 2,
        }
    }

    /// The same with serial number `serial`.
    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = serial;
        self
    }

    /// The same, valid from `not_before` until `not_after` (Unix seconds).
    pub fn valid(mut self, not_before: u64, not_after: u64) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

impl Identity {
    /// Enrolls a member: `key`, with a certificate saying `enrollment` signed by its org's
    /// CA key `ca`. The one place a member certificate is made (`ordo crypto`, and every
    /// test, simulation and benchmark that needs members).
    pub fn enroll(ca: &SigningKey, key: SigningKey, enrollment: &Enrollment) -> Self {
        use prost::Message;
        let body = crate::pb::common::CertificateBody {
            org: enrollment.org.clone(),
            role: enrollment.role as i32,
            subject: enrollment.subject.clone(),
            public_key: key.verifying_key().to_bytes().to_vec().into(),
            not_before: enrollment.not_before,
            not_after: enrollment.not_after,
            issuer_public_key: Bytes::new(),
            serial: enrollment.serial,
        };
        let cert_bytes = cert::issue(ca, body).encode_to_vec().into();
        Self {
            key,
            cert_bytes,
            org: enrollment.org.clone(),
            role: enrollment.role,
            subject: enrollment.subject.clone(),
        }
    }

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
        Self::new(key, cert.into()).map_err(|e| match e {
            IdentityError::KeyMismatch => IdentityError::Format {
                path: cert_path.display().to_string(),
                reason: format!(
                    "this certificate is for another key than the one in {} (key and \
                     certificate of different members, or a key replaced without its \
                     certificate)",
                    key_path.display()
                ),
            },
            IdentityError::Cert(c) => IdentityError::Format {
                path: cert_path.display().to_string(),
                reason: c.to_string(),
            },
            other => other,
        })
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

#[cfg(test)]
mod enrollment_tests {
    use super::*;

    #[test]
    fn an_enrolled_member_is_what_its_certificate_says_and_its_org_verifies_it() {
        let ca = crypto::generate_signing_key();
        let enrollment = Enrollment::new("BankA", Role::Peer, "peer0")
            .serial(7)
            .valid(10, 20);
        let id = Identity::enroll(&ca, crypto::generate_signing_key(), &enrollment);
        assert_eq!(
            (id.org(), id.role(), id.subject()),
            ("BankA", Role::Peer, "peer0@BankA")
        );
        // The certificate names the key, as one loaded from disk must.
        let reloaded = Identity::new(id.signing_key().clone(), id.cert_bytes().clone())
            .expect("the certificate names the key");
        assert_eq!(reloaded.subject(), "peer0@BankA");
        let msp = cert::Msp::new([(
            "BankA".to_string(),
            vec![ca.verifying_key().to_bytes().to_vec()],
        )])
        .expect("msp");
        let verified = msp
            .verify(id.cert_bytes(), 15)
            .expect("issued by BankA's CA");
        assert_eq!((verified.not_before, verified.not_after), (10, 20));
        let (_, body) = cert::decode(id.cert_bytes()).expect("decodes");
        assert_eq!(body.serial, 7);
        assert!(msp.verify(id.cert_bytes(), 21).is_err(), "expired after 20");
        let other_ca = crypto::generate_signing_key();
        let forged = Identity::enroll(&other_ca, crypto::generate_signing_key(), &enrollment);
        assert!(
            msp.verify(forged.cert_bytes(), 15).is_err(),
            "another CA's certificate is not BankA's"
        );
    }

    #[test]
    fn a_key_and_certificate_of_different_members_are_refused_naming_both_files() {
        let ca = crypto::generate_signing_key();
        let a = Identity::enroll(
            &ca,
            crypto::generate_signing_key(),
            &Enrollment::new("BankA", Role::Orderer, "orderer"),
        );
        let b = Identity::enroll(
            &ca,
            crypto::generate_signing_key(),
            &Enrollment::new("BankA", Role::Peer, "peer"),
        );
        let dir = std::env::temp_dir().join(format!("ordo-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (key, cert) = (dir.join("orderer.key"), dir.join("peer.cert"));
        a.save(&key, &dir.join("orderer.cert")).expect("saved");
        b.save(&dir.join("peer.key"), &cert).expect("saved");
        let Err(err) = Identity::load(&key, &cert) else {
            panic!("a key and a certificate of different members were accepted");
        };
        let text = err.to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            text.contains("peer.cert")
                && text.contains("orderer.key")
                && text.contains("another key"),
            "{text}"
        );
    }
}
