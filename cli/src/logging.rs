//! Logging set-up for long-running commands.

use std::io::IsTerminal;
use std::path::Path;

use tracing::info;
use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber: `RUST_LOG` wins over `filter`; `json` selects JSON
/// lines, anything else human-readable text. Logs go to stderr, with colours only when
/// stderr is a terminal (a log file or a collector gets plain text). Lines that cannot be
/// written (stderr closed) are dropped.
pub fn init(filter: &str, format: &str) {
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(std::io::stderr().is_terminal())
        // A write error must not panic: tracing-subscriber would report it with
        // `eprint!`, which panics when stderr is a closed pipe, and a panic inside the
        // task that handles SIGTERM left the node unable to stop.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The first line a node logs: which binary version runs, from which config file, on
/// which data directory — what an operator needs first when reading a log.
pub fn starting(kind: &str, config: &Path, data_dir: &Path) {
    let config = config
        .canonicalize()
        .unwrap_or_else(|_| config.to_path_buf());
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.display(),
        data_dir = %data_dir.display(),
        pid = std::process::id(),
        transparent_huge_pages = crate::memory::transparent_huge_pages_state(),
        "starting {kind}"
    );
}
