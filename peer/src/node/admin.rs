//! The peer's Admin service: join, list, remove and info, with the same signed
//! ADMIN_COMMAND envelopes as the orderer's. Mutations need an admin of the peer's own org
//! (issued by the CA that issued the peer's certificate); info is also open to the
//! channel's readers.

use std::sync::Arc;

use prost::Message;

use ordo_proto::authz::{authorize_by_policy, NodeAdmins};
use ordo_proto::envelope;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::{admin_command, AdminCommand, AdminResponse, ChannelInfo, ChannelList};
use ordo_proto::pb::common::{AckMode, Block, Envelope, HeaderType, Status as Code};

use super::channels::{PeerChannel, PeerChannels};

/// How far an admin request's timestamp may be from the peer's clock.
const ADMIN_CLOCK_SKEW_MS: u64 = 300_000;

type Refusal = (Code, String);

/// The Admin handler.
pub struct PeerAdmin {
    channels: Arc<PeerChannels>,
    admins: NodeAdmins,
}

impl PeerAdmin {
    /// Admins are checked against the CA that issued `identity`'s certificate.
    pub fn new(
        channels: Arc<PeerChannels>,
        identity: &Identity,
    ) -> Result<Self, ordo_proto::cert::CertError> {
        Ok(Self {
            channels,
            admins: NodeAdmins::for_identity(identity)?,
        })
    }

    /// Executes one request.
    pub async fn execute(&self, request: Envelope) -> AdminResponse {
        self.run(&request)
            .await
            .unwrap_or_else(|(code, info)| AdminResponse {
                status: code as i32,
                info,
                ..Default::default()
            })
    }

    async fn run(&self, request: &Envelope) -> Result<AdminResponse, Refusal> {
        let unpacked = envelope::unpack(request).map_err(|e| (Code::BadRequest, e.to_string()))?;
        if unpacked.header_type != HeaderType::AdminCommand {
            return Err((Code::BadRequest, "header type is not ADMIN_COMMAND".into()));
        }
        let now_ms = ordo_proto::now_ms();
        if unpacked.header.timestamp_ms.abs_diff(now_ms) > ADMIN_CLOCK_SKEW_MS {
            return Err((
                Code::BadRequest,
                "request timestamp too far from the peer's clock".into(),
            ));
        }
        let cmd = AdminCommand::decode(unpacked.data.as_ref())
            .map_err(|e| (Code::BadRequest, format!("admin command: {e}")))?;
        let creator = &unpacked.header.creator;
        let now_secs = now_ms / 1000;
        let ok = |channel: Option<ChannelInfo>, list: Option<ChannelList>| AdminResponse {
            status: Code::Success as i32,
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
                self.channels
                    .remove(&r.channel_id)
                    .await
                    .map_err(|e| (e.status(), e.to_string()))?;
                Ok(ok(None, None))
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
                    authorize_reader(&ch, request, creator, now_secs)?;
                }
                Ok(ok(Some(info(&ch)), None))
            }
        }
    }
}

/// Checks that `request` is signed by a member the channel's Readers policy admits.
pub fn authorize_reader(
    ch: &PeerChannel,
    request: &Envelope,
    creator: &[u8],
    now_secs: u64,
) -> Result<(), Refusal> {
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
        creator,
        now_secs,
    )
    .map(|_| ())
    .map_err(|e| (Code::Forbidden, e.0))
}

/// A signed MESSAGE request from a reader of its channel, as the Gateway's CommitStatus
/// and the Events service take them: the channel and the request's data, or the gRPC
/// status that refuses it.
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
        &unpacked.header.creator,
        ordo_proto::now_ms() / 1000,
    )
    .map_err(|(_, why)| tonic::Status::permission_denied(why))?;
    Ok((channel, unpacked.data))
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
    }
}
