//! Which source to ask next: round-robin over the channel's orderer endpoints (when the
//! pull takes them from the configuration) and the sources given, skipping sources that
//! recently served a block that failed verification.
//!
//! Pure: time comes in as milliseconds from any monotonic origin the caller picks (the
//! driver uses the instant its pull started), and nothing here reads a clock.

use std::collections::HashMap;

use ordo_proto::pb::common::ChannelConfig;

/// Most endpoints a set holds; further ones are ignored. A channel has a handful of
/// orderers, so this only guards against a configuration gone wrong.
pub const MAX_ENDPOINTS: usize = 256;

/// The orderer endpoints (`host:port`) a channel configuration names, in its order: the
/// `orderer.consenters[*].endpoint` fields (empty ones skipped).
pub fn channel_endpoints(config: &ChannelConfig) -> Vec<String> {
    config
        .orderer
        .iter()
        .flat_map(|o| o.consenters.iter())
        .map(|c| c.endpoint.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// The sources a pull may use, and the round-robin choice among them.
///
/// The list is the channel's endpoints (replaced whenever a config block changes them)
/// followed by the sources given (a peer's static endpoints, a raft node's consenters),
/// without repeats, at most [`MAX_ENDPOINTS`].
/// [`EndpointSet::next`] walks it round-robin, starting with the first, and skips an
/// endpoint for `avoid_ms` after [`EndpointSet::avoid`]; when every endpoint is avoided
/// it picks the one avoided longest ago, so a peer whose orderers all misbehaved still
/// keeps trying (it never commits what it cannot verify, so trying is safe).
#[derive(Debug, Clone)]
pub struct EndpointSet {
    channel: Vec<String>,
    static_endpoints: Vec<String>,
    /// `channel` then `static_endpoints`, deduplicated.
    all: Vec<String>,
    /// Index in `all` where the next search starts.
    cursor: usize,
    /// The endpoint `next` returned last, to keep the rotation across list changes.
    last: Option<String>,
    /// Endpoint → when it was last avoided (ms). Only endpoints of `all` are kept.
    avoided_at_ms: HashMap<String, u64>,
    avoid_ms: u64,
}

impl EndpointSet {
    /// A set holding only `static_endpoints` (until [`EndpointSet::set_channel_endpoints`]);
    /// an avoided endpoint is skipped for `avoid_ms` milliseconds.
    pub fn new(static_endpoints: Vec<String>, avoid_ms: u64) -> Self {
        let mut set = Self {
            channel: Vec::new(),
            static_endpoints,
            all: Vec::new(),
            cursor: 0,
            last: None,
            avoided_at_ms: HashMap::new(),
            avoid_ms,
        };
        set.rebuild();
        set
    }

    /// Replaces the channel's endpoints (from a new channel configuration). The rotation
    /// continues after the endpoint used last if it is still listed, else from the start;
    /// avoidance of endpoints still listed is kept.
    pub fn set_channel_endpoints(&mut self, endpoints: Vec<String>) {
        self.channel = endpoints;
        self.rebuild();
    }

    /// Every endpoint, in rotation order.
    pub fn endpoints(&self) -> &[String] {
        &self.all
    }

    /// The endpoint to connect to next at `now_ms`, or `None` when there is none at all.
    pub fn next(&mut self, now_ms: u64) -> Option<&str> {
        let len = self.all.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor % len;
        let free = (0..len)
            .map(|i| (start + i) % len)
            .find(|&i| !self.is_avoided(&self.all[i], now_ms));
        let index = match free {
            Some(i) => i,
            // All avoided: the one avoided longest ago; ties go to rotation order.
            None => (0..len)
                .map(|i| (start + i) % len)
                .min_by_key(|&i| self.avoided_at_ms.get(&self.all[i]).copied())
                .unwrap_or(start),
        };
        self.cursor = (index + 1) % len;
        self.last = Some(self.all[index].clone());
        Some(&self.all[index])
    }

    /// Avoids `endpoint` from `now_ms` on for the configured duration (it served a block
    /// that failed verification). An endpoint not in the set is ignored.
    pub fn avoid(&mut self, endpoint: &str, now_ms: u64) {
        if self.all.iter().any(|e| e == endpoint) {
            self.avoided_at_ms.insert(endpoint.to_string(), now_ms);
        }
    }

    /// Whether `endpoint` is avoided at `now_ms`.
    pub fn is_avoided(&self, endpoint: &str, now_ms: u64) -> bool {
        self.avoided_at_ms
            .get(endpoint)
            .is_some_and(|&at| now_ms < at.saturating_add(self.avoid_ms))
    }

    fn rebuild(&mut self) {
        let mut all: Vec<String> = Vec::new();
        for e in self.channel.iter().chain(self.static_endpoints.iter()) {
            let e = e.trim();
            if !e.is_empty() && all.len() < MAX_ENDPOINTS && !all.iter().any(|x| x == e) {
                all.push(e.to_string());
            }
        }
        self.avoided_at_ms.retain(|e, _| all.contains(e));
        self.cursor = self
            .last
            .as_ref()
            .and_then(|last| all.iter().position(|e| e == last))
            .map_or(0, |i| i + 1);
        self.all = all;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_proto::pb::common::{Consenter, OrdererConfig};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn take(set: &mut EndpointSet, now_ms: u64, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| set.next(now_ms).map(str::to_string).unwrap_or_default())
            .collect()
    }

    #[test]
    fn channel_endpoints_come_from_the_consenters() {
        let config = ChannelConfig {
            orderer: Some(OrdererConfig {
                consenters: vec![
                    Consenter {
                        endpoint: "o1:7050".into(),
                        ..Default::default()
                    },
                    Consenter::default(),
                    Consenter {
                        endpoint: " o2:7050 ".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(channel_endpoints(&config), strings(&["o1:7050", "o2:7050"]));
        assert!(channel_endpoints(&ChannelConfig::default()).is_empty());
    }

    #[test]
    fn an_empty_set_has_no_next_endpoint() {
        let mut set = EndpointSet::new(vec![], 1000);
        assert_eq!(set.next(0), None);
        set.set_channel_endpoints(strings(&["", "  "]));
        assert_eq!(set.next(0), None);
    }

    #[test]
    fn round_robin_over_channel_then_static_endpoints_without_repeats() {
        let mut set = EndpointSet::new(strings(&["s1", "b"]), 1000);
        set.set_channel_endpoints(strings(&["a", "b", "a"]));
        assert_eq!(set.endpoints(), strings(&["a", "b", "s1"]).as_slice());
        assert_eq!(take(&mut set, 0, 5), strings(&["a", "b", "s1", "a", "b"]));
    }

    #[test]
    fn an_avoided_endpoint_is_skipped_until_its_time_is_up() {
        let mut set = EndpointSet::new(strings(&["a", "b", "c"]), 1000);
        assert_eq!(set.next(0), Some("a"));
        set.avoid("a", 10);
        assert!(set.is_avoided("a", 1009));
        assert!(!set.is_avoided("a", 1010));
        assert_eq!(take(&mut set, 500, 4), strings(&["b", "c", "b", "c"]));
        // At 1010 the avoidance has expired: a is back in the rotation.
        assert_eq!(take(&mut set, 1010, 3), strings(&["a", "b", "c"]));
    }

    #[test]
    fn when_all_are_avoided_the_least_recently_avoided_is_picked() {
        let mut set = EndpointSet::new(strings(&["a", "b", "c"]), 1000);
        set.avoid("b", 1);
        set.avoid("c", 2);
        set.avoid("a", 3);
        assert_eq!(set.next(10), Some("b"));
        set.avoid("b", 11);
        assert_eq!(set.next(12), Some("c"));
        set.avoid("c", 13);
        assert_eq!(set.next(14), Some("a"));
    }

    #[test]
    fn avoiding_an_unknown_endpoint_does_nothing() {
        let mut set = EndpointSet::new(strings(&["a"]), 1000);
        set.avoid("zzz", 0);
        assert!(!set.is_avoided("zzz", 1));
        assert_eq!(set.next(1), Some("a"));
    }

    #[test]
    fn a_new_channel_list_keeps_the_rotation_and_the_avoidance() {
        let mut set = EndpointSet::new(vec![], 1000);
        set.set_channel_endpoints(strings(&["a", "b", "c"]));
        assert_eq!(take(&mut set, 0, 2), strings(&["a", "b"]));
        set.avoid("c", 0);
        // b was used last: the rotation goes on after b; c stays avoided.
        set.set_channel_endpoints(strings(&["b", "c", "d"]));
        assert_eq!(take(&mut set, 1, 3), strings(&["d", "b", "d"]));
        // The endpoint used last disappears: start again from the beginning.
        set.set_channel_endpoints(strings(&["x", "y"]));
        assert_eq!(take(&mut set, 1, 2), strings(&["x", "y"]));
        // c left the list, so its avoidance is forgotten when it comes back.
        set.set_channel_endpoints(strings(&["c"]));
        assert!(!set.is_avoided("c", 1));
    }

    #[test]
    fn the_set_is_bounded() {
        let many: Vec<String> = (0..MAX_ENDPOINTS + 10).map(|i| format!("o{i}")).collect();
        let set = EndpointSet::new(many, 1000);
        assert_eq!(set.endpoints().len(), MAX_ENDPOINTS);
    }
}
