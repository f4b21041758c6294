//! Node configuration files as operators write them: an orderer's and a peer's TOML
//! (`OrdererConfig::parse`, `PeerConfig::parse`), with `ORDO_*` environment overrides,
//! every section and its validation (addresses, paths, limits, TLS files, kafka and raft
//! settings, chaincode bindings).
//!
//! Input: a mode byte, then UTF-8 text. Mode bit 0 picks the peer over the orderer; bit 1
//! also applies an override taken from the text's first line (`NAME=VALUE`), as the
//! environment would.
//!
//! Invariants: a configuration that parses is valid (`validate` accepts it), and parsing
//! is a function of the text (the same text parses the same way twice).

use std::path::Path;

use ordo_orderer::OrdererConfig;
use ordo_peer::node::config::PeerConfig;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((mode, rest)) = crate::fixture::split(data) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let env: Vec<(String, String)> = if mode & 2 != 0 {
        text.lines()
            .next()
            .and_then(|l| l.split_once('='))
            .map(|(k, v)| vec![(k.trim().to_string(), v.trim().to_string())])
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let base = Path::new("/nonexistent-ordo-fuzz-base");
    if mode & 1 == 0 {
        let first = OrdererConfig::parse(text, &env, base, "fuzz.toml");
        let again = OrdererConfig::parse(text, &env, base, "fuzz.toml");
        assert_eq!(
            first.is_ok(),
            again.is_ok(),
            "parsing is not a function of the text"
        );
        if let Ok(c) = first {
            c.validate().expect("a parsed orderer config is valid");
        }
    } else {
        let first = PeerConfig::parse(text, &env, base, "fuzz.toml");
        let again = PeerConfig::parse(text, &env, base, "fuzz.toml");
        assert_eq!(
            first.is_ok(),
            again.is_ok(),
            "parsing is not a function of the text"
        );
    }
}

/// The documented example configurations, with and without an override.
pub fn seeds() -> Vec<Vec<u8>> {
    let orderer = OrdererConfig::example();
    let peer = PeerConfig::example();
    vec![
        [&[0u8][..], orderer.as_bytes()].concat(),
        [&[1u8][..], peer.as_bytes()].concat(),
        [
            &[2u8][..],
            format!("ORDO_NODE_NAME=fuzzed\n{orderer}").as_bytes(),
        ]
        .concat(),
        [
            &[3u8][..],
            format!("ORDO_GATEWAY_ENDORSERS=a:1,b:2\n{peer}").as_bytes(),
        ]
        .concat(),
    ]
}
