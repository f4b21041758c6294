//! A fault-injecting TCP proxy in front of each consenter.
//!
//! Every raft consenter's endpoint in the channel config is its proxy's address, and each
//! node's connections to the others leave from its own loopback address
//! (`[node] cluster_source_addr = 127.0.0.<10+i>`), so a proxy knows for every connection
//! which node is on the other end. [`Links`] holds the rules all proxies share: which
//! directions (`from` node → `to` node) are cut, an added delay, and a generation counter
//! whose bump resets every open connection.
//!
//! A cut holds the bytes rather than dropping them, as a real partition does to TCP: the
//! sender's window fills, keepalives go unanswered, and when the cut heals whatever is still
//! buffered flows on — unless a side gave up on the connection first. Cutting one direction
//! only is an asymmetric partition. TCP cannot lose or reorder bytes within a connection;
//! loss shows up as resets ([`Links::reset_connections`]) and reordering as what a new
//! connection overtakes (the seeded simulations model loss, duplication and reordering of
//! single messages).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a held chunk re-checks the rules.
const HOLD_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct Rules {
    /// Cut directions: data from `.0` to `.1` is held.
    cut: HashSet<(usize, usize)>,
    /// Added to every chunk in both directions.
    delay: Duration,
    /// Connections from addresses that are no node's (peers) are held.
    external_cut: bool,
}

/// The link rules shared by every proxy of a network. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Links {
    rules: Arc<RwLock<Rules>>,
    /// Source address → node index.
    nodes: Arc<HashMap<IpAddr, usize>>,
    reset: Arc<watch::Sender<u64>>,
}

impl Links {
    /// Rules for nodes whose connections leave from `sources[i]`.
    pub fn new(sources: &[IpAddr]) -> Self {
        let nodes = sources.iter().enumerate().map(|(i, ip)| (*ip, i)).collect();
        let (reset, _) = watch::channel(0);
        Self {
            rules: Arc::new(RwLock::new(Rules::default())),
            nodes: Arc::new(nodes),
            reset: Arc::new(reset),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Rules> {
        self.rules.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rules> {
        self.rules.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds data flowing from node `from` to node `to` (one direction).
    pub fn cut_one_way(&self, from: usize, to: usize) {
        self.write().cut.insert((from, to));
    }

    /// Holds data between `a` and `b` in both directions.
    pub fn cut(&self, a: usize, b: usize) {
        let mut r = self.write();
        r.cut.insert((a, b));
        r.cut.insert((b, a));
    }

    /// Cuts every link between different groups (a node in no group is cut from all).
    pub fn partition(&self, groups: &[BTreeSet<usize>], nodes: usize) {
        let group_of = |n: usize| groups.iter().position(|g| g.contains(&n));
        let mut r = self.write();
        for a in 0..nodes {
            for b in 0..nodes {
                if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                    r.cut.insert((a, b));
                }
            }
        }
    }

    /// Cuts `node` from every other node.
    pub fn isolate(&self, node: usize, nodes: usize) {
        let mut r = self.write();
        for other in (0..nodes).filter(|o| *o != node) {
            r.cut.insert((node, other));
            r.cut.insert((other, node));
        }
    }

    /// Cuts every connection that does not come from a node (the peers': they reach the
    /// orderers through these proxies): open ones hang, new ones are closed at once.
    pub fn cut_external(&self) {
        self.write().external_cut = true;
    }

    /// Adds `delay` to every chunk on every link.
    pub fn set_delay(&self, delay: Duration) {
        self.write().delay = delay;
    }

    /// Restores every link: no cuts, no delay.
    pub fn heal(&self) {
        let mut r = self.write();
        r.cut.clear();
        r.delay = Duration::ZERO;
        r.external_cut = false;
    }

    /// Drops every open connection through any proxy (both ends see the connection
    /// close, as after a reset); new connections are accepted as usual.
    pub fn reset_connections(&self) {
        self.reset.send_modify(|g| *g += 1);
    }

    /// Whether data from `from` to `to` is held now.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.read().cut.contains(&(from, to))
    }

    fn held(&self, direction: Direction) -> bool {
        match direction {
            Direction::Nodes(a, b) => self.is_cut(a, b),
            Direction::External => self.read().external_cut,
        }
    }

    fn delay(&self) -> Duration {
        self.read().delay
    }

    fn node_of(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.get(&ip).copied()
    }
}

/// Which way the bytes of one half of a connection go.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// From node `.0` to node `.1`.
    Nodes(usize, usize),
    /// To or from something that is no node (a peer).
    External,
}

/// One proxy: listens on `listen`, forwards to the node it stands for.
#[derive(Debug)]
pub struct Proxy {
    /// The address the channel config names for the node.
    pub listen: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy for node `node` at `listen`, forwarding to `target`.
    pub async fn start(
        node: usize,
        listen: SocketAddr,
        target: SocketAddr,
        links: Links,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                let links = links.clone();
                tokio::spawn(async move {
                    let source = links.node_of(peer.ip());
                    if source.is_none() && links.held(Direction::External) {
                        // Cut off: new connections are refused at once (held ones hang).
                        return;
                    }
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        relay(inbound, outbound, source, node, links).await;
                    }
                });
            }
        });
        Ok(Self { listen, task })
    }
}

/// Relays one connection until either side closes or the links are reset.
async fn relay(
    inbound: TcpStream,
    outbound: TcpStream,
    source: Option<usize>,
    target: usize,
    links: Links,
) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let mut reset = links.reset.subscribe();
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let (forward, backward) = match source {
        Some(s) => (Direction::Nodes(s, target), Direction::Nodes(target, s)),
        None => (Direction::External, Direction::External),
    };
    let forward = pump(in_read, out_write, forward, links.clone());
    let backward = pump(out_read, in_write, backward, links);
    tokio::select! {
        _ = async { tokio::join!(forward, backward) } => {}
        _ = reset.changed() => {}
    }
}

/// Copies one direction.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: Direction,
    links: Links,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while links.held(direction) {
            tokio::time::sleep(HOLD_POLL).await;
        }
        let delay = links.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_exactly_the_links_between_groups() {
        let ips: Vec<IpAddr> = (0..3).map(|i| IpAddr::from([127, 0, 0, 10 + i])).collect();
        let links = Links::new(&ips);
        links.partition(&[BTreeSet::from([0]), BTreeSet::from([1, 2])], 3);
        assert!(links.is_cut(0, 1) && links.is_cut(1, 0) && links.is_cut(2, 0));
        assert!(!links.is_cut(1, 2) && !links.is_cut(2, 1));
        links.heal();
        assert!(!links.is_cut(0, 1));
        links.cut_one_way(2, 0);
        assert!(links.is_cut(2, 0) && !links.is_cut(0, 2));
        assert_eq!(links.node_of(IpAddr::from([127, 0, 0, 11])), Some(1));
        assert_eq!(links.node_of(IpAddr::from([127, 0, 0, 1])), None);
    }

    #[tokio::test]
    async fn a_cut_holds_bytes_and_healing_delivers_them() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 16];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let me = IpAddr::from([127, 0, 0, 10]);
        let links = Links::new(&[me, IpAddr::from([127, 0, 0, 11])]);
        let proxy = Proxy::start(
            1,
            "127.0.0.1:0".parse().expect("addr"),
            target,
            links.clone(),
        )
        .await
        .expect("proxy");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(me, 0)).expect("bind source");
        let mut s = socket.connect(proxy.listen).await.expect("connect");

        let mut b = [0u8; 4];
        s.write_all(b"ping").await.expect("write");
        s.read_exact(&mut b).await.expect("echo");
        assert_eq!(&b, b"ping");

        links.cut(0, 1);
        s.write_all(b"pong").await.expect("write");
        let held = tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut b)).await;
        assert!(held.is_err(), "nothing passes a cut");
        links.heal();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .expect("delivered after healing")
            .expect("read");
        assert_eq!(&b, b"pong");

        links.reset_connections();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a reset closes the connection");
    }
}
