//! Bootstrap with no shared filesystem, over real `ordo orderer` processes and mutual TLS:
//! each bank makes its keys in a directory of its own (standing for its own machine) and
//! exports only an org bundle; one admin assembles the raft channel's genesis block from
//! the bundles; each bank's orderer runs from its own directory and trusts the others
//! only through the channel config. A fourth bank then joins the running channel (its
//! org, then its orderer as a consenter): each update is a file passed from bank to bank,
//! each bank's admin signs it with its own key, and one submits it. The bad paths: a
//! bundle carrying a private key, a tampered bundle, an update with too few signatures
//! (refused by the orderer with FORBIDDEN), a second signature by the same admin, a
//! damaged update file.

mod common;

use std::path::{Path, PathBuf};

use common::raft::*;
use common::*;
use ordo_proto::identity::Identity;

const CHANNEL: &str = "consortium";

/// One bank's machine: a directory nobody else reads, holding its crypto directory and
/// whatever files were sent to it.
struct Bank {
    name: &'static str,
    machine: Consortium,
}

impl Bank {
    /// `ordo crypto init` for this bank alone, its orderer and peer TLS certificates
    /// naming their own hosts.
    fn new(name: &'static str) -> Self {
        let machine = Consortium {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let lower = name.to_ascii_lowercase();
        let orderer_hosts = format!("localhost,127.0.0.1,orderer.{lower}.example");
        let peer_hosts = format!("localhost,127.0.0.1,peer.{lower}.example");
        run_ok(&[
            "crypto",
            "init",
            "--orgs",
            name,
            "--out",
            machine.crypto().to_str().expect("utf8"),
            "--orderer-hosts",
            &orderer_hosts,
            "--peer-hosts",
            &peer_hosts,
        ]);
        Self { name, machine }
    }

    fn crypto(&self) -> String {
        self.machine.crypto().to_str().expect("utf8").to_string()
    }

    fn path(&self, file: &str) -> PathBuf {
        self.machine.dir.path().join(file)
    }

    fn file(&self, file: &str) -> String {
        self.path(file).to_str().expect("utf8").to_string()
    }

    fn admin(&self) -> Identity {
        self.machine.identity(self.name, "admin")
    }

    fn member_file(&self, name: &str) -> String {
        self.machine
            .crypto()
            .join(self.name)
            .join(name)
            .to_str()
            .expect("utf8")
            .to_string()
    }

    /// `--key --cert --tls-ca --tls-cert --tls-key` of this bank's admin: what it passes to
    /// reach its own orderer.
    fn admin_args(&self) -> Vec<String> {
        [
            ("--key", "admin.key"),
            ("--cert", "admin.cert"),
            ("--tls-ca", "tls/ca.crt"),
            ("--tls-cert", "admin.tls.crt"),
            ("--tls-key", "admin.tls.key"),
        ]
        .iter()
        .flat_map(|(flag, f)| [flag.to_string(), self.member_file(f)])
        .collect()
    }

    /// Starts this bank's orderer from its own directory (trusting only its own TLS CA).
    async fn start_orderer(&self) -> OrdererProcess {
        let mut o = OrdererProcess::start_tls(&self.machine, "orderer", self.name, "orderer", "");
        o.wait_ready(&self.admin()).await;
        o
    }

    /// `ordo crypto export` with the orderer's endpoint; returns the bundle's path.
    fn export(&self, orderer_endpoint: &str) -> PathBuf {
        let out = self.path(&format!("{}.org.json", self.name));
        let peer = format!("peer.{}.example:7051", self.name.to_ascii_lowercase());
        let printed = run_ok(&[
            "crypto",
            "export",
            "--crypto",
            &self.crypto(),
            "--org",
            self.name,
            "--orderer-endpoint",
            orderer_endpoint,
            "--peer-endpoint",
            &peer,
            "--out",
            out.to_str().expect("utf8"),
        ]);
        assert!(printed.contains("fingerprint:"), "{printed}");
        out
    }

    /// "Sends" a file to this bank: a copy in its directory.
    fn receive(&self, from: &Path) -> String {
        let to = self.path(&from.file_name().expect("file name").to_string_lossy());
        if to != from {
            std::fs::copy(from, &to).expect("copy");
        }
        to.to_str().expect("utf8").to_string()
    }

    /// `ordo channel update sign` with this bank's admin key; returns stdout.
    fn sign(&self, update: &str) -> String {
        run_ok(&[
            "channel",
            "update",
            "sign",
            "--update",
            update,
            "--key",
            &self.member_file("admin.key"),
            "--cert",
            &self.member_file("admin.cert"),
        ])
    }

    /// `ordo channel update submit` through `orderer` as this bank's admin.
    fn submit(&self, update: &str, orderer: &str, extra: &[&str]) -> (bool, String, String) {
        let mut args: Vec<String> = [
            "channel",
            "update",
            "submit",
            "--update",
            update,
            "--orderer",
            orderer,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.admin_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    }
}

/// The update file travels from bank to bank, each signing its copy; the last copy.
fn pass_around(file: &str, banks: &[&Bank]) -> String {
    let mut at = file.to_string();
    for bank in banks {
        at = bank.receive(Path::new(&at));
        bank.sign(&at);
    }
    at
}

fn fingerprint(printed: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("fingerprint:"))
        .expect("a fingerprint line")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_banks_bootstrap_from_bundles_and_a_fourth_joins_by_collected_signatures() {
    let banks = [Bank::new("BankA"), Bank::new("BankB"), Bank::new("BankC")];
    let [a, b, c] = &banks;

    // The orderer and peer TLS certificates name their own hosts, the others do not.
    let hosts = |bank: &Bank, member: &str| {
        let der = ordo_sdk::tls::read_certs(
            &bank
                .machine
                .crypto()
                .join(bank.name)
                .join(format!("{member}.tls.crt")),
        )
        .expect("TLS certificate")
        .remove(0);
        ordo_node::certinfo::CertSummary::parse(der.as_ref())
            .expect("X.509")
            .hosts
    };
    assert!(hosts(a, "orderer").contains(&"orderer.banka.example".to_string()));
    assert!(hosts(a, "peer").contains(&"peer.banka.example".to_string()));
    assert!(!hosts(a, "admin").contains(&"orderer.banka.example".to_string()));

    // Each bank starts its orderer and exports its bundle; only bundles travel.
    let mut orderers = Vec::new();
    for bank in &banks {
        orderers.push(bank.start_orderer().await);
    }
    let bundles: Vec<PathBuf> = banks
        .iter()
        .zip(&orderers)
        .map(|(bank, o)| bank.export(&o.addr))
        .collect();
    for (bank, bundle) in banks.iter().zip(&bundles) {
        let text = std::fs::read_to_string(bundle).expect("bundle");
        assert!(!text.contains("PRIVATE KEY"), "no private key in a bundle");
        let dir = bank.machine.dir.path().to_str().expect("utf8");
        assert!(!text.contains(dir), "no file path in a bundle");
        assert!(text.contains("BEGIN CERTIFICATE"), "certificates inline");
    }
    let received: Vec<String> = bundles.iter().map(|p| a.receive(p)).collect();
    // BankA checks what it received (the fingerprint is what BankB reads out on the phone).
    let checked = run_ok(&["crypto", "verify-bundle", "--org-bundle", &received[1]]);
    let exported = run_ok(&[
        "crypto",
        "verify-bundle",
        "--org-bundle",
        &bundles[1].to_string_lossy(),
    ]);
    assert_eq!(fingerprint(&checked), fingerprint(&exported));
    assert!(checked.contains("BankB"), "{checked}");

    // BankA assembles the genesis block from the three bundles and sends it round.
    let genesis = a.file("consortium.block");
    let printed = run_ok(&[
        "channel",
        "genesis",
        "--org-bundle",
        &received[0],
        "--org-bundle",
        &received[1],
        "--org-bundle",
        &received[2],
        "--channel",
        CHANNEL,
        "--consensus",
        "raft",
        "--ack-mode",
        "committed",
        "--batch-timeout-ms",
        "50",
        "--raft-tick-ms",
        "50",
        "--out",
        &genesis,
    ]);
    assert!(printed.contains("wrote the genesis block"), "{printed}");
    let block = prost::Message::decode(std::fs::read(&genesis).expect("block").as_slice())
        .expect("block decodes");
    let cfg = ordo_proto::config::config_from_block(&block).expect("config");
    let ids: Vec<&str> = cfg
        .orderer
        .as_ref()
        .expect("orderer")
        .consenters
        .iter()
        .map(|k| k.id.as_str())
        .collect();
    assert_eq!(ids, ["orderer.BankA", "orderer.BankB", "orderer.BankC"]);
    assert!(cfg.orgs.iter().all(|o| o.tls_root_certs.len() == 1));

    // Each bank joins its own orderer with its copy of the block.
    for (bank, o) in banks.iter().zip(&orderers) {
        let copy = bank.receive(Path::new(&genesis));
        let mut args = vec![
            "channel".to_string(),
            "join".into(),
            "--orderer".into(),
            o.addr.clone(),
            "--genesis".into(),
            copy,
        ];
        args.extend(bank.admin_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(&args);
    }
    let admins: Vec<Identity> = banks.iter().map(Bank::admin).collect();
    let nodes: Vec<(&str, &Identity)> = orderers
        .iter()
        .zip(&admins)
        .map(|(o, a)| (o.addr.as_str(), a))
        .collect();
    let leader = agreed_leader(CHANNEL, &nodes).await;
    assert!(ids.contains(&leader.as_str()), "leader {leader}");
    let client_c = c.machine.identity("BankC", "client");
    let mut acked = submit_all(CHANNEL, &orderers[1].addr, &client_c, 0, 30).await;
    converged(CHANNEL, &nodes, &acked).await;

    // A fourth bank: its own keys, its orderer, its bundle, sent to BankA.
    let d = Bank::new("BankD");
    let mut orderer_d = d.start_orderer().await;
    let bundle_d = a.receive(&d.export(&orderer_d.addr));

    // BankA proposes adding BankD's org; the update travels A -> B and is submitted.
    let add_org = a.file("add-bankd.update.json");
    let mut args = vec![
        "channel".to_string(),
        "org".into(),
        "add".into(),
        "--org-bundle".into(),
        bundle_d.clone(),
        "--orderer".into(),
        orderers[0].addr.clone(),
        "--channel".into(),
        CHANNEL.into(),
        "--out-update".into(),
        add_org.clone(),
    ];
    args.extend(a.admin_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = run_ok(&args);
    assert!(printed.contains("add org BankD"), "{printed}");
    let printed = run_ok(&["channel", "update", "show", "--update", &add_org]);
    assert!(printed.contains("signed by: nobody yet"), "{printed}");

    let printed = a.sign(&add_org);
    assert!(
        printed.contains("not met yet: policy not satisfied: needs a majority of 3 orgs, got 1"),
        "{printed}"
    );
    // The same admin cannot sign twice.
    let (ok, _, err) = run(&[
        "channel",
        "update",
        "sign",
        "--update",
        &add_org,
        "--key",
        &a.member_file("admin.key"),
        "--cert",
        &a.member_file("admin.cert"),
    ]);
    assert!(!ok && err.contains("already signed this update"), "{err}");
    // One org of three is not enough: the orderer says FORBIDDEN and why.
    let (ok, _, err) = a.submit(&add_org, &orderers[0].addr, &[]);
    assert!(!ok, "an update signed by one org of three was accepted");
    assert!(
        err.contains("the orderer refused the config update: FORBIDDEN: forbidden: Admins policy: policy not satisfied: needs a majority of 3 orgs, got 1"),
        "{err}"
    );
    // A damaged file is refused with a clear error, before anything is signed or sent.
    let text = std::fs::read_to_string(&add_org).expect("update file");
    let damaged = a.file("damaged.update.json");
    let at = text.find("\"config\": \"").expect("config field") + 20;
    let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
    std::fs::write(
        &damaged,
        format!("{}{flipped}{}", &text[..at], &text[at + 1..]),
    )
    .expect("write");
    let (ok, _, err) = run(&["channel", "update", "show", "--update", &damaged]);
    assert!(
        !ok && err.contains("does not match its config_sha256"),
        "{err}"
    );
    let truncated = a.file("truncated.update.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
    let (ok, _, err) = b.submit(&truncated, &orderers[1].addr, &[]);
    assert!(
        !ok && err.contains("not a config update file, or a damaged one"),
        "{err}"
    );

    let at_b = b.receive(Path::new(&add_org));
    let printed = b.sign(&at_b);
    assert!(
        printed.contains("Admins policy: met (orgs signed: BankA, BankB)"),
        "{printed}"
    );
    let (ok, out, err) = b.submit(&at_b, &orderers[1].addr, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("is in force from config block"), "{out}");

    // BankD's orderer becomes a consenter: proposed by BankA from BankD's bundle, signed
    // by A, B and C (three of four orgs now), submitted by C.
    let add_consenter = a.file("add-orderer-bankd.update.json");
    let mut args = vec![
        "channel".to_string(),
        "consenter".into(),
        "add".into(),
        "--org-bundle".into(),
        bundle_d,
        "--orderer".into(),
        orderers[0].addr.clone(),
        "--channel".into(),
        CHANNEL.into(),
        "--out-update".into(),
        add_consenter.clone(),
    ];
    args.extend(a.admin_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = run_ok(&args);
    assert!(
        printed.contains(&format!(
            "add consenter orderer.BankD of BankD at {}",
            orderer_d.addr
        )),
        "{printed}"
    );
    a.sign(&add_consenter);
    let at_b = b.receive(Path::new(&add_consenter));
    let printed = b.sign(&at_b);
    assert!(
        printed.contains("needs a majority of 4 orgs, got 2"),
        "{printed}"
    );
    let at_c = c.receive(Path::new(&at_b));
    let printed = c.sign(&at_c);
    assert!(printed.contains("Admins policy: met"), "{printed}");
    let join_block = c.file("join-bankd.block");
    let (ok, out, err) = c.submit(&at_c, &orderers[2].addr, &["--out-block", &join_block]);
    assert!(ok, "{out}\n{err}");

    // BankD joins its orderer from that block and orders with the others.
    let at_d = d.receive(Path::new(&join_block));
    let mut args = vec![
        "channel".to_string(),
        "join".into(),
        "--orderer".into(),
        orderer_d.addr.clone(),
        "--genesis".into(),
        at_d,
    ];
    args.extend(d.admin_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&args);
    let admin_d = d.admin();
    let client_d = d.machine.identity("BankD", "client");
    acked.extend(submit_all(CHANNEL, &orderer_d.addr, &client_d, 1_000, 30).await);
    let mut all = nodes.clone();
    all.push((orderer_d.addr.as_str(), &admin_d));
    converged(CHANNEL, &all, &acked).await;
    let leader = agreed_leader(CHANNEL, &all).await;
    assert!(leader.starts_with("orderer.Bank"), "{leader}");

    // BankD leaves again: its org cannot go while it runs a consenter; its consenter is
    // removed first, then its org, each signed by three of the four banks.
    let propose = |args: &[&str], file: &str| {
        let mut v: Vec<String> = ["channel"].iter().map(|s| s.to_string()).collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v.extend(
            [
                "--orderer",
                &orderers[0].addr,
                "--channel",
                CHANNEL,
                "--out-update",
                file,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v.extend(a.admin_args());
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        run(&v)
    };
    let remove_org = a.file("remove-bankd.update.json");
    let (ok, _, err) = propose(&["org", "remove", "--org", "BankD"], &remove_org);
    assert!(
        !ok && err.contains("BankD still runs consenters of the channel (orderer.BankD)"),
        "{err}"
    );
    let remove_consenter = a.file("remove-orderer-bankd.update.json");
    let (ok, out, err) = propose(
        &["consenter", "remove", "--id", "orderer.BankD"],
        &remove_consenter,
    );
    assert!(
        ok && out.contains("remove consenter orderer.BankD"),
        "{out}\n{err}"
    );
    let signed = pass_around(&remove_consenter, &[a, b, c]);
    let (ok, out, err) = c.submit(&signed, &orderers[2].addr, &[]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = propose(&["org", "remove", "--org", "BankD"], &remove_org);
    assert!(ok && out.contains("remove org BankD"), "{out}\n{err}");
    let signed = pass_around(&remove_org, &[a, b, c]);
    let (ok, out, err) = c.submit(&signed, &orderers[2].addr, &[]);
    assert!(ok, "{out}\n{err}");
    // BankD's members are strangers to the channel now.
    let (env, _) = message(&client_d, CHANNEL, 100, 99_999);
    let r = broadcast(&orderers[0].addr, vec![env]).await;
    assert_eq!(
        r[0].status,
        ordo_proto::pb::common::Status::Forbidden as i32,
        "{}",
        r[0].info
    );
    assert!(r[0].info.contains("unknown org \"BankD\""), "{}", r[0].info);
    let acked_after = submit_all(CHANNEL, &orderers[2].addr, &client_c, 2_000, 10).await;
    acked.extend(acked_after);
    converged(CHANNEL, &nodes, &acked).await;
    orderer_d.stop();
}

/// A bank's bundle with one field replaced (a JSON edit, as a forger would make it).
fn edited(bundle: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle).expect("bundle")).expect("json");
    edit(&mut v);
    let out = bundle.with_extension("edited.json");
    std::fs::write(&out, serde_json::to_string_pretty(&v).expect("json")).expect("write");
    out.to_str().expect("utf8").to_string()
}

fn genesis_from(bundles: &[&str], out: &str) -> (bool, String, String) {
    let mut args = vec!["channel", "genesis", "--channel", CHANNEL, "--out", out];
    for b in bundles {
        args.extend(["--org-bundle", b]);
    }
    run(&args)
}

#[test]
fn bundles_carrying_private_keys_or_foreign_certificates_are_refused() {
    let a = Bank::new("BankA");
    let b = Bank::new("BankB");
    let bundle_a = a.export("127.0.0.1:7050");
    let bundle_b = a.receive(&b.export("127.0.0.1:7150"));
    let bundle_b = PathBuf::from(bundle_b);
    let out = a.file("bad.block");
    let good_a = bundle_a.to_str().expect("utf8");
    let good_b = bundle_b.to_str().expect("utf8");
    let v_b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle_b).expect("bundle")).expect("json");

    let refused = |bundles: &[&str], wanted: &str| {
        let (ok, _, err) = genesis_from(bundles, &out);
        assert!(!ok, "genesis accepted {bundles:?}");
        assert!(err.contains(wanted), "wanted {wanted:?} in: {err}");
        assert!(!Path::new(&out).exists(), "nothing written");
        // verify-bundle says the same about the bad one.
        if let Some(bad) = bundles.iter().find(|b| b.contains("edited")) {
            let (ok, _, err) = run(&["crypto", "verify-bundle", "--org-bundle", bad]);
            assert!(!ok && err.contains(wanted), "{err}");
        }
    };

    // A private key pasted in, as a field of its own or inside a PEM field.
    let ca_key =
        std::fs::read_to_string(a.machine.crypto().join("BankA").join("ca.key")).expect("ca.key");
    let with_field = edited(&bundle_a, |v| {
        v["ca_key"] = serde_json::Value::String(ca_key.trim().into());
    });
    refused(
        &[&with_field, good_b],
        "carries a private key (field \"ca_key\")",
    );
    let tls_key = std::fs::read_to_string(a.machine.crypto().join("BankA").join("orderer.tls.key"))
        .expect("tls key");
    let with_pem = edited(&bundle_a, |v| {
        let cert = v["orderers"][0]["tls_cert"]
            .as_str()
            .expect("pem")
            .to_string();
        v["orderers"][0]["tls_cert"] = serde_json::Value::String(cert + &tls_key);
    });
    refused(
        &[&with_pem, good_b],
        "carries a private key (a PEM \"PRIVATE KEY\" block)",
    );

    // Tampered: another CA key (the orderer's certificate was not issued by it), another
    // org's orderer TLS certificate (it does not chain to the bundle's TLS CA), another
    // org's orderer identity certificate.
    let other_ca = edited(&bundle_a, |v| {
        v["ca_public_key"] = v_b["ca_public_key"].clone()
    });
    refused(
        &[&other_ca, good_b],
        "orderer orderer of BankA: identity certificate refused: certificate of org \"BankA\" not issued by one of its roots",
    );
    let other_tls = edited(&bundle_a, |v| {
        v["orderers"][0]["tls_cert"] = v_b["orderers"][0]["tls_cert"].clone();
    });
    refused(
        &[&other_tls, good_b],
        "orderer orderer of BankA: TLS certificate does not chain to the bundle's TLS CA",
    );
    let other_identity = edited(&bundle_a, |v| {
        v["orderers"][0]["identity_cert"] = v_b["orderers"][0]["identity_cert"].clone();
    });
    refused(
        &[&other_identity, good_b],
        "identity certificate refused: certificate from unknown org \"BankB\"",
    );
    // A flipped byte in an identity certificate: its issuer's signature fails.
    let flipped = edited(&bundle_a, |v| {
        let hex_cert = v["orderers"][0]["identity_cert"]
            .as_str()
            .expect("hex")
            .to_string();
        let mut raw = hex::decode(&hex_cert).expect("hex");
        let n = raw.len();
        raw[n - 1] ^= 0x01;
        v["orderers"][0]["identity_cert"] = serde_json::Value::String(hex::encode(raw));
    });
    refused(&[&flipped, good_b], "identity certificate refused");
    // The same org twice.
    refused(&[good_a, good_a], "org BankA is given by two bundles");
    // Not a bundle at all.
    let junk = a.file("junk.json");
    std::fs::write(&junk, "{\"org\": ").expect("write");
    refused(&[&junk, good_b], "not an org bundle");

    // The good ones make a genesis block.
    let (ok, out_text, err) = genesis_from(&[good_a, good_b], &out);
    assert!(ok, "{out_text}\n{err}");

    // Export refuses what it cannot do.
    let (ok, _, err) = run(&[
        "crypto",
        "export",
        "--crypto",
        &a.crypto(),
        "--org",
        "BankZ",
        "--out",
        &a.file("z.json"),
    ]);
    assert!(
        !ok && err.contains("org \"BankZ\" is not in the crypto directory"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "crypto",
        "export",
        "--crypto",
        &a.crypto(),
        "--org",
        "BankA",
        "--orderer-endpoint",
        "no-port",
        "--out",
        &a.file("z.json"),
    ]);
    assert!(!ok && err.contains("is not HOST:PORT"), "{err}");
}
