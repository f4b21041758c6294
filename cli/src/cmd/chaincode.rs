//! `ordo chaincode serve`: a chaincode server (chaincode as a service) running one of the
//! built-in chaincodes through the SDK's shim, as its own process. A channel uses it
//! with a chaincode definition whose runtime is `external:<host:port>`; it is also the
//! example of an external chaincode: `impl Chaincode` plus `shim::serve_with`.
//!
//! With `--tls-cert`, `--tls-key` and `--tls-ca` the server speaks mutual TLS only (as
//! Fabric's chaincode as a service does); without any of them it serves plaintext and says
//! so loudly, for development networks (`ordo up --insecure`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};

use ordo_sdk::chaincode::{
    builtin, shim, Chaincode, Context, HistoryItem, RangePage, Response, StateError,
};
use ordo_sdk::tls::{ServerTls, TlsFiles};

/// `ordo chaincode ...`
#[derive(Subcommand)]
pub enum ChaincodeCommand {
    /// Serve a built-in chaincode (kv, bank) to peers over Ordo's chaincode protocol.
    ///
    /// Peers call the server when a channel's chaincode definition names the runtime
    /// `external:<host:port>`. The first line printed on stdout is the address served.
    ///
    /// Mutual TLS (as for every Ordo link; required outside development): give the
    /// server a TLS certificate whose subject alternative names hold the host peers dial,
    /// issued by a TLS CA the peers trust (any org of the channel), and the TLS CA(s) of
    /// the org(s) whose peers may call it:
    ///
    ///   ordo crypto issue --crypto crypto --org BankA --name bankcc --role client --hosts 127.0.0.1
    ///   ordo chaincode serve --builtin bank --listen 127.0.0.1:9999 \
    ///       --tls-cert crypto/BankA/bankcc.tls.crt --tls-key crypto/BankA/bankcc.tls.key \
    ///       --tls-ca crypto/BankA/tls/ca.crt
    ///
    /// The server then accepts only TLS 1.3 clients presenting a certificate of one of
    /// those CAs; plaintext clients and certificates of other CAs are refused and logged.
    /// A peer with `[tls] enabled` dials chaincode servers over TLS with its node
    /// certificate and refuses a server whose certificate it does not trust. The key pair
    /// files are re-read when they change (rotation without a restart).
    ///
    /// Without any --tls-* flag the server is plaintext, with a warning: anyone who reaches
    /// it can run the chaincode. Only for development networks (`ordo up --insecure`).
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Approve a chaincode definition (define, upgrade or retire) as one org's admin: the
    /// first approval writes the update file, later ones sign it if it proposes exactly
    /// the same definition. Then `ordo chaincode commit`.
    #[command(disable_version_flag = true)]
    Approve(crate::cmd::lifecycle::ApproveArgs),
    /// Submit an approved definition once the approvals meet the channel's Lifecycle
    /// policy (refused, naming who is missing, until they do).
    Commit(crate::cmd::lifecycle::CommitArgs),
    /// The chaincode definitions in force on a channel.
    List(crate::cmd::lifecycle::ListArgs),
    /// One chaincode definition in force (--name).
    Show(crate::cmd::lifecycle::ListArgs),
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
    /// TLS certificate chain (PEM, leaf first) the server presents; its subject alternative
    /// names must hold the host of the `external:<host:port>` runtime peers dial.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// TLS CA certificate(s) (PEM) whose client certificates are accepted: the TLS CA of
    /// each org whose peers call this server. Repeat the flag or separate with commas.
    #[arg(long, value_name = "FILE", value_delimiter = ',', requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Vec<PathBuf>,
    /// Milliseconds a new connection may take to finish its TLS handshake (plaintext: to
    /// send its first byte).
    #[arg(long, default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,
    /// Connections open at once (each peer holds one); more are refused.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
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
    fn transient(&self) -> &ordo_sdk::chaincode::TransientMap {
        self.inner.transient()
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
    fn range_page(
        &mut self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<RangePage, StateError> {
        self.inner.range_page(start, end, limit)
    }
    fn history(&mut self, key: &str) -> Result<Vec<HistoryItem>, StateError> {
        self.inner.history(key)
    }
    fn set_event(&mut self, name: &str, payload: Bytes) {
        self.inner.set_event(name, payload)
    }
}

impl ServeArgs {
    /// How the server accepts connections, from the flags: mutual TLS when the --tls-*
    /// flags are given (clap makes them all-or-nothing), plaintext otherwise.
    fn options(&self) -> anyhow::Result<shim::ServeOptions> {
        if self.handshake_timeout_ms == 0 || self.max_connections == 0 {
            anyhow::bail!("--handshake-timeout-ms and --max-connections must be positive");
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: self.tls_ca.clone(),
                };
                Some(ServerTls::from_files(&files).context("loading the server's TLS files")?)
            }
            _ => None,
        };
        Ok(shim::ServeOptions {
            tls,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: self.max_connections,
            ..Default::default()
        })
    }
}

/// Runs a chaincode command.
pub async fn run(cmd: ChaincodeCommand) -> anyhow::Result<()> {
    match cmd {
        ChaincodeCommand::Approve(a) => crate::cmd::lifecycle::approve(a).await,
        ChaincodeCommand::Commit(a) => crate::cmd::lifecycle::commit(a).await,
        ChaincodeCommand::List(a) => crate::cmd::lifecycle::list(a).await,
        ChaincodeCommand::Show(a) => {
            if a.name.is_none() {
                anyhow::bail!("say which chaincode: --name NAME (or `ordo chaincode list`)");
            }
            crate::cmd::lifecycle::list(a).await
        }
        ChaincodeCommand::Serve(a) => {
            crate::logging::init("info", "text");
            let options = a.options()?;
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
            let local = listener.local_addr()?;
            // The first line is the contract for scripts and tests: the address alone.
            println!("{local}");
            match &options.tls {
                Some(_) => eprintln!(
                    "serving chaincode {} on {local} over mutual TLS (runtime external:{local}; \
                     clients of {}); Ctrl-C to stop",
                    a.builtin,
                    a.tls_ca
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => eprintln!(
                    "WARNING: serving chaincode {} on {local} in PLAINTEXT (runtime \
                     external:{local}): anyone who reaches this address can run it. Use \
                     --tls-cert, --tls-key and --tls-ca outside development. Ctrl-C to stop",
                    a.builtin
                ),
            }
            shim::serve_with(
                listener,
                chaincode,
                options,
                crate::cmd::orderer::shutdown_signal(),
            )
            .await
            .context("chaincode server")?;
            eprintln!("chaincode server stopped");
            Ok(())
        }
    }
}
