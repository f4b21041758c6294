//! An external chaincode in a few lines: `impl Chaincode`, then `shim::serve_with`.
//!
//! A counter per key: `incr KEY` adds one and answers the new value, `get KEY` answers it.
//! Run it, then define it on a channel with runtime `external:127.0.0.1:9998`:
//!
//! ```sh
//! # mutual TLS: the server's certificate (from `ordo crypto issue --hosts 127.0.0.1`) and
//! # the TLS CA of the org whose peers call it
//! cargo run -p ordo-sdk --example counter_chaincode -- 127.0.0.1:9998 \
//!     crypto/BankA/counter.tls.crt crypto/BankA/counter.tls.key crypto/BankA/tls/ca.crt
//! # plaintext, for development networks only
//! cargo run -p ordo-sdk --example counter_chaincode -- 127.0.0.1:9998
//! ```

use std::sync::Arc;

use bytes::Bytes;
use ordo_sdk::chaincode::{expect_args, shim, text_arg, Chaincode, Context, Response};
use ordo_sdk::tls::{ServerTls, TlsFiles};

struct Counter;

impl Counter {
    fn value(ctx: &mut dyn Context, key: &str) -> Result<u64, Response> {
        Ok(match ctx.get(key)? {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| Response::error(500, format!("{key} holds no number")))?,
            None => 0,
        })
    }

    fn run(ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Result<Response, Response> {
        expect_args(args, 1, "KEY")?;
        let key = text_arg(args, 0, "KEY")?;
        match function {
            "incr" => {
                let next = Self::value(ctx, key)? + 1;
                ctx.put(key, Bytes::from(next.to_string()))?;
                Ok(Response::ok(next.to_string()))
            }
            "get" => Ok(Response::ok(Self::value(ctx, key)?.to_string())),
            other => Err(Response::not_found(format!(
                "no function {other:?} (incr, get)"
            ))),
        }
    }
}

impl Chaincode for Counter {
    fn invoke(&self, ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Response {
        Self::run(ctx, function, args).unwrap_or_else(|e| e)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut argv = std::env::args().skip(1);
    let addr: std::net::SocketAddr = argv
        .next()
        .unwrap_or_else(|| "127.0.0.1:9998".into())
        .parse()?;
    let rest: Vec<std::path::PathBuf> = argv.map(Into::into).collect();
    let mut options = shim::ServeOptions::default();
    if let [cert, key, ca @ ..] = rest.as_slice() {
        options.tls = Some(ServerTls::from_files(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.to_vec(),
        })?);
    } else if !rest.is_empty() {
        return Err("usage: counter_chaincode [ADDR [CERT KEY CA...]]".into());
    }
    eprintln!(
        "counter chaincode on {addr} ({}); Ctrl-C to stop",
        if options.tls.is_some() {
            "mutual TLS"
        } else {
            "PLAINTEXT: development only"
        }
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    shim::serve_with(listener, Arc::new(Counter), options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
