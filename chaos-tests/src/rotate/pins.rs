//! The pin checks after a rotation: every consenter's renewed TLS certificate pinned in
//! the channel's newest config, read from a delivered block.

use super::*;

/// Checks that the channel config in force pins every consenter's renewed certificate —
/// the one in its files now, not the one it had before (`originals`). An orderer that was
/// restarted last may still be catching up with the newest config block, so the check
/// passes as soon as one orderer serves a config with every pin right, and reports what it
/// saw last if none does within [`PIN_WAIT`].
pub(super) async fn check_pins(
    n: &mut Nemesis<'_>,
    originals: &[Vec<u8>],
    found: &mut Vec<Violation>,
) {
    let crypto = n.net.crypto_dir().to_path_buf();
    let renewed: Vec<Vec<u8>> = (0..originals.len())
        .map(|i| leaf_der(&tls_files(&crypto, n.net.orderers[i].org, "orderer").cert))
        .collect();
    let deadline = Instant::now() + PIN_WAIT;
    let mut last = vec![String::from("no orderer served the channel config")];
    loop {
        for o in &n.net.orderers {
            match newest_config(&o.addr, &n.net.client, &n.net.transport).await {
                Ok(config) => {
                    let wrong = wrong_pins(&config, originals, &renewed);
                    if wrong.is_empty() {
                        return;
                    }
                    last = wrong
                        .into_iter()
                        .map(|w| format!("{}: {w}", o.proc.name))
                        .collect();
                }
                Err(e) => last = vec![format!("{}: {e}", o.proc.name)],
            }
        }
        if Instant::now() >= deadline {
            found.extend(last.into_iter().map(|w| {
                Violation::new(
                    PROPERTY,
                    format!("after the rotation, within {PIN_WAIT:?}: {w}"),
                )
            }));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What is wrong with the consenters' pins in `config`: consenter `i` must pin `renewed[i]`
/// (the certificate in its files now), which differs from `originals[i]`.
fn wrong_pins(config: &ChannelConfig, originals: &[Vec<u8>], renewed: &[Vec<u8>]) -> Vec<String> {
    let consenters = config
        .orderer
        .as_ref()
        .map(|o| o.consenters.as_slice())
        .unwrap_or_default();
    let mut wrong = Vec::new();
    for (i, (original, now_file)) in originals.iter().zip(renewed).enumerate() {
        let id = format!("orderer{i}");
        match consenters.iter().find(|c| c.id == id) {
            None => wrong.push(format!("{id} is no longer a consenter")),
            Some(c) if c.tls_cert.as_ref() == now_file.as_slice() && now_file != original => {}
            Some(c) => wrong.push(format!(
                "config sequence {} pins a TLS certificate for {id} that is not its renewed one (it is the original: {})",
                config.sequence,
                c.tls_cert.as_ref() == original.as_slice()
            )),
        }
    }
    wrong
}

/// The channel config in force on the orderer at `addr`: the newest block's last config.
async fn newest_config(
    addr: &str,
    reader: &Identity,
    transport: &Transport,
) -> Result<ChannelConfig, String> {
    let newest = one_block(addr, reader, transport, None).await?;
    let last_config = newest.metadata.as_ref().map_or(0, |m| m.last_config);
    let block = if ordo_proto::block::number(&newest) == last_config {
        newest
    } else {
        one_block(addr, reader, transport, Some(last_config)).await?
    };
    ordo_proto::config::config_from_block(&block).map_err(|e| e.to_string())
}

/// Block `number` (`None`: the newest) of the channel, over Deliver.
async fn one_block(
    addr: &str,
    reader: &Identity,
    transport: &Transport,
    number: Option<u64>,
) -> Result<ordo_proto::pb::common::Block, String> {
    let conn = ordo_sdk::orderer::connect(addr, transport)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = ordo_sdk::orderer::broadcast_client(conn);
    let at = ordo_sdk::orderer::position(number);
    let req = ordo_sdk::orderer::seek_request(
        reader,
        CHANNEL,
        at,
        Some(at),
        SeekBehavior::FailIfNotReady,
    );
    let mut stream = tokio::time::timeout(Duration::from_secs(5), client.deliver(req))
        .await
        .map_err(|_| "Deliver timed out".to_string())?
        .map_err(|e| e.to_string())?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .map_err(|_| "no block within 5 s".to_string())?;
    match first {
        Some(Ok(resp)) => resp
            .block
            .ok_or_else(|| "Deliver sent a response without a block".into()),
        Some(Err(status)) => Err(status.to_string()),
        None => Err("Deliver ended without a block".into()),
    }
}
