//! Cached gRPC channels to other nodes, one per endpoint.
//!
//! A gRPC channel is an HTTP/2 connection that multiplexes any number of calls and
//! reconnects by itself; dialing a new one per call (as the gateway, the readiness probe
//! and external chaincode calls used to) pays a TCP and a TLS handshake every time. The
//! pool hands out one lazily connecting channel per endpoint instead, over the node's
//! [`Transport`], so a rotated client certificate is used by the next reconnect.

use std::collections::HashMap;
use std::sync::Mutex;

use ordo_sdk::transport::{connect_lazy, ConnectOptions, Transport};
use tonic::transport::Channel;

/// Endpoints the pool keeps channels for; past it, the least recently added is dropped
/// (an attacker-influenced list of endpoints must not grow memory without bound).
pub const MAX_POOLED_ENDPOINTS: usize = 1024;

/// One channel per endpoint, shared by every caller of the node.
#[derive(Debug)]
pub struct ClientPool {
    transport: Transport,
    options: ConnectOptions,
    channels: Mutex<Pooled>,
}

#[derive(Debug, Default)]
struct Pooled {
    by_addr: HashMap<String, Channel>,
    order: std::collections::VecDeque<String>,
}

impl ClientPool {
    /// A pool dialing over `transport`.
    pub fn new(transport: Transport) -> Self {
        Self::with_options(transport, ConnectOptions::default())
    }

    /// A pool dialing over `transport` with `options`.
    pub fn with_options(transport: Transport, options: ConnectOptions) -> Self {
        Self {
            transport,
            options,
            channels: Mutex::new(Pooled::default()),
        }
    }

    /// The transport the pool dials over.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The channel to `addr` (`host:port`), created on first use. The connection is opened
    /// by the first call on it; a call on an endpoint that is down fails with UNAVAILABLE.
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut pooled = match self.channels.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        if let Some(ch) = pooled.by_addr.get(addr) {
            return Ok(ch.clone());
        }
        let ch = connect_lazy(addr, &self.transport, self.options)?;
        if pooled.by_addr.len() >= MAX_POOLED_ENDPOINTS {
            if let Some(oldest) = pooled.order.pop_front() {
                pooled.by_addr.remove(&oldest);
            }
        }
        pooled.by_addr.insert(addr.to_string(), ch.clone());
        pooled.order.push_back(addr.to_string());
        Ok(ch)
    }

    /// Forgets the channel to `addr` (after it misbehaved: the next call dials anew).
    pub fn evict(&self, addr: &str) {
        let mut pooled = match self.channels.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        if pooled.by_addr.remove(addr).is_some() {
            pooled.order.retain(|a| a != addr);
        }
    }

    /// Endpoints with a channel now.
    pub fn len(&self) -> usize {
        match self.channels.lock() {
            Ok(p) => p.by_addr.len(),
            Err(p) => p.into_inner().by_addr.len(),
        }
    }

    /// Whether the pool holds no channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
