//! The receiving side of the Cluster service: Step streams and forwarded Submits,
//! authenticated (the sender's proof, its pinned TLS certificate) and handed to the
//! channel's chain.

use super::*;

/// The Cluster gRPC service.
pub struct ClusterService {
    /// The channels.
    pub registry: Arc<Registry>,
    /// Cancelled on node shutdown: Step streams end, so the server can stop.
    pub shutdown: CancellationToken,
    /// Whether the listener runs TLS: then a consenter whose channel config pins a TLS
    /// certificate must present exactly that one.
    pub tls: bool,
}

/// Refuses a cluster request from `sender` unless the connection presented the TLS
/// certificate the channel config pins for it, or a renewal of it (same subject, same
/// CA: see [`ordo_node::certinfo::same_or_renewed`]). A valid certificate of the right
/// org is not enough: raft membership is per node, so another node of the same org (or a
/// stolen certificate of another node) must not speak for this consenter.
fn check_pinned(sender: &Consenter, peer: Option<&PeerInfo>, tls: bool) -> Result<(), Status> {
    if !tls || sender.tls_cert.is_empty() {
        return Ok(());
    }
    let presented = peer.and_then(|p| p.client_cert.as_ref());
    match presented {
        Some(cert)
            if ordo_node::certinfo::same_or_renewed(&sender.tls_cert, cert.as_ref().as_ref()) =>
        {
            Ok(())
        }
        Some(cert) => {
            let who = ordo_node::certinfo::CertSummary::parse(cert)
                .map(|c| c.subject)
                .unwrap_or_else(|| "an unparsable certificate".into());
            warn!(
                consenter = %sender.id,
                presented = %who,
                remote = ?peer.and_then(|p| p.remote_addr),
                "cluster request refused: not the consenter's pinned TLS certificate"
            );
            Err(Status::permission_denied(format!(
                "consenter {} must connect with the TLS certificate its channel config pins; \
                 this connection presented {who}",
                sender.id
            )))
        }
        None => Err(Status::permission_denied(format!(
            "consenter {} must connect with its pinned TLS certificate; this connection \
             presented none",
            sender.id
        ))),
    }
}

/// The channel's handle; its chain must be a cluster member ([`member`]).
fn channel_handle(registry: &Registry, channel: &str) -> Result<Arc<ChannelHandle>, Status> {
    registry
        .get(channel)
        .ok_or_else(|| Status::not_found(format!("channel {channel:?} not found")))
}

/// The chain of `handle` as a cluster member: FAILED_PRECONDITION for a backend whose
/// orderers do not talk to each other (solo, kafka).
fn member(handle: &ChannelHandle) -> Result<&dyn ClusterMember, Status> {
    handle.chain.cluster().ok_or_else(|| {
        Status::failed_precondition(format!(
            "channel {:?} does not run a clustered backend (raft)",
            handle.id()
        ))
    })
}

fn consenters(handle: &ChannelHandle) -> Vec<Consenter> {
    handle
        .support
        .state()
        .config
        .orderer
        .as_ref()
        .map(|o| o.consenters.clone())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn step(
        &self,
        request: Request<Streaming<StepRequest>>,
    ) -> Result<Response<StepResponse>, Status> {
        let peer = PeerInfo::of(&request).cloned();
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty Step stream"))?;
        let channel = first.channel.clone();
        let handle = channel_handle(&self.registry, &channel)?;
        let raft = member(&handle)?;
        let members = consenters(&handle);
        let state = handle.support.state();
        let sender = cluster_auth::verify(
            first.auth.as_ref(),
            &members,
            &state.msp,
            Purpose::Step,
            &channel,
            &[],
            ordo_proto::now_ms(),
        )
        .map_err(|e| Status::permission_denied(e.to_string()))?;
        check_pinned(sender, peer.as_ref(), self.tls)?;
        let from = raft_id(&sender.id);
        debug!(%channel, consenter = %sender.id, "raft stream opened");
        if !first.message.is_empty() {
            raft.step(from, &first.message);
        }
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = handle.closed.cancelled() => break,
                m = inbound.message() => m?,
            };
            let Some(req) = next else { break };
            if req.channel != channel {
                return Err(Status::invalid_argument(
                    "a Step stream carries one channel",
                ));
            }
            raft.step(from, &req.message);
        }
        Ok(Response::new(StepResponse {}))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let peer = PeerInfo::of(&request).cloned();
        let req = request.into_inner();
        let handle = channel_handle(&self.registry, &req.channel)?;
        let raft = member(&handle)?;
        let members = consenters(&handle);
        let state = handle.support.state();
        let digest = Sha256::digest(&req.envelope);
        let sender = cluster_auth::verify(
            req.auth.as_ref(),
            &members,
            &state.msp,
            Purpose::Submit,
            &req.channel,
            &digest,
            ordo_proto::now_ms(),
        )
        .map_err(|e| Status::permission_denied(e.to_string()))?;
        check_pinned(sender, peer.as_ref(), self.tls)?;
        let order = OrderRequest {
            envelope: req.envelope,
            tx_id: req.tx_id,
            config_seq: req.config_seq,
        };
        match raft.submit_forwarded(order, req.is_config).await {
            Ok(term) => Ok(Response::new(SubmitResponse { term })),
            Err(e) => Err(ordo_proto::status::refusal(
                chain_error_code(&e),
                e.to_string(),
            )),
        }
    }
}
