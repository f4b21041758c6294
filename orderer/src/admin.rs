//! The Admin service: channel participation (join, list, remove), channel info and
//! backups of the node's ledgers ([`Registry::backup`]).
//!
//! Every request is a signed ADMIN_COMMAND envelope. Join, list, remove and backup need an admin
//! of this node's own org — a certificate with role ADMIN issued by the same CA as the
//! node's own certificate. Info is also open to any member the channel's Readers policy
//! admits.
//!
//! Refusals are named here by their `ordo.common.Status` (the metrics' `status` label);
//! the client gets the call's gRPC status, coded by [`ordo_proto::status::grpc_code`]
//! (FORBIDDEN is PERMISSION_DENIED, CONFLICT is ALREADY_EXISTS, ...).
//!
//! Replays ([`ordo_proto::replay`]): every request's timestamp must be within
//! `admin_clock_skew_s` of the node's clock (FORBIDDEN otherwise), and a join, remove or
//! backup executes at most once: its tx id is remembered, once its signature and its signer's
//! admin role are verified, for as long as a copy would pass the clock check, and a copy
//! is refused with CONFLICT — the peer's Admin answers the same
//! ([`ordo_proto::replay::ReplayError::status`]). List and info are reads and are not
//! remembered: replaying them inside the window is harmless.

use std::sync::Arc;

use prost::Message;

use ordo_proto::authz::NodeAdmins;
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminCommand, AdminResponse, ChannelInfo, ChannelList};
use ordo_proto::pb::common::{Block, Envelope, Header, HeaderType, Status as Code};
use ordo_proto::replay::{ExecutedRequests, ReplayLimits, DEFAULT_MAX_REMEMBERED};

use crate::auth::{authorize_reader, Refusal};
use crate::metrics::Metrics;
use crate::registry::{ChannelHandle, Registry};

/// Shared state of the Admin handler.
pub struct AdminHandler {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    admins: NodeAdmins,
    /// Joins and removes executed recently; also holds the clock-skew window.
    executed: ExecutedRequests,
}

impl AdminHandler {
    /// Admins are checked against the CA that issued `node_identity`'s certificate;
    /// request timestamps must be within `clock_skew_s` of the node's clock; at most
    /// [`DEFAULT_MAX_REMEMBERED`] joins and removes within that window. The node's start
    /// is now (requests stamped earlier are refused: a previous run may have executed
    /// them).
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        node_identity: &Identity,
        clock_skew_s: u64,
    ) -> Result<Self, ordo_proto::cert::CertError> {
        let limits = ReplayLimits {
            window_ms: clock_skew_s.saturating_mul(1000),
            max_remembered: DEFAULT_MAX_REMEMBERED,
        };
        Self::with_replay_limits(
            registry,
            metrics,
            node_identity,
            limits,
            ordo_proto::now_ms(),
        )
    }

    /// [`AdminHandler::new`] with every replay limit explicit, and the node's start time
    /// (ms since the Unix epoch) given rather than read from the clock.
    pub fn with_replay_limits(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        node_identity: &Identity,
        limits: ReplayLimits,
        started_at_ms: u64,
    ) -> Result<Self, ordo_proto::cert::CertError> {
        Ok(Self {
            registry,
            metrics,
            admins: NodeAdmins::for_identity(node_identity)?,
            executed: ExecutedRequests::new(limits, started_at_ms),
        })
    }

    /// Admits a verified join or remove for execution: refused if a copy was executed
    /// already (CONFLICT), or if too many were recently (SERVICE_UNAVAILABLE). Check and
    /// record are one atomic step, so of two concurrent copies exactly one executes.
    fn admit(&self, header: &Header, now_ms: u64) -> Result<(), Refusal> {
        self.executed
            .admit(&header.tx_id, header.timestamp_ms, now_ms)
            .map_err(|e| (e.status(), e.to_string()))
    }

    /// Executes one request: its answer, or the refusal as the gRPC status the client
    /// gets ([`ordo_proto::status::grpc_code`]).
    pub async fn execute(&self, request: Envelope) -> Result<AdminResponse, tonic::Status> {
        let (name, result) = match self.run(&request).await {
            Ok((name, resp)) => (name, Ok(resp)),
            Err((name, refusal)) => (name, Err(refusal)),
        };
        let status = match &result {
            Ok(_) => Code::Success.as_str_name(),
            Err((code, _)) => code.as_str_name(),
        };
        self.metrics
            .admin_requests
            .get_or_create(&vec![
                ("command".into(), name.into()),
                ("status".into(), status.into()),
            ])
            .inc();
        result.map_err(|(code, info)| ordo_proto::status::refusal(code, info))
    }

    async fn run(
        &self,
        request: &Envelope,
    ) -> Result<(&'static str, AdminResponse), (&'static str, Refusal)> {
        let unpacked = envelope::unpack(request)
            .map_err(|e| ("unknown", (Code::BadRequest, e.to_string())))?;
        if unpacked.header_type != HeaderType::AdminCommand {
            return Err((
                "unknown",
                (Code::BadRequest, "header type is not ADMIN_COMMAND".into()),
            ));
        }
        let now_ms = ordo_proto::now_ms();
        // Early and cheap, before any signature is checked; joins and removes are checked
        // again, atomically with remembering them, in `admit`.
        self.executed
            .check_freshness(unpacked.header.timestamp_ms, now_ms)
            .map_err(|e| ("unknown", (Code::Forbidden, e.to_string())))?;
        let cmd = AdminCommand::decode(unpacked.data.as_ref())
            .map_err(|e| ("unknown", (Code::BadRequest, format!("admin command: {e}"))))?;
        let Some(command) = cmd.command else {
            return Err(("unknown", (Code::BadRequest, "empty admin command".into())));
        };
        let now_secs = now_ms / 1000;
        let creator = &unpacked.header.creator;
        match command {
            admin_command::Command::Join(j) => {
                let name = "join";
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))
                    .map_err(|r| (name, r))?;
                self.admit(&unpacked.header, now_ms)
                    .map_err(|r| (name, r))?;
                let genesis = Block::decode(j.genesis_block.as_ref())
                    .map_err(|e| (name, (Code::BadRequest, format!("genesis block: {e}"))))?;
                let handle = self
                    .registry
                    .join(genesis)
                    .await
                    .map_err(|e| (name, (e.status(), e.to_string())))?;
                Ok((name, ok_with(info(&handle))))
            }
            admin_command::Command::List(_) => {
                let name = "list";
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))
                    .map_err(|r| (name, r))?;
                let channels = self.registry.list().iter().map(|h| info(h)).collect();
                Ok((
                    name,
                    AdminResponse {
                        list: Some(ChannelList { channels }),
                        ..Default::default()
                    },
                ))
            }
            admin_command::Command::Remove(r) => {
                let name = "remove";
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))
                    .map_err(|r| (name, r))?;
                self.admit(&unpacked.header, now_ms)
                    .map_err(|r| (name, r))?;
                self.registry
                    .remove(&r.channel_id)
                    .await
                    .map_err(|e| (name, (e.status(), e.to_string())))?;
                Ok((name, AdminResponse::default()))
            }
            admin_command::Command::Backup(b) => {
                let name = "backup";
                self.admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))
                    .map_err(|r| (name, r))?;
                ordo_ledger::backup::validate_name(&b.name)
                    .map_err(|e| (name, (e.status(), e.to_string())))?;
                self.admit(&unpacked.header, now_ms)
                    .map_err(|r| (name, r))?;
                let only = (!b.channel_id.is_empty()).then_some(b.channel_id.as_str());
                let (manifest, dir) = self
                    .registry
                    .backup(&b.name, only, now_ms)
                    .await
                    .map_err(|e| (name, (e.status(), e.to_string())))?;
                Ok((
                    name,
                    AdminResponse {
                        backup: Some(manifest.to_result(&dir)),
                        ..Default::default()
                    },
                ))
            }
            admin_command::Command::Snapshot(_) | admin_command::Command::JoinBySnapshot(_) => {
                Err((
                    "snapshot",
                    (
                        Code::NotImplemented,
                        "snapshots are a peer's: an orderer joins a channel from a config block \
                     (`ordo channel join --genesis`)"
                            .into(),
                    ),
                ))
            }
            admin_command::Command::Info(i) => {
                let name = "info";
                let handle = self.registry.get(&i.channel_id).ok_or_else(|| {
                    (
                        name,
                        (
                            Code::NotFound,
                            format!("channel {:?} not found", i.channel_id),
                        ),
                    )
                })?;
                if self
                    .admins
                    .authorize(request, creator, now_secs)
                    .map_err(|e| (Code::Forbidden, e.0))
                    .is_err()
                {
                    authorize_reader(
                        &handle.support.state(),
                        request,
                        &unpacked.header,
                        now_ms,
                        self.executed.limits().window_ms,
                    )
                    .map_err(|r| (name, r))?;
                }
                Ok((name, ok_with(info(&handle))))
            }
        }
    }
}

fn ok_with(channel: ChannelInfo) -> AdminResponse {
    AdminResponse {
        channel: Some(channel),
        ..Default::default()
    }
}

/// The info `ordo channel info` shows for a channel.
pub fn info(handle: &ChannelHandle) -> ChannelInfo {
    let state = handle.support.state();
    let status = handle.chain.status();
    let ledger = handle.support.ledger();
    ChannelInfo {
        channel_id: handle.id().to_string(),
        height: ledger.height(),
        last_block_hash: ledger
            .last_hash()
            .map(|h| h.to_vec().into())
            .unwrap_or_default(),
        consensus_type: state.consensus_type().to_string(),
        role: status.role,
        leader: status.leader.unwrap_or_default(),
        term: status.term,
        ack_mode: state.ack_mode as i32,
        config_sequence: state.sequence(),
        commit_hash: Default::default(),
        node_role: "orderer".into(),
        first_block: ledger.first_block(),
        tx_validity_window_s: state.config.tx_validity_window_s,
        // Orderers do not validate transactions: peers keep the floor.
        expiry_floor_ms: 0,
    }
}
