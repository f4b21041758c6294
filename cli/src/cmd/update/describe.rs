//! A config, and the change between two, in lines a bank's operator reads before
//! signing.

use super::*;

/// What the config names: orgs and consenters.
pub fn describe_config(c: &ChannelConfig) -> Vec<String> {
    let orgs: Vec<&str> = c.orgs.iter().map(|o| o.name.as_str()).collect();
    let mut lines = vec![format!("orgs: {}", orgs.join(", "))];
    if let Some(o) = &c.orderer {
        let consenters: Vec<String> = o
            .consenters
            .iter()
            .map(|k| format!("{} ({}, {})", k.id, cert_org(&k.certificate), k.endpoint))
            .collect();
        lines.push(format!(
            "{} consenters: {}",
            o.consensus_type,
            if consenters.is_empty() {
                "none".into()
            } else {
                consenters.join(", ")
            }
        ));
    }
    lines
}

/// What changes from `cur` to `new`, one line per change, for the people who sign.
pub fn describe_change(cur: &ChannelConfig, new: &ChannelConfig) -> Vec<String> {
    let mut out = Vec::new();
    for o in &new.orgs {
        match cur.orgs.iter().find(|c| c.name == o.name) {
            None => out.push(format!(
                "add org {} (CA key {}, {} TLS CA certificate(s), anchor peers [{}])",
                o.name,
                o.root_public_keys
                    .iter()
                    .map(hex::encode)
                    .collect::<Vec<_>>()
                    .join(", "),
                o.tls_root_certs.len(),
                o.anchor_peers.join(", ")
            )),
            Some(c) if c != o => {
                let mut what = Vec::new();
                if c.root_public_keys != o.root_public_keys {
                    what.push("CA keys".to_string());
                }
                if c.tls_root_certs != o.tls_root_certs {
                    what.push("TLS CA certificates".to_string());
                }
                if c.tls_revoked_cert_hashes != o.tls_revoked_cert_hashes {
                    what.push("revoked TLS certificates".to_string());
                }
                if c.anchor_peers != o.anchor_peers {
                    what.push(format!(
                        "anchor peers [{}] -> [{}]",
                        c.anchor_peers.join(", "),
                        o.anchor_peers.join(", ")
                    ));
                }
                out.push(format!("change org {}: {}", o.name, what.join(", ")));
            }
            Some(_) => {}
        }
    }
    for c in &cur.orgs {
        if !new.orgs.iter().any(|o| o.name == c.name) {
            out.push(format!("remove org {}", c.name));
        }
    }
    let consenters = |c: &ChannelConfig| {
        c.orderer
            .as_ref()
            .map(|o| o.consenters.clone())
            .unwrap_or_default()
    };
    let (before, after) = (consenters(cur), consenters(new));
    for k in &after {
        match before.iter().find(|b| b.id == k.id) {
            None => out.push(format!(
                "add consenter {} of {} at {}",
                k.id,
                cert_org(&k.certificate),
                k.endpoint
            )),
            Some(b) if b != k => {
                let mut what = Vec::new();
                if b.endpoint != k.endpoint {
                    what.push(format!("endpoint {} -> {}", b.endpoint, k.endpoint));
                }
                if b.certificate != k.certificate {
                    what.push("new identity certificate".into());
                }
                if b.tls_cert != k.tls_cert {
                    what.push("new TLS certificate".into());
                }
                out.push(format!("update consenter {}: {}", k.id, what.join(", ")));
            }
            Some(_) => {}
        }
    }
    for b in &before {
        if !after.iter().any(|k| k.id == b.id) {
            out.push(format!("remove consenter {}", b.id));
        }
    }
    let settings = |c: &ChannelConfig| {
        c.orderer.as_ref().map(|o| {
            let mut o = o.clone();
            o.consenters.clear();
            o
        })
    };
    if settings(cur) != settings(new) {
        out.push("change orderer settings (batch size, timeout, ack mode, kafka or raft)".into());
    }
    if cur.tx_validity_window_s != new.tx_validity_window_s {
        out.push(format!(
            "change the tx validity window: {} -> {}",
            crate::cmd::channel::describe_window(cur.tx_validity_window_s),
            crate::cmd::channel::describe_window(new.tx_validity_window_s)
        ));
    }
    for (name, a, b) in [
        ("Readers", &cur.readers, &new.readers),
        ("Writers", &cur.writers, &new.writers),
        ("Admins", &cur.admins, &new.admins),
        (
            "BlockValidation",
            &cur.block_validation,
            &new.block_validation,
        ),
        ("Lifecycle", &cur.lifecycle, &new.lifecycle),
    ] {
        if a != b {
            out.push(format!("change the {name} policy"));
        }
    }
    for cc in &new.chaincodes {
        let def = crate::cmd::lifecycle::describe_definition(cc);
        match cur.chaincodes.iter().find(|c| c.name == cc.name) {
            None => out.push(format!("define chaincode {def}")),
            Some(c) if c != cc && cc.retired && !c.retired => {
                out.push(format!("retire chaincode {def}"))
            }
            Some(c) if c != cc => out.push(format!("upgrade chaincode {def}")),
            Some(_) => {}
        }
    }
    for cc in &cur.chaincodes {
        if !new.chaincodes.iter().any(|c| c.name == cc.name) {
            out.push(format!("remove chaincode {}", cc.name));
        }
    }
    if out.is_empty() {
        out.push("no change (only the sequence)".into());
    }
    out
}
