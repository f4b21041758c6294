//! The peer's Admin service: join (from a genesis block or a snapshot), list, remove,
//! info, backup and snapshot, with the same signed
//! ADMIN_COMMAND envelopes as the orderer's. Mutations and backups need an admin of the
//! peer's own org
//! (issued by the CA that issued the peer's certificate); info is also open to the
//! channel's readers.
//!
//! Replays ([`ordo_proto::replay`]), exactly as on the orderer: every request's timestamp
//! must be within the window ([`DEFAULT_FRESHNESS_WINDOW_MS`] unless built with
//! [`PeerAdmin::with_replay_limits`]) of the peer's clock (FORBIDDEN), and a
//! join, remove or backup executes at most once — a copy is refused with CONFLICT
//! ([`ReplayError::status`](ordo_proto::replay::ReplayError::status) says why that code).
//! The tx id is remembered only after the signature and the admin role are verified.
//!
//! Refusals are named here by their `ordo.common.Status`; the client gets the call's gRPC
//! status, coded by [`ordo_proto::status::grpc_code`].
//!
//! This module also holds the reader check every signed read of the peer goes through
//! ([`authorize_reader`], [`reader_request`]): Query, CommitStatus, ChaincodeEvents,
//! BlockEvents and channel info.

use std::sync::Arc;

use prost::Message;

use ordo_proto::authz::{authorize_by_policy, NodeAdmins};
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminCommand, AdminResponse, ChannelInfo, ChannelList};
use ordo_proto::pb::common::{AckMode, Block, Envelope, Header, HeaderType, Status as Code};
use ordo_proto::replay::{
    check_freshness, ExecutedRequests, ReplayLimits, DEFAULT_FRESHNESS_WINDOW_MS,
};

use super::channels::{PeerChannel, PeerChannels};

type Refusal = (Code, String);

/// The Admin handler.
pub struct PeerAdmin {
    channels: Arc<PeerChannels>,
    admins: NodeAdmins,
    /// Joins and removes executed recently; also holds the clock-skew window.
    executed: ExecutedRequests,
}

impl PeerAdmin {
    /// Admins are checked against the CA that issued `identity`'s certificate; the replay
    /// limits are the defaults ([`ReplayLimits::default`]) and the peer's start is now.
    pub fn new(
        channels: Arc<PeerChannels>,
        identity: &Identity,
    ) -> Result<Self, ordo_proto::cert::CertError> {
        Self::with_replay_limits(
            channels,
            identity,
            ReplayLimits::default(),
            ordo_proto::now_ms(),
        )
    }

    /// [`PeerAdmin::new`] with explicit replay limits, and the peer's start time (ms since
    /// the Unix epoch; requests stamped earlier are refused) given rather than read.
    pub fn with_replay_limits(
        channels: Arc<PeerChannels>,
        identity: &Identity,
        limits: ReplayLimits,
        started_at_ms: u64,
    ) -> Result<Self, ordo_proto::cert::CertError> {
        Ok(Self {
            channels,
            admins: NodeAdmins::for_identity(identity)?,
            executed: ExecutedRequests::new(limits, started_at_ms),
        })
    }

    /// Admits a verified join or remove for execution (see the module docs): atomic, so
    /// of two concurrent copies exactly one executes.
    fn admit(&self, header: &Header, now_ms: u64) -> Result<(), Refusal> {
        self.executed
            .admit(&header.tx_id, header.timestamp_ms, now_ms)
            .map_err(|e| (e.status(), e.to_string()))
    }

    /// Executes one request: its answer, or the refusal as the gRPC status the client
    /// gets ([`ordo_proto::status::grpc_code`]).
    pub async fn execute(&self, request: Envelope) -> Result<AdminResponse, tonic::Status> {
        self.run(&request)
            .await
            .map_err(|(code, info)| ordo_proto::status::refusal(code, info))
    }

    async fn run(&self, request: &Envelope) -> Result<AdminResponse, Refusal> {
        let unpacked = envelope::unpack(request).map_err(|e| (Code::BadRequest, e.to_string()))?;
        if unpacked.header_type != HeaderType::AdminCommand {
            return Err((Code::BadRequest, "header type is not ADMIN_COMMAND".into()));
        }
        let now_ms = ordo_proto::now_ms();
        // Early and cheap, before any signature is checked; joins and removes are checked
        // again, atomically with remembering them, in `admit`.
        self.executed
            .check_freshness(unpacked.header.timestamp_ms, now_ms)
            .map_err(|e| (Code::Forbidden, e.to_string()))?;
        let cmd = AdminCommand::decode(unpacked.data.as_ref())
            .map_err(|e| (Code::BadRequest, format!("admin command: {e}")))?;
        let creator = &unpacked.header.creator;
        let now_secs = now_ms / 1000;
        let ok = |channel: Option<ChannelInfo>, list: Option<ChannelList>| AdminResponse {
            channel,
            list,
            ..Default::default()
        };
        match cmd
            .command
            .ok_or((Code::BadRequest, "empty admin command".to_string()))?
        {
            admin_command::Command::Join(j) => {
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))?;
                self.admit(&unpacked.header, now_ms)?;
                let genesis = Block::decode(j.genesis_block.as_ref())
                    .map_err(|e| (Code::BadRequest, format!("genesis block: {e}")))?;
                let ch = self
                    .channels
                    .join(genesis)
                    .await
                    .map_err(|e| (e.status(), e.to_string()))?;
                Ok(ok(Some(info(&ch)), None))
            }
            admin_command::Command::List(_) => {
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))?;
                let channels = self.channels.list().iter().map(|c| info(c)).collect();
                Ok(ok(None, Some(ChannelList { channels })))
            }
            admin_command::Command::Remove(r) => {
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))?;
                self.admit(&unpacked.header, now_ms)?;
                self.channels
                    .remove(&r.channel_id)
                    .await
                    .map_err(|e| (e.status(), e.to_string()))?;
                Ok(ok(None, None))
            }
            admin_command::Command::Backup(b) => {
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))?;
                ordo_ledger::backup::validate_name(&b.name)
                    .map_err(|e| (e.status(), e.to_string()))?;
                self.admit(&unpacked.header, now_ms)?;
                let only = (!b.channel_id.is_empty()).then_some(b.channel_id.as_str());
                let (manifest, dir) = self
                    .channels
                    .backup(&b.name, only, now_ms)
                    .await
                    .map_err(|e| (e.status(), e.to_string()))?;
                Ok(AdminResponse {
                    backup: Some(manifest.to_result(&dir)),
                    ..Default::default()
                })
            }
            admin_command::Command::Snapshot(t) => {
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))?;
                self.admit(&unpacked.header, now_ms)?;
                let (manifest, dir) = self
                    .channels
                    .snapshot(&t.channel_id, now_ms)
                    .await
                    .map_err(|e| (e.status(), e.to_string()))?;
                Ok(AdminResponse {
                    snapshot: Some(snapshot_result(&manifest, &dir)),
                    ..Default::default()
                })
            }
            admin_command::Command::JoinBySnapshot(j) => {
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))?;
                self.admit(&unpacked.header, now_ms)?;
                let ch = self
                    .channels
                    .join_snapshot(
                        &j.path,
                        (!j.channel_id.is_empty()).then_some(j.channel_id.as_str()),
                    )
                    .await
                    .map_err(|e| (e.status(), e.to_string()))?;
                Ok(ok(Some(info(&ch)), None))
            }
            admin_command::Command::Info(i) => {
                let ch = self.channels.get(&i.channel_id).ok_or_else(|| {
                    (
                        Code::NotFound,
                        format!("channel {:?} not found", i.channel_id),
                    )
                })?;
                if self
                    .admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))
                    .is_err()
                {
                    authorize_reader(
                        &ch,
                        request,
                        &unpacked.header,
                        now_ms,
                        self.executed.limits().window_ms,
                    )?;
                }
                Ok(ok(Some(info(&ch)), None))
            }
        }
    }
}

/// Checks a signed read request: its header's timestamp is within `window_ms` of
/// `now_ms` (FORBIDDEN), and it is signed by its header's creator, a member valid at
/// `now_ms` whom the channel's Readers policy admits (FORBIDDEN).
///
/// The freshness window is the only replay protection reads get: a captured read is
/// useless once the window has passed, and replaying it within the window shows nothing
/// the original answer did not (see [`ordo_proto::replay`]). Every signed read of the
/// peer comes through here (directly, or through [`reader_request`]), so none can skip it.
pub fn authorize_reader(
    ch: &PeerChannel,
    request: &Envelope,
    header: &Header,
    now_ms: u64,
    window_ms: u64,
) -> Result<(), Refusal> {
    check_freshness(header.timestamp_ms, now_ms, window_ms)
        .map_err(|e| (Code::Forbidden, e.to_string()))?;
    let st = ch.status();
    let cfg = st.config;
    let msp = st.msp.ok_or_else(|| {
        (
            Code::InternalServerError,
            "the channel configuration has no usable MSP".to_string(),
        )
    })?;
    authorize_by_policy(
        &msp,
        cfg.readers.as_ref(),
        "Readers",
        request,
        &header.creator,
        now_ms / 1000,
    )
    .map(|_| ())
    .map_err(|e| (Code::Forbidden, e.0))
}

/// A signed MESSAGE request from a reader of its channel, as the Gateway's CommitStatus
/// and the Events service take them: the channel and the request's data, or the gRPC
/// status that refuses it. Checks [`authorize_reader`] with the default freshness window
/// at the peer's clock; every refusal of it is PERMISSION_DENIED.
pub fn reader_request(
    channels: &PeerChannels,
    request: &Envelope,
) -> Result<(Arc<PeerChannel>, bytes::Bytes), tonic::Status> {
    let unpacked = ordo_proto::envelope::unpack(request)
        .map_err(|e| tonic::Status::invalid_argument(format!("request: {e}")))?;
    if unpacked.header_type != ordo_proto::pb::common::HeaderType::Message {
        return Err(tonic::Status::invalid_argument(format!(
            "header type {} is not a MESSAGE",
            unpacked.header_type.as_str_name()
        )));
    }
    let channel = channels.get(&unpacked.header.channel_id).ok_or_else(|| {
        tonic::Status::not_found(format!(
            "channel {:?} is not served by this peer",
            unpacked.header.channel_id
        ))
    })?;
    authorize_reader(
        &channel,
        request,
        &unpacked.header,
        ordo_proto::now_ms(),
        DEFAULT_FRESHNESS_WINDOW_MS,
    )
    .map_err(|(_, why)| tonic::Status::permission_denied(why))?;
    Ok((channel, unpacked.data))
}

/// The Admin answer describing a snapshot written to `dir`.
fn snapshot_result(
    m: &ordo_ledger::snapshot::SnapshotManifest,
    dir: &std::path::Path,
) -> ordo_proto::pb::admin::SnapshotResult {
    let count = |name| m.file(name).map(|f| f.records).unwrap_or(0);
    ordo_proto::pb::admin::SnapshotResult {
        channel_id: m.channel_id.clone(),
        height: m.height,
        last_block_hash: hex::decode(&m.last_block_hash).unwrap_or_default().into(),
        commit_hash: hex::decode(&m.commit_hash).unwrap_or_default().into(),
        path: dir.display().to_string(),
        state_records: count(ordo_ledger::snapshot::STATE_FILE),
        txid_records: count(ordo_ledger::snapshot::TXIDS_FILE),
        bytes: m.files.iter().map(|f| f.bytes).sum(),
    }
}

/// The info `ordo channel info` shows for a peer's channel.
pub fn info(ch: &PeerChannel) -> ChannelInfo {
    let st = ch.status();
    let orderer = st.config.orderer.clone().unwrap_or_default();
    ChannelInfo {
        channel_id: ch.id().to_string(),
        height: st.height,
        last_block_hash: st
            .last_block_hash
            .map(|h| h.to_vec().into())
            .unwrap_or_default(),
        consensus_type: orderer.consensus_type,
        role: if st.failed.is_some() {
            "failed".into()
        } else {
            "committing".into()
        },
        leader: String::new(),
        term: 0,
        ack_mode: AckMode::try_from(orderer.ack_mode).unwrap_or(AckMode::Enqueued) as i32,
        config_sequence: st.config.sequence,
        commit_hash: st.commit_hash.to_vec().into(),
        node_role: "peer".into(),
        first_block: ch.ledger().first_block(),
        tx_validity_window_s: st.config.tx_validity_window_s,
        expiry_floor_ms: ch.ledger().expiry_floor_ms(),
    }
}
