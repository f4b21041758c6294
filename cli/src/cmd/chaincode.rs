//! `ordo chaincode serve`: a chaincode server (chaincode as a service) running one of the
//! built-in chaincodes through the SDK's shim, as its own process. A channel uses it
//! with a chaincode definition whose runtime is `external:<host:port>`; it is also the
//! example of an external chaincode: `impl Chaincode` plus `shim::serve`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};

use ordo_sdk::chaincode::{builtin, shim, Chaincode, Context, HistoryItem, Response, StateError};

/// `ordo chaincode ...`
#[derive(Subcommand)]
pub enum ChaincodeCommand {
    /// Serve a built-in chaincode (kv, bank) to peers over Ordo's chaincode protocol.
    Serve(ServeArgs),
}

/// `ordo chaincode serve`
#[derive(Args)]
pub struct ServeArgs {
    /// The built-in chaincode to serve.
    #[arg(long)]
    pub builtin: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    pub listen: SocketAddr,
    /// Testing aid: pause this long before every write, so that a test can kill the
    /// server in the middle of an invocation.
    #[arg(long, hide = true, default_value_t = 0)]
    pub pause_before_writes_ms: u64,
}

/// A chaincode that pauses before each write (see `--pause-before-writes-ms`).
struct Paused {
    inner: Arc<dyn Chaincode>,
    pause: Duration,
}

struct PausedContext<'a> {
    inner: &'a mut dyn Context,
    pause: Duration,
}

impl Chaincode for Paused {
    fn invoke(&self, ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Response {
        let mut paused = PausedContext {
            inner: ctx,
            pause: self.pause,
        };
        self.inner.invoke(&mut paused, function, args)
    }
}

impl Context for PausedContext<'_> {
    fn tx_id(&self) -> &str {
        self.inner.tx_id()
    }
    fn get(&mut self, key: &str) -> Result<Option<Bytes>, StateError> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &str, value: Bytes) -> Result<(), StateError> {
        std::thread::sleep(self.pause);
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &str) -> Result<(), StateError> {
        std::thread::sleep(self.pause);
        self.inner.delete(key)
    }
    fn range(&mut self, start: &str, end: &str) -> Result<Vec<(String, Bytes)>, StateError> {
        self.inner.range(start, end)
    }
    fn history(&mut self, key: &str) -> Result<Vec<HistoryItem>, StateError> {
        self.inner.history(key)
    }
    fn set_event(&mut self, name: &str, payload: Bytes) {
        self.inner.set_event(name, payload)
    }
}

/// Runs a chaincode command.
pub async fn run(cmd: ChaincodeCommand) -> anyhow::Result<()> {
    match cmd {
        ChaincodeCommand::Serve(a) => {
            let mut chaincode = builtin::by_name(&a.builtin).with_context(|| {
                format!(
                    "no built-in chaincode {:?} (built-ins: {})",
                    a.builtin,
                    builtin::NAMES.join(", ")
                )
            })?;
            if a.pause_before_writes_ms > 0 {
                chaincode = Arc::new(Paused {
                    inner: chaincode,
                    pause: Duration::from_millis(a.pause_before_writes_ms),
                });
            }
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("binding {}", a.listen))?;
            // The first line is the contract for scripts and tests: the address alone.
            println!("{}", listener.local_addr()?);
            eprintln!(
                "serving chaincode {} on {} (runtime external:{}); Ctrl-C to stop",
                a.builtin,
                listener.local_addr()?,
                listener.local_addr()?
            );
            shim::serve(listener, chaincode, crate::cmd::orderer::shutdown_signal())
                .await
                .context("chaincode server")?;
            eprintln!("chaincode server stopped");
            Ok(())
        }
    }
}
