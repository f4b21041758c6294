//! `ordo probe`: asks a node's operations endpoint whether it is alive (`/healthz`) or
//! ready (`/readyz`) and exits 0 only on `200 OK`.
//!
//! It exists for container health checks: the image carries no curl or wget, and a probe
//! written in the node's own binary speaks exactly the node's operations protocol. It is a
//! plain HTTP/1.0 request over one TCP connection with a deadline, so a hung node fails the
//! probe instead of hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

/// `ordo probe`
#[derive(Args)]
pub struct ProbeArgs {
    /// The node's operations address (its `node.ops_listen_addr`, reached from where the
    /// probe runs).
    #[arg(long, env = "ORDO_PROBE_ADDR", default_value = "127.0.0.1:8443")]
    pub addr: String,
    /// `/healthz` (the process serves requests) or `/readyz` (it is caught up and
    /// should take traffic).
    #[arg(long, default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
    pub path: String,
    /// Give up after this many milliseconds (connect, send and read together).
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// Runs the probe: prints one line saying what the node answered; an error (exit 1)
/// unless it answered 200.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms.max(1));
    let (status, body) = get(&args.addr, &args.path, deadline)
        .with_context(|| format!("probing http://{}{}", args.addr, args.path))?;
    let reason = body.lines().next().unwrap_or("").trim();
    if status != 200 {
        bail!(
            "http://{}{} answered {status}{}",
            args.addr,
            args.path,
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
    }
    println!("http://{}{} answered 200", args.addr, args.path);
    Ok(())
}

/// The largest response read: the operations endpoint's answers are one line.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// One GET: the status code and the body.
fn get(addr: &str, path: &str, deadline: Instant) -> anyhow::Result<(u16, String)> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = TcpStream::connect_timeout(&target, left()).context("connecting")?;
    stream.set_write_timeout(Some(left()))?;
    // One write: `write!` on the unbuffered stream would send each piece of the format
    // as its own segment.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .context("sending the request")?;
    stream.set_read_timeout(Some(left()))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .context("reading the answer")?;
    parse_response(&raw)
}

/// Status code and body of an HTTP/1.x response.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("not an HTTP response: {status_line:?}");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {status_line:?}");
    }
    let code: u16 = code
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_body_are_read() {
        let (code, body) = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\nnot ready",
        )
        .expect("parses");
        assert_eq!(code, 503);
        assert_eq!(body, "not ready");
    }

    #[test]
    fn garbage_is_not_a_response() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    #[test]
    fn a_closed_port_fails_the_probe() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(get(&addr, "/healthz", deadline).is_err());
    }

    #[test]
    fn a_live_endpoint_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        // Another test of this binary may connect here: its "closed" port can be handed
        // out again to this listener. Such a connection is dropped, unanswered.
        let server = std::thread::spawn(move || loop {
            let (mut s, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            if String::from_utf8_lossy(&request).starts_with("GET /readyz HTTP/1.0") {
                s.write_all(b"HTTP/1.1 200 OK\r\n\r\nready").expect("write");
                return;
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let (code, body) = get(&addr, "/readyz", deadline).expect("answers");
        server.join().expect("server thread");
        assert_eq!((code, body.as_str()), (200, "ready"));
    }
}
