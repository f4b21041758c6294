//! Snapshots on a peer: signing the manifest of one it takes, and deciding whether to
//! trust one it is asked to join from.
//!
//! The files of a snapshot and their format are the ledger's ([`ordo_ledger::snapshot`]);
//! what a peer adds is trust. A snapshot says "after block `h - 1`, whose hash is `X`, the
//! state is this and the commit hash is `C`". A joining peer accepts it only when:
//!
//! | check | refused with |
//! |---|---|
//! | the manifest is well formed and for the channel it is joining | [`TrustError::Manifest`] |
//! | the config block decodes, is for that channel, is the manifest's config block number | [`TrustError::Config`] |
//! | the manifest is signed by a peer of the channel, whose certificate is valid now | [`TrustError::Signer`] |
//! | the orderers' block `h - 1` hashes to `X`, names the config block in force, and carries orderer signatures valid under that configuration's BlockValidation policy | [`TrustError::Chain`] |
//! | the orderers' block at the config block's number hashes like the snapshot's config block | [`TrustError::Chain`] |
//!
//! The orderers' chain is the authority: a block `h - 1` signed by the orderers and
//! hashing to the manifest's `last_block_hash` proves the height and the hash; the config
//! block matching theirs proves the configuration the next blocks are validated with.
//! The state itself cannot be checked against the orderers (they do not hold it); it is
//! bound to the signing peer by the manifest's file hashes, and the commit hash lets any
//! peer that replayed the chain confirm it (`ordo channel info` on both).
//!
//! These checks are pure functions of the snapshot, the blocks fetched and the time, so
//! they are tested without a network; fetching the two blocks is the caller's
//! ([`crate::deliver::fetch_block`]).

use ordo_ledger::snapshot::SnapshotManifest;
use ordo_proto::block;
use ordo_proto::cert::Msp;
use ordo_proto::config;
use ordo_proto::identity::Identity;
use ordo_proto::pb::common::{Block, ChannelConfig, Role};
use thiserror::Error;

/// Why a peer does not trust a snapshot. Nothing was imported.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    /// The manifest does not describe a snapshot of the channel asked for.
    #[error("snapshot manifest: {0}")]
    Manifest(String),
    /// The snapshot's config block is unusable.
    #[error("snapshot config block: {0}")]
    Config(String),
    /// The manifest's signature or signer is not acceptable.
    #[error("snapshot signer: {0}")]
    Signer(String),
    /// The orderers' chain disagrees with the snapshot.
    #[error("the orderers' chain disagrees with the snapshot: {0}")]
    Chain(String),
}

/// Signs `manifest` as `identity` (the taking peer): sets its certificate and signature.
pub fn sign(manifest: &mut SnapshotManifest, identity: &Identity) {
    manifest.signer_cert = hex::encode(identity.cert_bytes());
    manifest.signature = String::new();
    let signature = identity.sign(&manifest.signing_bytes());
    manifest.signature = hex::encode(signature);
}

/// The configuration in the snapshot's config block, checked against the manifest and,
/// when given, the channel the caller expects.
pub fn snapshot_config(
    manifest: &SnapshotManifest,
    config_block: &Block,
) -> Result<ChannelConfig, TrustError> {
    let cfg =
        config::config_from_block(config_block).map_err(|e| TrustError::Config(e.to_string()))?;
    if cfg.channel_id != manifest.channel_id {
        return Err(TrustError::Manifest(format!(
            "the manifest is for channel {:?}, its config block for {:?}",
            manifest.channel_id, cfg.channel_id
        )));
    }
    if block::number(config_block) != manifest.config_block_number {
        return Err(TrustError::Config(format!(
            "block {} where the manifest names config block {}",
            block::number(config_block),
            manifest.config_block_number
        )));
    }
    Ok(cfg)
}

/// Checks the manifest's signature: by a peer of the channel (under `cfg`'s MSP) whose
/// certificate is valid at `now_secs`.
pub fn check_signer(
    manifest: &SnapshotManifest,
    cfg: &ChannelConfig,
    now_secs: u64,
) -> Result<(), TrustError> {
    let bad = |m: String| TrustError::Signer(m);
    let cert = manifest
        .signer_cert_bytes()
        .map_err(|e| bad(e.to_string()))?;
    let signature = manifest.signature_bytes().map_err(|e| bad(e.to_string()))?;
    if signature.is_empty() {
        return Err(bad("the manifest is not signed".into()));
    }
    let msp = Msp::from_config(cfg).map_err(|e| bad(format!("channel MSP: {e}")))?;
    let signer = msp
        .verify(&cert, now_secs)
        .map_err(|e| bad(format!("certificate: {e}")))?;
    if signer.role != Role::Peer {
        return Err(bad(format!(
            "{} of {} is not a peer ({:?})",
            signer.subject, signer.org, signer.role
        )));
    }
    ordo_proto::crypto::verify(&signer.public_key, &manifest.signing_bytes(), &signature).map_err(
        |_| {
            bad(format!(
                "the signature of {} does not verify",
                signer.subject
            ))
        },
    )
}

/// Checks the snapshot against two blocks the orderers served: `ordered_config` (the
/// block at the manifest's config block number) and `ordered_last` (block
/// `height - 1`). See the module docs for what each check proves.
pub fn check_against_chain(
    manifest: &SnapshotManifest,
    config_block: &Block,
    cfg: &ChannelConfig,
    ordered_config: &Block,
    ordered_last: &Block,
    now_secs: u64,
) -> Result<(), TrustError> {
    let bad = |m: String| Err(TrustError::Chain(m));
    let last_number = manifest.height - 1;
    if block::number(ordered_last) != last_number {
        return bad(format!(
            "asked for block {last_number}, got block {}",
            block::number(ordered_last)
        ));
    }
    let want_hash = manifest
        .last_block_hash()
        .map_err(|e| TrustError::Manifest(e.to_string()))?;
    let got_hash = block::hash(ordered_last);
    if got_hash != want_hash {
        return bad(format!(
            "block {last_number} hashes to {} on the orderers, the snapshot says {}",
            hex::encode(got_hash),
            manifest.last_block_hash
        ));
    }
    block::check_structure(ordered_last, None)
        .map_err(|e| TrustError::Chain(format!("block {last_number}: {e}")))?;
    let named = ordered_last
        .metadata
        .as_ref()
        .map(|m| m.last_config)
        .unwrap_or(0);
    // A config block names itself; the snapshot's config block is the one in force
    // after block h-1, which that block's metadata names unless a peer found a later
    // config block invalid (then the configuration before it stays in force).
    if named < manifest.config_block_number {
        return bad(format!(
            "block {last_number} names config block {named}, older than the snapshot's {}",
            manifest.config_block_number
        ));
    }
    let policy = cfg
        .block_validation
        .as_ref()
        .ok_or_else(|| TrustError::Config("no BlockValidation policy".into()))?;
    let msp = Msp::from_config(cfg).map_err(|e| TrustError::Config(e.to_string()))?;
    block::verify_signatures(ordered_last, &msp, policy, now_secs)
        .map_err(|e| TrustError::Chain(format!("block {last_number}: {e}")))?;
    if block::number(ordered_config) != manifest.config_block_number {
        return bad(format!(
            "asked for config block {}, got block {}",
            manifest.config_block_number,
            block::number(ordered_config)
        ));
    }
    if block::hash(ordered_config) != block::hash(config_block) {
        return bad(format!(
            "config block {} differs from the orderers' block {}",
            manifest.config_block_number, manifest.config_block_number
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
