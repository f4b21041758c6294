//! An organization as tests need it: a name, a CA key, and members enrolled under it.

use ed25519_dalek::SigningKey;

use ordo_proto::identity::{Enrollment, Identity};
use ordo_proto::pb::common::{Consenter, Organization, Role};

use crate::keys;

/// An organization with its CA key. Members get fresh keys unless a test passes its own
/// (seeded runs do).
pub struct TestOrg {
    name: String,
    ca: SigningKey,
}

impl TestOrg {
    /// An org named `name` with a fresh CA key.
    pub fn new(name: &str) -> Self {
        Self::with_ca(name, keys::random())
    }

    /// An org named `name` whose CA key is `ca` (a seeded or fixed key, for reproducible
    /// runs).
    pub fn with_ca(name: &str, ca: SigningKey) -> Self {
        Self {
            name: name.to_string(),
            ca,
        }
    }

    /// The org's name (its MSP id in configs and certificates).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The org's CA key, for tests that enroll members in unusual ways.
    pub fn ca(&self) -> &SigningKey {
        &self.ca
    }

    /// A member in `role` named `name`, with a fresh key.
    pub fn member(&self, role: Role, name: &str) -> Identity {
        self.member_with_key(role, name, keys::random())
    }

    /// A member in `role` named `name` whose key is `key`.
    pub fn member_with_key(&self, role: Role, name: &str, key: SigningKey) -> Identity {
        self.enroll(key, &Enrollment::new(&self.name, role, name))
    }

    /// A member enrolled as `enrollment` says (serial numbers, validity windows), whose key
    /// is `key`.
    pub fn enroll(&self, key: SigningKey, enrollment: &Enrollment) -> Identity {
        Identity::enroll(&self.ca, key, enrollment)
    }

    /// The org as a channel config lists it: its name and its CA's public key.
    pub fn organization(&self) -> Organization {
        Organization {
            name: self.name.clone(),
            root_public_keys: vec![self.ca.verifying_key().to_bytes().to_vec().into()],
            ..Default::default()
        }
    }

    /// An orderer of this org named `name` with key `key`, and its consenter entry at
    /// `endpoint`.
    pub fn consenter(&self, name: &str, endpoint: &str, key: SigningKey) -> (Identity, Consenter) {
        let identity = self.member_with_key(Role::Orderer, name, key);
        let entry = consenter_entry(&identity, name, endpoint);
        (identity, entry)
    }
}

/// The consenter entry naming `identity` as `id` at `endpoint`.
pub fn consenter_entry(identity: &Identity, id: &str, endpoint: &str) -> Consenter {
    Consenter {
        id: id.to_string(),
        endpoint: endpoint.to_string(),
        certificate: identity.cert_bytes().clone(),
        ..Default::default()
    }
}
