//! The driver: the Deliver streams of the channel's orderers as sources of
//! [`ordo_sdk::pull`], which does the verifying, failing over and backing off.

use std::time::Duration;

use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use ordo_proto::identity::Identity;
use ordo_proto::pb::orderer::SeekBehavior;
use ordo_sdk::pull::{
    self, BlockOpener, BlockStream, BoxFuture, Finished, PullError, PullPolicy, Until,
};

use super::{BlockSink, DeliverConfig, DeliverError, FollowOptions};

/// Follows `opts.channel_id` until `shutdown` is cancelled (then `Ok(())`), handing every
/// verified block to `sink` in order; see the module docs for the flow, the failover
/// rules and the sink's contract.
///
/// Returns an error only for what retrying cannot repair: an invalid configuration, no
/// endpoint at all, a sink that failed or got out of step with the verifier.
pub async fn follow(
    opts: FollowOptions,
    mut sink: impl BlockSink,
    shutdown: CancellationToken,
) -> Result<(), DeliverError> {
    opts.config.validate()?;
    let FollowOptions {
        channel_id,
        identity,
        mut verifier,
        static_endpoints,
        config,
        jitter_seed,
        stats,
        transport,
    } = opts;
    let opener = DeliverOpener {
        transport,
        identity,
        channel_id: channel_id.clone(),
        max_message_bytes: config.max_message_bytes,
    };
    let policy = policy(&config, jitter_seed);
    let pulled = pull::pull(
        &channel_id,
        &opener,
        static_endpoints,
        &mut verifier,
        &mut sink,
        Until::Forever,
        &policy,
        &stats,
        &shutdown,
    )
    .await;
    match pulled {
        Ok(Finished::Halted | Finished::SinkClosed | Finished::Reached) => Ok(()),
        Err(PullError::NoSources) => Err(DeliverError::NoEndpoints {
            channel: channel_id,
        }),
        Err(e) => Err(DeliverError::Pull(e)),
    }
}

/// The pull policy of a deliver client: retries forever with jittered backoff, avoids an
/// orderer that served a bad block, takes the channel's orderers from its configuration.
fn policy(config: &DeliverConfig, jitter_seed: u64) -> PullPolicy {
    PullPolicy {
        open_timeout: Duration::from_millis(config.connect_timeout_ms),
        idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        backoff_base_ms: config.backoff_base_ms,
        backoff_max_ms: config.backoff_max_ms,
        jitter: true,
        jitter_seed,
        avoid_ms: config.avoid_ms,
        give_up_after_rounds: None,
        bad_block_is_fatal: false,
        endpoints_from_config: true,
    }
}

/// Opens Deliver streams on orderers, signed by the peer's identity.
struct DeliverOpener {
    transport: ordo_sdk::transport::Transport,
    identity: Identity,
    channel_id: String,
    max_message_bytes: usize,
}

impl BlockOpener for DeliverOpener {
    fn open<'a>(
        &'a self,
        endpoint: &'a str,
        start: u64,
        end: Option<u64>,
    ) -> BoxFuture<'a, Result<BlockStream<'a>, String>> {
        Box::pin(async move {
            let channel = ordo_sdk::orderer::connect(endpoint, &self.transport)
                .await
                .map_err(|e| error_chain(&e))?;
            let mut client = ordo_sdk::orderer::broadcast_client(channel)
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes);
            let request = ordo_sdk::orderer::seek_request(
                &self.identity,
                &self.channel_id,
                ordo_sdk::orderer::position(Some(start)),
                end.map(|e| ordo_sdk::orderer::position(Some(e))),
                SeekBehavior::BlockUntilReady,
            );
            let response = client
                .deliver(request)
                .await
                .map_err(|status| status.to_string())?;
            let blocks = response.into_inner().map(|message| {
                let response = message.map_err(|status| {
                    format!(
                        "the orderer ended the stream with {:?}: {}",
                        status.code(),
                        status.message()
                    )
                })?;
                response
                    .block
                    .ok_or_else(|| "a Deliver response without a block".to_string())
            });
            Ok(Box::pin(blocks) as BlockStream<'a>)
        })
    }
}

/// An error with its causes, `outer: inner: …` (tonic's transport errors say little at
/// the top level).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
