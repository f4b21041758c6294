//! Fetching one block from the ordering service, trying each orderer in turn: what a peer
//! joining from a snapshot asks the orderers to check the snapshot against.
//!
//! The block is returned unverified; the caller checks it (see [`crate::snapshot`]).

use std::time::Duration;

use tokio_stream::StreamExt;

use ordo_proto::identity::Identity;
use ordo_proto::pb::common::Block;
use ordo_proto::pb::orderer::SeekBehavior;

/// Why no orderer served a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// Every orderer answered, and none holds the block (NOT_FOUND from each): the chain
    /// is not that long, or the block was pruned everywhere. Otherwise some orderer could
    /// not be asked, and trying later may succeed.
    pub not_held: bool,
    /// Every orderer's answer, `endpoint: answer; …`.
    pub detail: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Fetches block `number` of `channel` from the first of `endpoints` that serves it
/// within `timeout` each. An orderer that does not hold the block yet answers at once
/// (the request does not wait for it). The error lists every orderer's answer.
pub async fn fetch_block(
    transport: &ordo_sdk::transport::Transport,
    identity: &Identity,
    channel: &str,
    endpoints: &[String],
    number: u64,
    timeout: Duration,
) -> Result<Block, FetchError> {
    if endpoints.is_empty() {
        return Err(FetchError {
            not_held: false,
            detail: format!("no orderer endpoint known for channel {channel:?}"),
        });
    }
    let mut answers = Vec::new();
    let mut not_held = true;
    for endpoint in endpoints {
        let attempt = tokio::time::timeout(
            timeout,
            fetch_from(transport, identity, channel, endpoint, number),
        )
        .await
        .unwrap_or_else(|_| {
            Err((
                false,
                format!("no answer within {} ms", timeout.as_millis()),
            ))
        });
        match attempt {
            Ok(block) => return Ok(block),
            Err((lacks_it, e)) => {
                not_held &= lacks_it;
                answers.push(format!("{endpoint}: {e}"));
            }
        }
    }
    Err(FetchError {
        not_held,
        detail: format!("no orderer served block {number}: {}", answers.join("; ")),
    })
}

/// A failed attempt: whether the orderer said it does not hold the block, and its answer.
type Attempt = Result<Block, (bool, String)>;

fn status_answer(s: &tonic::Status) -> (bool, String) {
    (
        s.code() == tonic::Code::NotFound,
        format!("{:?}: {}", s.code(), s.message()),
    )
}

async fn fetch_from(
    transport: &ordo_sdk::transport::Transport,
    identity: &Identity,
    channel: &str,
    endpoint: &str,
    number: u64,
) -> Attempt {
    let conn = ordo_sdk::orderer::connect(endpoint, transport)
        .await
        .map_err(|e| (false, e.to_string()))?;
    let mut client = ordo_sdk::orderer::broadcast_client(conn);
    let request = ordo_sdk::orderer::seek_request(
        identity,
        channel,
        ordo_sdk::orderer::position(Some(number)),
        Some(ordo_sdk::orderer::position(Some(number))),
        SeekBehavior::FailIfNotReady,
    );
    let mut stream = client
        .deliver(request)
        .await
        .map_err(|s| status_answer(&s))?
        .into_inner();
    let Some(message) = stream.next().await else {
        return Err((false, "the stream ended without the block".into()));
    };
    let message = message.map_err(|s| status_answer(&s))?;
    let b = message
        .block
        .ok_or_else(|| (false, "a Deliver response without a block".to_string()))?;
    if ordo_proto::block::number(&b) != number {
        return Err((
            false,
            format!(
                "asked for block {number}, got block {}",
                ordo_proto::block::number(&b)
            ),
        ));
    }
    Ok(b)
}
