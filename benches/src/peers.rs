//! The peer side of `ordo bench peer`: one connection per peer, polled for its height
//! and commit hash (Admin `GetChannelInfo`, signed by the peer's org admin), and the
//! committed blocks read back (Query `GetBlock`) to count validation codes.
//!
//! Each peer has its own watcher task that polls its height every [`POLL_INTERVAL`] and
//! records each height it saw first, with the time; once the final height is known, the
//! time a peer reached it is the first poll that saw it. The watchers share only atomics
//! (for the progress line); each owns its record.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bytes::Bytes;
use ordo_proto::identity::Identity;
use ordo_proto::pb::admin::admin_client::AdminClient;
use ordo_proto::pb::admin::{admin_command, ChannelInfo, GetChannelInfo};
use ordo_proto::pb::common::{Block, Envelope, HeaderType};
use ordo_proto::pb::peer::TxValidationCode;
use ordo_proto::pb::query::query_client::QueryClient;
use ordo_proto::pb::query::{query_request, GetBlock, QueryRequest};
use ordo_sdk::orderer::{admin_client, admin_request, MAX_GRPC_MESSAGE_BYTES};
use prost::Message;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::deliver::OursInBlock;
use crate::txid::envelope_tx_id;

/// How often each watcher asks its peer for its height. The time a peer reached the final
/// height is known to within this (plus one round trip).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A signed Admin request is reused for this long: the peer accepts timestamps within
/// 5 minutes of its clock, and re-signing every poll would cost the client CPU it shares
/// with the peers.
const RESIGN_AFTER: Duration = Duration::from_secs(60);

/// Longest wait for one answer from a peer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One peer of the network, connected.
#[derive(Clone)]
pub(crate) struct PeerConn {
    /// Node name, e.g. `peer0.BankA`.
    pub name: String,
    /// Its org.
    pub org: String,
    /// Its gRPC address.
    pub addr: String,
    /// The org's admin, who signs the info requests.
    pub admin: Identity,
    admin_client: AdminClient<Channel>,
    query_client: QueryClient<Channel>,
}

impl PeerConn {
    /// A peer reached over `conn`.
    pub fn new(name: String, org: String, addr: String, admin: Identity, conn: Channel) -> Self {
        Self {
            name,
            org,
            addr,
            admin,
            admin_client: admin_client(conn.clone()),
            query_client: QueryClient::new(conn)
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        }
    }

    /// A signed `GetChannelInfo` request for `channel`.
    fn info_request(&self, channel: &str) -> Envelope {
        admin_request(
            &self.admin,
            channel,
            admin_command::Command::Info(GetChannelInfo {
                channel_id: channel.to_string(),
            }),
        )
    }

    /// Sends a signed `GetChannelInfo` request; the channel's info on success.
    async fn send_info(&mut self, request: Envelope) -> anyhow::Result<ChannelInfo> {
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.admin_client.execute(request))
            .await
            .map_err(|_| anyhow!("{}: no channel info in {CALL_TIMEOUT:?}", self.name))?
            .map_err(|s| {
                anyhow!(
                    "{} at {}: channel info: {} {}",
                    self.name,
                    self.addr,
                    ordo_proto::status::code_name(s.code()),
                    s.message()
                )
            })?
            .into_inner();
        resp.channel
            .ok_or_else(|| anyhow!("{}: a channel info answer without the info", self.name))
    }

    /// The peer's info on `channel`, freshly signed.
    pub async fn info(&mut self, channel: &str) -> anyhow::Result<ChannelInfo> {
        let request = self.info_request(channel);
        self.send_info(request).await
    }

    /// Committed block `number` of `channel`, read with `reader`'s signature.
    pub async fn block(
        &mut self,
        reader: &Identity,
        channel: &str,
        number: u64,
    ) -> anyhow::Result<Block> {
        let query = QueryRequest {
            query: Some(query_request::Query::Block(GetBlock { number })),
        };
        let (request, _) = ordo_proto::envelope::create_signed(
            reader,
            channel,
            HeaderType::Message,
            Bytes::from(query.encode_to_vec()),
            ordo_proto::now_ms(),
        );
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.query_client.query(request))
            .await
            .map_err(|_| anyhow!("{}: no block {number} in {CALL_TIMEOUT:?}", self.name))?
            .map_err(|s| {
                anyhow!(
                    "{} at {}: block {number}: {} {}",
                    self.name,
                    self.addr,
                    ordo_proto::status::code_name(s.code()),
                    s.message()
                )
            })?
            .into_inner();
        resp.block
            .ok_or_else(|| anyhow!("{}: a block answer without the block", self.name))
    }
}

/// Live commit progress across the peers, for the progress line only.
pub(crate) struct CommitProgress {
    /// The height each peer was last seen at.
    heights: Vec<AtomicU64>,
    /// Block number → transactions of ours in it, as the orderer delivered them.
    ours: Mutex<BTreeMap<u64, u64>>,
}

impl CommitProgress {
    /// Progress over `peers` peers, all at height 0.
    pub fn new(peers: usize) -> Self {
        Self {
            heights: (0..peers).map(|_| AtomicU64::new(0)).collect(),
            ours: Mutex::new(BTreeMap::new()),
        }
    }

    /// Peer `peer` was seen at `height`.
    pub fn set_height(&self, peer: usize, height: u64) {
        if let Some(h) = self.heights.get(peer) {
            h.fetch_max(height, Ordering::Relaxed);
        }
    }

    /// The orderer delivered block `number` holding `ours` transactions of ours.
    pub fn add_block(&self, number: u64, ours: u64) {
        let mut map = self.ours.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(number).or_default() += ours;
    }

    /// Transactions of ours in blocks below every peer's height.
    pub fn committed_on_every_peer(&self) -> u64 {
        let Some(min) = self.heights.iter().map(|h| h.load(Ordering::Relaxed)).min() else {
            return 0;
        };
        let map = self.ours.lock().unwrap_or_else(|e| e.into_inner());
        map.range(..min).map(|(_, n)| n).sum()
    }
}

/// What one watcher saw of its peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerTrace {
    /// Each new height the peer was seen at, with the time of that poll, ascending.
    pub heights: Vec<(Instant, u64)>,
    /// Polls that failed.
    pub errors: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl PeerTrace {
    /// When the peer was first seen at `height` or above.
    pub fn reached(&self, height: u64) -> Option<Instant> {
        // Heights are recorded strictly ascending (`record`).
        let k = self.heights.partition_point(|(_, h)| *h < height);
        self.heights.get(k).map(|(t, _)| *t)
    }

    /// The highest height seen.
    pub fn last_height(&self) -> Option<u64> {
        self.heights.last().map(|(_, h)| *h)
    }

    fn record(&mut self, at: Instant, height: u64) -> bool {
        if self.last_height().is_some_and(|h| h >= height) {
            return false;
        }
        self.heights.push((at, height));
        true
    }
}

/// When each of `blocks` was first seen committed on every peer of `traces` (the latest
/// of the times each peer was first seen above its number); `None` for a block some peer
/// never reached, or when there are no peers. In `blocks` order.
pub(crate) fn on_every_peer(blocks: &[OursInBlock], traces: &[PeerTrace]) -> Vec<Option<Instant>> {
    blocks
        .iter()
        .map(|b| {
            let mut latest = None;
            for t in traces {
                let at = t.reached(b.number + 1)?;
                latest = latest.max(Some(at));
            }
            latest
        })
        .collect()
}

/// Polls `peer`'s height on `channel` until it reaches the height announced on `target`,
/// or until `stall_timeout` passes without a new height once a target is known, or until
/// the sender of `target` is dropped.
pub(crate) async fn watch_peer(
    mut peer: PeerConn,
    channel: String,
    slot: usize,
    progress: Arc<CommitProgress>,
    mut target: watch::Receiver<Option<u64>>,
    stall_timeout: Duration,
) -> PeerTrace {
    let mut trace = PeerTrace {
        heights: Vec::new(),
        errors: 0,
        last_error: None,
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut request = (Instant::now(), peer.info_request(&channel));
    // Since when the peer has made no progress while a target was known.
    let mut idle_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        if request.0.elapsed() > RESIGN_AFTER {
            request = (Instant::now(), peer.info_request(&channel));
        }
        match peer.send_info(request.1.clone()).await {
            Ok(info) => {
                if trace.record(Instant::now(), info.height) {
                    progress.set_height(slot, info.height);
                    idle_since = None;
                }
            }
            Err(e) => {
                trace.errors += 1;
                if trace.last_error.is_none() {
                    tracing::warn!(peer = %peer.name, "polling the peer's height: {e:#}");
                }
                trace.last_error = Some(format!("{e:#}"));
            }
        }
        let wanted = match target.has_changed() {
            Err(_) => break, // the run is over (or failed)
            Ok(_) => *target.borrow_and_update(),
        };
        if let Some(t) = wanted {
            if trace.last_height().is_some_and(|h| h >= t) {
                break;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > stall_timeout {
                tracing::warn!(
                    peer = %peer.name,
                    height = trace.last_height().unwrap_or(0),
                    target = t,
                    "no new block for {stall_timeout:?}; giving up on this peer"
                );
                break;
            }
        }
    }
    trace
}

/// Every peer's info, asked until all report the same height (they may differ for a
/// moment when blocks other than ours arrive), for at most `patience`. The answers of the
/// last round, in `peers` order.
pub(crate) async fn settled_infos(
    peers: &mut [PeerConn],
    channel: &str,
    patience: Duration,
) -> anyhow::Result<Vec<ChannelInfo>> {
    let deadline = Instant::now() + patience;
    loop {
        let mut infos = Vec::with_capacity(peers.len());
        for p in peers.iter_mut() {
            infos.push(p.info(channel).await?);
        }
        let same = infos.windows(2).all(|w| w[0].height == w[1].height);
        if same || Instant::now() >= deadline {
            return Ok(infos);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Validation codes of our transactions, tallied from committed blocks.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CodeTally {
    /// Code name → transactions of ours with that code.
    pub codes: BTreeMap<String, u64>,
    /// Distinct transactions of ours found in the blocks.
    pub committed: u64,
    /// Occurrences of a transaction of ours beyond its first.
    pub duplicates: u64,
    /// Which of our transactions were found (by envelope index).
    seen: Vec<bool>,
}

impl CodeTally {
    /// A tally for `txs` transactions.
    pub fn new(txs: usize) -> Self {
        Self {
            seen: vec![false; txs],
            ..Self::default()
        }
    }

    /// Counts the codes that `block`'s metadata gives the transactions of ours in it
    /// (`index`: tx id → envelope index). A transaction without a code counts as
    /// `MISSING`.
    pub fn add_block(&mut self, block: &Block, index: &HashMap<String, usize>) {
        let codes = block
            .metadata
            .as_ref()
            .map(|m| m.transaction_validation_codes.as_ref())
            .unwrap_or_default();
        let envelopes = block
            .data
            .as_ref()
            .map(|d| d.data.as_slice())
            .unwrap_or_default();
        for (i, env) in envelopes.iter().enumerate() {
            let Some(id) = envelope_tx_id(env) else {
                continue;
            };
            let Some(&k) = std::str::from_utf8(&id).ok().and_then(|s| index.get(s)) else {
                continue; // not ours
            };
            if self.seen[k] {
                self.duplicates += 1;
                continue;
            }
            self.seen[k] = true;
            self.committed += 1;
            let name = match codes.get(i) {
                Some(&c) => code_name(c),
                None => "MISSING".to_string(),
            };
            *self.codes.entry(name).or_default() += 1;
        }
    }
}

/// The name of a validation code byte, e.g. `MVCC_READ_CONFLICT`, or `CODE_<n>`.
pub(crate) fn code_name(code: u8) -> String {
    match TxValidationCode::try_from(i32::from(code)) {
        Ok(c) => c.as_str_name().to_string(),
        Err(_) => format!("CODE_{code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txid::tests::test_identity;
    use ordo_proto::envelope::create_signed;
    use ordo_proto::pb::common::{BlockData, BlockMetadata};

    #[test]
    fn code_names() {
        assert_eq!(code_name(0), "VALID");
        assert_eq!(
            code_name(TxValidationCode::MvccReadConflict as u8),
            "MVCC_READ_CONFLICT"
        );
        assert_eq!(code_name(250), "CODE_250");
    }

    #[test]
    fn tallies_codes_of_our_transactions_only_once_each() {
        let id = test_identity();
        let mut envs = Vec::new();
        let mut index = HashMap::new();
        for i in 0..3 {
            let (env, tx_id) = create_signed(&id, "ch", HeaderType::Message, Bytes::new(), 1);
            envs.push(Bytes::from(env.encode_to_vec()));
            index.insert(tx_id, i);
        }
        let (foreign, _) = create_signed(&id, "ch", HeaderType::Message, Bytes::new(), 1);
        let foreign = Bytes::from(foreign.encode_to_vec());
        let block = |data: Vec<Bytes>, codes: &[u8]| Block {
            header: None,
            data: Some(BlockData { data }),
            metadata: Some(BlockMetadata {
                transaction_validation_codes: Bytes::copy_from_slice(codes),
                ..Default::default()
            }),
        };
        let conflict = TxValidationCode::MvccReadConflict as u8;
        let mut t = CodeTally::new(3);
        t.add_block(
            &block(
                vec![envs[0].clone(), foreign, envs[1].clone()],
                &[0, 0, conflict],
            ),
            &index,
        );
        // Envelope 0 again (a duplicate), and envelope 2 with no code.
        t.add_block(&block(vec![envs[0].clone(), envs[2].clone()], &[0]), &index);
        assert_eq!(t.committed, 3);
        assert_eq!(t.duplicates, 1);
        let expected: BTreeMap<String, u64> = [
            ("MISSING".to_string(), 1),
            ("MVCC_READ_CONFLICT".to_string(), 1),
            ("VALID".to_string(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(t.codes, expected);
    }

    #[test]
    fn commit_progress_counts_blocks_below_every_height() {
        let p = CommitProgress::new(2);
        p.add_block(3, 10);
        p.add_block(4, 5);
        p.add_block(6, 1);
        assert_eq!(p.committed_on_every_peer(), 0);
        p.set_height(0, 7);
        assert_eq!(p.committed_on_every_peer(), 0, "peer 1 still at 0");
        p.set_height(1, 5);
        assert_eq!(p.committed_on_every_peer(), 15);
        p.set_height(1, 4); // heights never go back
        assert_eq!(p.committed_on_every_peer(), 15);
        p.set_height(1, 7);
        assert_eq!(p.committed_on_every_peer(), 16);
    }

    #[test]
    fn trace_records_new_heights_and_when_they_were_reached() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = PeerTrace {
            heights: Vec::new(),
            errors: 0,
            last_error: None,
        };
        assert!(t.record(ms(0), 3));
        assert!(!t.record(ms(10), 3));
        assert!(t.record(ms(20), 5));
        assert!(!t.record(ms(30), 4));
        assert!(t.record(ms(40), 9));
        assert_eq!(t.reached(3), Some(ms(0)));
        assert_eq!(t.reached(4), Some(ms(20)));
        assert_eq!(t.reached(9), Some(ms(40)));
        assert_eq!(t.reached(10), None);
        assert_eq!(t.last_height(), Some(9));
    }

    #[test]
    fn a_block_is_on_every_peer_when_the_slowest_has_it() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let trace = |heights: &[(u64, u64)]| PeerTrace {
            heights: heights.iter().map(|&(t, h)| (ms(t), h)).collect(),
            errors: 0,
            last_error: None,
        };
        let fast = trace(&[(0, 5), (10, 7), (20, 9)]);
        let slow = trace(&[(0, 5), (30, 6), (50, 8)]);
        let block = |number| OursInBlock {
            number,
            txs: 1,
            at: t0,
        };
        let blocks = [block(5), block(6), block(7), block(8)];
        assert_eq!(
            on_every_peer(&blocks, &[fast.clone(), slow.clone()]),
            vec![Some(ms(30)), Some(ms(50)), Some(ms(50)), None]
        );
        assert_eq!(
            on_every_peer(&blocks, std::slice::from_ref(&fast)),
            vec![Some(ms(10)), Some(ms(10)), Some(ms(20)), Some(ms(20))]
        );
        assert_eq!(on_every_peer(&blocks, &[]), vec![None; 4]);
    }
}
