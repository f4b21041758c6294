//! A running raft chain: what the orderer holds — routing envelopes to the leader
//! (forwarding from followers), handing raft messages to the raft loop, and answering
//! for its status — while the loop itself ([`super::driver`] over [`super::engine`])
//! runs on the chain's own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{driver, Proposal, RaftMetrics, RaftSetup, RaftTransport, Shared};
use crate::chain::{BoxFuture, Chain, ChainError, ChainStatus, OrderRequest};
use crate::support::ChainSupport;

/// Forwarded-envelope records waiting for the raft loop (oldest dropped first; the loop
/// takes them every turn).
const MAX_QUEUED_FORWARDS: usize = 100_000;

/// A running raft chain.
pub struct RaftChain {
    id: u64,
    pub(super) support: Arc<ChainSupport>,
    proposals: mpsc::Sender<Proposal>,
    steps: mpsc::Sender<(u64, Vec<u8>)>,
    transport: Arc<dyn RaftTransport>,
    shared: Arc<Shared>,
    halt: CancellationToken,
    failed: Arc<AtomicBool>,
    stopped: Mutex<watch::Receiver<bool>>,
}

impl RaftChain {
    /// Starts the chain: loads the raft log from the channel's ledger and runs the raft
    /// loop on its own thread. Must be called within a Tokio runtime.
    pub fn start(support: Arc<ChainSupport>, setup: RaftSetup) -> Result<Arc<Self>, ChainError> {
        let (ptx, prx) = mpsc::channel(setup.options.queue_capacity.max(1));
        let (stx, srx) = mpsc::channel(4_096);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            names: RwLock::new(setup.names.clone()),
            ..Shared::default()
        });
        let halt = CancellationToken::new();
        let failed = Arc::new(AtomicBool::new(false));
        let driver = driver::Driver::new(
            support.clone(),
            &setup,
            driver::Links {
                shared: shared.clone(),
                proposals: prx,
                steps: srx,
                halt: halt.clone(),
                failed: failed.clone(),
            },
            driver::RealTime::new(),
        )?;
        let handle = tokio::runtime::Handle::current();
        let channel = driver.channel_id().to_string();
        std::thread::Builder::new()
            .name(format!("raft-{channel}"))
            .spawn(move || {
                driver.run(&handle);
                let _ = stopped_tx.send(true);
            })
            .map_err(|e| ChainError::Storage(format!("cannot start the raft thread: {e}")))?;
        Ok(Arc::new(Self {
            id: setup.id,
            support,
            proposals: ptx,
            steps: stx,
            transport: setup.transport,
            shared,
            halt,
            failed,
            stopped: Mutex::new(stopped_rx),
        }))
    }

    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Counters and gauges for the metrics endpoint.
    pub fn metrics(&self) -> RaftMetrics {
        let s = &self.shared;
        RaftMetrics {
            is_leader: s.is_leader.load(Ordering::Acquire),
            term: s.term.load(Ordering::Acquire),
            leader_changes: s.leader_changes.load(Ordering::Relaxed),
            committed_index: s.committed.load(Ordering::Relaxed),
            applied_index: s.applied.load(Ordering::Relaxed),
            persist_micros: s.persist_micros.load(Ordering::Relaxed),
            active_nodes: s.active_nodes.load(Ordering::Relaxed),
            snapshot_index: s.snapshot_index.load(Ordering::Relaxed),
        }
    }

    /// The leader this node knows (0 when none).
    pub fn leader(&self) -> u64 {
        self.shared.leader.load(Ordering::Acquire)
    }

    /// Hands an encoded raft message from node `from` (as authenticated by the
    /// transport) to the raft loop, which drops it unless the message says the same
    /// sender. Never blocks: when the loop is behind, the message is dropped (raft
    /// retransmits).
    pub fn step(&self, from: u64, message: &[u8]) {
        if self.steps.try_send((from, message.to_vec())).is_err() {
            tracing::debug!("raft inbox full or closed; message dropped");
        }
    }

    /// An envelope forwarded by a follower: ordered if this node is the leader.
    pub async fn submit_forwarded(
        &self,
        request: OrderRequest,
        is_config: bool,
    ) -> Result<u64, ChainError> {
        self.check_running()?;
        if !self.shared.is_leader.load(Ordering::Acquire) {
            return Err(self.not_leader());
        }
        self.propose_locally(request, is_config, true).await
    }

    /// Whether this node was removed from the channel's consenters (it serves the
    /// blocks it has but orders nothing).
    pub fn evicted(&self) -> bool {
        self.shared.evicted.load(Ordering::Acquire)
    }

    fn hint(&self, id: u64) -> String {
        self.shared
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("raft node {id:x}"))
    }

    fn not_leader(&self) -> ChainError {
        match self.leader() {
            0 => ChainError::NotReady {
                reason: "no raft leader is known yet".into(),
            },
            l => ChainError::NotLeader {
                hint: Some(self.hint(l)),
            },
        }
    }

    fn check_running(&self) -> Result<(), ChainError> {
        if self.evicted() {
            return Err(ChainError::NotReady {
                reason: format!(
                    "this orderer was removed from the consenters of channel {:?}",
                    self.support.channel_id()
                ),
            });
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(ChainError::Storage(
                "the raft chain stopped after a storage failure".into(),
            ));
        }
        if self.halt.is_cancelled() {
            return Err(ChainError::ShuttingDown);
        }
        Ok(())
    }

    async fn propose_locally(
        &self,
        request: OrderRequest,
        is_config: bool,
        forwarded: bool,
    ) -> Result<u64, ChainError> {
        let (done, rx) = oneshot::channel();
        let proposal = Proposal {
            request,
            is_config,
            forwarded,
            done: Some(done),
        };
        self.enqueue(proposal).await?;
        rx.await.map_err(|_| ChainError::ShuttingDown)?
    }

    /// Hands a proposal to the raft loop, waiting while its queue is full (backpressure).
    async fn enqueue(&self, proposal: Proposal) -> Result<(), ChainError> {
        tokio::select! {
            r = self.proposals.send(proposal) => r.map_err(|_| ChainError::ShuttingDown),
            _ = self.halt.cancelled() => Err(ChainError::ShuttingDown),
        }
    }

    async fn route(&self, request: OrderRequest, is_config: bool) -> Result<(), ChainError> {
        self.check_running()?;
        let leader = self.leader();
        if leader == 0 {
            return Err(self.not_leader());
        }
        if leader == self.id {
            if is_config {
                // A config update's refusal (quorum, sequence) goes back to its submitter.
                return self.propose_locally(request, true, false).await.map(|_| ());
            }
            // A normal envelope is taken once queued, as in solo: waiting for the raft
            // loop's answer would leave one envelope per Broadcast stream in flight. A new
            // leader takes the queue once it has applied its log; if it loses the
            // leadership first, the raft loop tells the envelopes' waiters.
            return self
                .enqueue(Proposal {
                    request,
                    is_config: false,
                    forwarded: false,
                    done: None,
                })
                .await;
        }
        let tx_id = request.tx_id.clone();
        let term = match self.transport.submit(leader, request, is_config).await {
            Ok(term) => term,
            // The leader took a normal envelope and refused it (re-validation against a
            // newer config, or too large for the batch size): as on the leader itself,
            // the envelope counts as taken and its committed-mode waiter — which waits
            // on this node — learns why.
            Err(ChainError::Revalidation(reason)) if !is_config => {
                self.support.notify_rejected(&tx_id, reason);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut forwarded = self
            .shared
            .forwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if forwarded.len() >= MAX_QUEUED_FORWARDS {
            forwarded.pop_front();
        }
        forwarded.push_back((tx_id, term));
        Ok(())
    }
}

impl Chain for RaftChain {
    fn order(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(self.route(req, false))
    }

    fn configure(&self, req: OrderRequest) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(self.route(req, true))
    }

    fn wait_ready(&self) -> BoxFuture<'_, Result<(), ChainError>> {
        Box::pin(async move {
            self.check_running()?;
            if self.leader() == 0 {
                return Err(self.not_leader());
            }
            if self.leader() == self.id && !self.shared.accepting.load(Ordering::Acquire) {
                return Err(ChainError::NotReady {
                    reason: "the new raft leader is still applying its log".into(),
                });
            }
            Ok(())
        })
    }

    fn status(&self) -> ChainStatus {
        let leader = self.leader();
        ChainStatus {
            role: self
                .shared
                .role
                .read()
                .map(|r| r.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
            leader: (leader != 0).then(|| self.hint(leader)),
            term: self.shared.term.load(Ordering::Acquire),
        }
    }

    fn halt(&self) -> BoxFuture<'_, ()> {
        self.halt.cancel();
        let mut rx = self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            if rx.wait_for(|s| *s).await.is_err() {
                error!("raft thread ended without reporting");
            }
        })
    }

    /// The block the last raft snapshot names (0 before the first): entries up to the
    /// snapshot are forgotten by raft, so the blocks they wrote may go (with their log
    /// entries), but recovery reads the snapshot's block itself.
    fn prune_ceiling(&self) -> u64 {
        match super::disk::snapshot_block(&self.support.ledger().consensus_log()) {
            Ok(block) => block.unwrap_or(0),
            Err(e) => {
                warn!(channel = %self.support.channel_id(), "reading the raft snapshot for pruning: {e}");
                0
            }
        }
    }

    fn metrics(&self) -> Vec<crate::chain::MetricSample> {
        let mut out = RaftChain::metrics(self).samples();
        out.extend(self.transport.metrics());
        out
    }

    fn cluster(&self) -> Option<&dyn crate::chain::ClusterMember> {
        Some(self)
    }
}
