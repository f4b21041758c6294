//! The self-ordering fake's block cutter.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use ordo_proto::pb::common::{Block, BlockData};

/// Most envelopes in one block.
const MAX_ENVELOPES: usize = 500;
/// How long a partial block waits for more.
const IDLE: Duration = Duration::from_millis(5);

/// Cuts blocks of up to [`MAX_ENVELOPES`] envelopes, or whatever arrived within [`IDLE`],
/// and publishes them; ends when every sender is gone.
pub(super) async fn cut(mut rx: mpsc::UnboundedReceiver<Bytes>, blocks: broadcast::Sender<Block>) {
    let mut pending = Vec::new();
    loop {
        let idle = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(env)) => {
                pending.push(env);
                false
            }
            Ok(None) => return,
            Err(_) => true,
        };
        if pending.len() >= MAX_ENVELOPES || (idle && !pending.is_empty()) {
            let data = std::mem::take(&mut pending);
            let _ = blocks.send(Block {
                header: None,
                data: Some(BlockData { data }),
                metadata: None,
            });
        }
    }
}
