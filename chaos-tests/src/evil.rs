//! A lying orderer: the test kit's fake orderer relaying Deliver from an honest orderer
//! and tampering with every third block on the way — changed envelope bytes under the
//! original header on odd numbers (the data hash no longer matches), a consistent new
//! header on even ones (only the orderer signatures betray it). Peers are given it as
//! their first orderer endpoint; they must refuse every tampered block, fall back to an
//! honest orderer, and end with the same state as peers that never saw it.
//!
//! It speaks mutual TLS on both sides, with a valid certificate of BankA's TLS CA
//! ([`crate::net::LIAR_MEMBER`]): peers dial it over TLS like any orderer endpoint (a
//! plaintext server would be refused at the handshake, and the peer would never see a
//! tampered block — the test would prove nothing), and it reads from the honest orderer
//! as a TLS client.

use ordo_sdk::tls::{ClientTls, TlsFiles};
use ordo_sdk::transport::Transport;
use ordo_testkit::fake_orderer::{
    DeliverFault, FakeOrderer, FakeOrdererError, Faults, Source, Tamper, Which,
};

/// Every how many blocks one is tampered with.
const TAMPER_EVERY: u64 = 3;

/// Starts one relaying from `honest` (an orderer's address), presenting the TLS key pair
/// of `tls` to the peers that dial it and to the honest orderer it reads from, and
/// accepting clients whose certificates chain to `tls.ca`.
pub async fn start_lying_orderer(
    honest: String,
    tls: &TlsFiles,
) -> Result<FakeOrderer, crate::net::NetError> {
    let source = Source::Relay {
        upstream: honest,
        transport: Transport::Tls(ClientTls::from_files(tls)?),
    };
    let lie = DeliverFault::Tamper(Which::Every(TAMPER_EVERY), Tamper::Alternating);
    FakeOrderer::start(source, Faults::deliver(lie), Some(tls))
        .await
        .map_err(|e| match e {
            FakeOrdererError::Listen(e) => e.into(),
            FakeOrdererError::Tls(e) => e.into(),
        })
}
