//! The Discovery gRPC service: `Announce` from the channel's peers, `Peers` for readers.
//!
//! Status codes: INVALID_ARGUMENT for an announcement that is malformed, for another
//! channel than it names, stale or from the future; NOT_FOUND for a channel not served
//! here; PERMISSION_DENIED for one not signed by a channel peer (a stranger's or a
//! non-peer's certificate, a signature that does not verify); RESOURCE_EXHAUSTED when the
//! channel's table is full of live peers. `Peers` refuses as every reader request does
//! (`admin::reader_request`).

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use ordo_proto::discovery::{self as announcement, AnnouncementError};
use ordo_proto::pb::common::Envelope;
use ordo_proto::pb::discovery::discovery_server::Discovery as DiscoveryRpc;
use ordo_proto::pb::discovery::{PeersRequest, PeersResponse, SignedPeerInfo};

use super::membership::Offered;
use super::Discovery;
use crate::node::admin::reader_request;
use crate::node::channels::PeerChannels;

/// The Discovery handler.
pub struct DiscoveryService {
    discovery: Arc<Discovery>,
    channels: Arc<PeerChannels>,
}

impl DiscoveryService {
    /// A handler over the peer's discovery and channels.
    pub fn new(discovery: Arc<Discovery>, channels: Arc<PeerChannels>) -> Self {
        Self {
            discovery,
            channels,
        }
    }
}

#[tonic::async_trait]
impl DiscoveryRpc for DiscoveryService {
    async fn announce(
        &self,
        request: Request<SignedPeerInfo>,
    ) -> Result<Response<PeersResponse>, Status> {
        let signed = request.into_inner();
        let info = announcement::decode(&signed).map_err(refusal)?;
        let channel = self.channels.get(&info.channel_id).ok_or_else(|| {
            Status::not_found(format!(
                "channel {:?} is not served by this peer",
                info.channel_id
            ))
        })?;
        match self.discovery.accept(&channel, &signed).map_err(refusal)? {
            Offered::Full => {
                return Err(Status::resource_exhausted(format!(
                    "this peer holds the most peers it keeps for channel {:?}",
                    info.channel_id
                )))
            }
            Offered::New => tracing::info!(
                channel = channel.id(),
                endpoint = %info.endpoint,
                "discovered a peer"
            ),
            Offered::Updated | Offered::Stale => {}
        }
        Ok(Response::new(PeersResponse {
            peers: self.discovery.announcements(channel.id()),
        }))
    }

    async fn peers(&self, request: Request<Envelope>) -> Result<Response<PeersResponse>, Status> {
        let (channel, data) = reader_request(&self.channels, request.get_ref())?;
        PeersRequest::decode(data)
            .map_err(|e| Status::invalid_argument(format!("peers request: {e}")))?;
        Ok(Response::new(PeersResponse {
            peers: self.discovery.announcements(channel.id()),
        }))
    }
}

/// The status for a refused announcement (module docs).
fn refusal(why: AnnouncementError) -> Status {
    match why {
        AnnouncementError::Malformed(_)
        | AnnouncementError::WrongChannel { .. }
        | AnnouncementError::FromTheFuture { .. }
        | AnnouncementError::Expired { .. } => Status::invalid_argument(why.to_string()),
        AnnouncementError::Certificate(_)
        | AnnouncementError::NotAPeer { .. }
        | AnnouncementError::BadSignature { .. } => Status::permission_denied(why.to_string()),
    }
}
