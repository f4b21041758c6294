//! Chaincode events, one at a time, and checkpoints to resume from.
//!
//! A chaincode event is set during simulation and delivered once its transaction commits
//! as VALID. [`ChaincodeEvents`] yields them one by one ([`ChaincodeEvent`]), starting where
//! [`StartAt`] says: at the next block (the default: only what happens from now on), at a
//! given block, or just after a [`Checkpoint`]. A [`Checkpointer`] remembers the last
//! event handled — in memory, or in a file that survives restarts — so that a consumer
//! that stops and starts again repeats nothing and skips nothing.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_stream::Stream;

use ordo_proto::pb::gateway::ChaincodeEventsResponse;

use super::error::{from_status, GatewayError};

/// An event a chaincode set in a transaction that committed as VALID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeEvent {
    /// The block that holds the transaction.
    pub block: u64,
    /// The transaction.
    pub tx_id: String,
    /// The chaincode that set it.
    pub chaincode: String,
    /// The event's name (e.g. `transfer`).
    pub name: String,
    /// Its payload, as the chaincode set it.
    pub payload: Bytes,
}

/// Where the last handled event is: its block and transaction. Resuming after it
/// repeats nothing and skips nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Block of the last event handled.
    pub block: u64,
    /// Its transaction; empty before the first event.
    pub tx_id: String,
}

impl From<&ChaincodeEvent> for Checkpoint {
    fn from(e: &ChaincodeEvent) -> Self {
        Self {
            block: e.block,
            tx_id: e.tx_id.clone(),
        }
    }
}

/// Where an event stream starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StartAt {
    /// The first block the peer has not committed yet: only events from now on.
    #[default]
    NextBlock,
    /// Every event from this block on.
    Block(u64),
    /// The events after this checkpoint.
    After(Checkpoint),
}

/// A stream of one chaincode's events, one [`ChaincodeEvent`] at a time. It never ends
/// by itself while the peer runs; [`ChaincodeEvents::close`] (or dropping it) cancels the
/// stream on the peer.
pub struct ChaincodeEvents {
    inner: tonic::Streaming<ChaincodeEventsResponse>,
    ready: VecDeque<ChaincodeEvent>,
    failed: bool,
}

impl ChaincodeEvents {
    pub(super) fn new(inner: tonic::Streaming<ChaincodeEventsResponse>) -> Self {
        Self {
            inner,
            ready: VecDeque::new(),
            failed: false,
        }
    }

    /// The next event; `None` once the peer closed the stream (it shut down) or after an
    /// error was returned.
    pub async fn next(&mut self) -> Option<Result<ChaincodeEvent, GatewayError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Cancels the stream: the peer stops sending, and nothing more is read.
    pub fn close(self) {
        drop(self);
    }
}

impl Stream for ChaincodeEvents {
    type Item = Result<ChaincodeEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            if self.failed {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(status))) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(from_status("ChaincodeEvents")(status))));
                }
                Poll::Ready(Some(Ok(resp))) => {
                    let block = resp.block_number;
                    self.ready
                        .extend(resp.events.into_iter().map(|e| ChaincodeEvent {
                            block,
                            tx_id: e.tx_id,
                            chaincode: e.chaincode,
                            name: e.name,
                            payload: e.payload,
                        }));
                }
            }
        }
    }
}

/// Why a checkpoint file could not be read or written.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading, writing or syncing the file failed.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file does not hold a checkpoint.
    #[error("checkpoint file {path} is not a checkpoint: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

/// Remembers the last event handled, so a consumer resumes right after it.
///
/// Advance it *after* handling an event: a crash between handling and advancing repeats
/// that one event on restart (at-least-once); advancing first would risk losing it. A
/// file checkpointer writes each advance durably (a temporary file, fsync, rename, fsync
/// of the directory) before `advance` returns.
#[derive(Debug, Clone, Default)]
pub struct Checkpointer {
    current: Option<Checkpoint>,
    file: Option<PathBuf>,
}

impl Checkpointer {
    /// A checkpointer that forgets when the process ends.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A checkpointer kept in the JSON file at `path` (`{"block": 7, "tx_id": "…"}`),
    /// resuming from what it holds; a missing file means nothing handled yet.
    pub fn file(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let current =
            match std::fs::read(&path) {
                Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                    CheckpointError::Malformed {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(CheckpointError::Io { path, source }),
            };
        Ok(Self {
            current,
            file: Some(path),
        })
    }

    /// The last event handled, if any.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.current.as_ref()
    }

    /// Where a stream resumes: after the checkpoint, or at `fresh` when nothing was
    /// handled yet.
    pub fn start_at(&self, fresh: StartAt) -> StartAt {
        match &self.current {
            Some(c) => StartAt::After(c.clone()),
            None => fresh,
        }
    }

    /// Records `event` as handled (durably, for a file checkpointer).
    pub fn advance(&mut self, event: &ChaincodeEvent) -> Result<(), CheckpointError> {
        let next = Checkpoint::from(event);
        if let Some(path) = &self.file {
            write_durably(path, &next)?;
        }
        self.current = Some(next);
        Ok(())
    }
}

fn write_durably(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let text = serde_json::to_vec(checkpoint).map_err(|e| CheckpointError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(block: u64, tx: &str) -> ChaincodeEvent {
        ChaincodeEvent {
            block,
            tx_id: tx.into(),
            chaincode: "bank".into(),
            name: "transfer".into(),
            payload: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_file_checkpointer_resumes_after_the_last_event_it_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bank.checkpoint");
        let mut c = Checkpointer::file(&path).expect("missing file is fine");
        assert_eq!(c.start_at(StartAt::NextBlock), StartAt::NextBlock);
        c.advance(&event(4, "a")).expect("advance");
        c.advance(&event(5, "b")).expect("advance");
        let again = Checkpointer::file(&path).expect("reads");
        assert_eq!(
            again.start_at(StartAt::NextBlock),
            StartAt::After(Checkpoint {
                block: 5,
                tx_id: "b".into()
            })
        );
        assert!(!dir.path().join("bank.checkpoint.tmp").exists());
        std::fs::write(&path, "not json").expect("write");
        assert!(matches!(
            Checkpointer::file(&path),
            Err(CheckpointError::Malformed { .. })
        ));
    }

    #[test]
    fn an_in_memory_checkpointer_follows_the_events() {
        let mut c = Checkpointer::in_memory();
        assert_eq!(c.start_at(StartAt::Block(0)), StartAt::Block(0));
        c.advance(&event(9, "x")).expect("advance");
        assert_eq!(c.checkpoint().map(|c| c.block), Some(9));
    }
}
