//! The control socket beside `network.json`: one supervisor per network, bounded
//! connections and request sizes, each request handed to the dispatcher.

use super::*;

/// `ordo up`'s end of the control channel: the bound socket, served from the moment it is
/// bound (requests before the network is ready are answered "still starting"), and
/// removed when dropped.
pub struct ControlSocket {
    pub(super) path: PathBuf,
    pub(super) requests: mpsc::Receiver<Inbound>,
    pub(super) serving: Arc<AtomicBool>,
    pub(super) accept: tokio::task::JoinHandle<()>,
}

/// Fails when another `ordo up` answers on `DIR/control.sock`: two supervisors of one
/// network would fight over its ports and ledgers. Removes a socket left by an `ordo up`
/// that was killed.
#[cfg(unix)]
pub fn refuse_second_supervisor(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(CONTROL_SOCKET);
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        bail!(
            "another `ordo up` is already running the network in {} (it answers on {}); \
             stop it (Ctrl-C) before starting this one, or use another --dir",
            dir.display(),
            path.display()
        );
    }
    std::fs::remove_file(&path).with_context(|| format!("removing the stale {}", path.display()))
}

/// No control socket, so nothing to check, on this platform.
#[cfg(not(unix))]
pub fn refuse_second_supervisor(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

impl ControlSocket {
    /// Binds `DIR/control.sock` (after [`refuse_second_supervisor`]) and serves it.
    #[cfg(unix)]
    pub fn bind(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CONTROL_SOCKET);
        let listener = tokio::net::UnixListener::bind(&path).with_context(|| {
            format!(
                "binding the control socket {} (Unix socket paths are limited to about 100 \
                 bytes: a shorter --dir helps)",
                path.display()
            )
        })?;
        // Whoever can connect can stop nodes: only the owner, like the keys beside it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
        let (tx, requests) = mpsc::channel(DISPATCH_QUEUE_MAX);
        let serving = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn(accept_loop(listener, tx, serving.clone()));
        Ok(Self {
            path,
            requests,
            serving,
            accept,
        })
    }

    /// No control socket on this platform.
    #[cfg(not(unix))]
    pub fn bind(_dir: &Path) -> anyhow::Result<Self> {
        bail!("the control socket needs Unix domain sockets")
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
pub(super) async fn accept_loop(
    listener: tokio::net::UnixListener,
    tx: mpsc::Sender<Inbound>,
    serving: Arc<AtomicBool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // EMFILE and the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let busy = Reply::Error(format!(
                    "`ordo up` is already serving {CONNECTIONS_MAX} control requests; try again"
                ));
                let _ = stream.write_all(busy.to_line().as_bytes()).await;
            });
            continue;
        };
        let tx = tx.clone();
        let serving = serving.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, tx, serving).await;
        });
    }
}

/// Reads one request, hands it to the dispatcher, writes its reply.
#[cfg(unix)]
pub(super) async fn serve_connection(
    mut stream: tokio::net::UnixStream,
    tx: mpsc::Sender<Inbound>,
    serving: Arc<AtomicBool>,
) {
    let mut line = String::new();
    let read = tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        tokio::io::BufReader::new(&mut stream)
            .take(REQUEST_BYTES_MAX as u64)
            .read_line(&mut line),
    )
    .await;
    let reply = match read {
        Err(_) => Reply::Error(format!("no request line within {REQUEST_READ_TIMEOUT:?}")),
        Ok(Err(e)) => Reply::Error(format!("reading the request: {e}")),
        Ok(Ok(_)) if !line.ends_with('\n') => Reply::Error(format!(
            "a request is one line of at most {REQUEST_BYTES_MAX} bytes"
        )),
        Ok(Ok(_)) => match Request::parse(&line) {
            Err(e) => Reply::Error(e),
            Ok(_) if !serving.load(Ordering::Acquire) => Reply::Error(
                "`ordo up` is starting or stopping the network; try again once it has printed \
                 its ready line"
                    .into(),
            ),
            Ok(req) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send((req, reply_tx)).await.is_err() {
                    Reply::Error("`ordo up` is stopping".into())
                } else {
                    reply_rx
                        .await
                        .unwrap_or_else(|_| Reply::Error("`ordo up` is stopping".into()))
                }
            }
        },
    };
    let _ = stream.write_all(reply.to_line().as_bytes()).await;
}

// ---------------------------------------------------------------------------------------
// Supervisor
// ---------------------------------------------------------------------------------------
