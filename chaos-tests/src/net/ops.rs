//! What a running [`Net`] offers the scenarios: its nodes, their Admin service, waits
//! for readiness and a raft leader, its directories and logs.

use super::*;

impl Net {
    /// The node behind `r`.
    pub fn node(&self, r: NodeRef) -> &Node {
        match r {
            NodeRef::Orderer(i) => &self.orderers[i],
            NodeRef::Peer(i) => &self.peers[i],
        }
    }

    /// The node behind `r`, mutably.
    pub fn node_mut(&mut self, r: NodeRef) -> &mut Node {
        match r {
            NodeRef::Orderer(i) => &mut self.orderers[i],
            NodeRef::Peer(i) => &mut self.peers[i],
        }
    }

    /// Sends an Admin command to a node.
    pub async fn admin(
        &self,
        r: NodeRef,
        command: admin_command::Command,
    ) -> Result<AdminResponse, String> {
        self.admin_call(r, command, Duration::from_secs(5)).await
    }

    /// An Admin command to a node as a future that borrows nothing, so that a scenario
    /// can spawn it and kill the node while it runs.
    pub fn admin_call(
        &self,
        r: NodeRef,
        command: admin_command::Command,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<AdminResponse, String>> + Send + 'static {
        let node = self.node(r);
        let (addr, transport, admin) = (
            node.addr.clone(),
            node.admin_transport.clone(),
            node.admin.clone(),
        );
        async move {
            let conn = ordo_sdk::orderer::connect(&addr, &transport)
                .await
                .map_err(|e| e.to_string())?;
            let mut client = ordo_sdk::orderer::admin_client(conn);
            let channel = match &command {
                admin_command::Command::Info(_) => CHANNEL,
                _ => "",
            };
            let req = ordo_sdk::orderer::admin_request(&admin, channel, command);
            tokio::time::timeout(timeout, client.execute(req))
                .await
                .map_err(|_| "admin request timed out".to_string())?
                .map(tonic::Response::into_inner)
                .map_err(|e| e.to_string())
        }
    }

    /// The channel's info on a node (height, role, commit hash on a peer).
    pub async fn info(&self, r: NodeRef) -> Result<ordo_proto::pb::admin::ChannelInfo, String> {
        let resp = self
            .admin(
                r,
                admin_command::Command::Info(GetChannelInfo {
                    channel_id: CHANNEL.into(),
                }),
            )
            .await?;
        resp.channel.ok_or_else(|| "no channel info".to_string())
    }

    pub(super) async fn wait_admin(&mut self, r: NodeRef) -> Result<(), NetError> {
        for _ in 0..300 {
            if !self.node_mut(r).proc.is_running() {
                break;
            }
            let list = admin_command::Command::List(ordo_proto::pb::admin::ListChannels {});
            if self.admin(r, list).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let node = self.node(r);
        Err(NetError::Node {
            node: node.proc.name.clone(),
            reason: format!("not ready:\n{}", node.proc.log_tail(30)),
        })
    }

    pub(super) async fn join(&self, r: NodeRef, genesis: &[u8]) -> Result<(), NetError> {
        self.admin(
            r,
            admin_command::Command::Join(JoinChannel {
                genesis_block: genesis.to_vec().into(),
            }),
        )
        .await
        .map_err(|reason| NetError::Node {
            node: self.node(r).proc.name.clone(),
            reason: format!("join refused: {reason}"),
        })?;
        Ok(())
    }

    /// Waits until the channel can order: a leader (raft) or a connected, caught-up
    /// chain (kafka) on the orderers.
    pub async fn wait_orderable(&self, within: Duration) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut ready = true;
            for i in 0..self.orderers.len() {
                match self.info(NodeRef::Orderer(i)).await {
                    Ok(info) => {
                        let ok = match self.spec.backend {
                            Backend::Solo => true,
                            Backend::Raft => !info.leader.is_empty(),
                            Backend::Kafka => info.role == "kafka",
                        };
                        ready &= ok;
                    }
                    Err(_) => ready = false,
                }
            }
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NetError::Node {
                    node: "network".into(),
                    reason: format!("channel not orderable within {within:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The orderer that says it is the raft leader, if one does.
    pub async fn raft_leader(&self) -> Option<usize> {
        for i in 0..self.orderers.len() {
            if let Ok(info) = self.info(NodeRef::Orderer(i)).await {
                if info.role == "leader" {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Where the network's files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The consortium's crypto directory (`ordo crypto init --out`): what `ordo crypto
    /// renew` and `ordo channel consenter update` work on.
    pub fn crypto_dir(&self) -> &Path {
        &self.crypto
    }

    /// The last lines of every node's log, for a failure report.
    pub fn logs(&self, lines: usize) -> String {
        self.orderers
            .iter()
            .chain(self.peers.iter())
            .map(|n| format!("--- {} ---\n{}", n.proc.name, n.proc.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
