//! `ordo crypto renew` and `ordo crypto issue`: new certificates for an existing member,
//! and a new member of an existing org, recorded in the crypto directory's manifest.

use super::*;

/// `ordo crypto renew`: new certificates (and keys unless `--same-key`) for a member.
pub fn renew(a: &RenewArgs) -> anyhow::Result<ordo_sdk::network::IdentityFiles> {
    let mut manifest = Manifest::load(&a.crypto)?;
    let trusted = manifest.tls_cas();
    let entry = manifest
        .orgs
        .iter_mut()
        .find(|o| o.name == a.org)
        .with_context(|| format!("org {:?} is not in {}", a.org, a.crypto.display()))?;
    let serial = entry.members.len() as u64 + 1;
    let files = entry
        .members
        .get_mut(&a.name)
        .with_context(|| format!("org {} has no member {:?}", a.org, a.name))?;
    let dir = a.crypto.canonicalize()?.join(&a.org);
    if !a.tls_only {
        let old = files
            .load()
            .with_context(|| format!("loading {}'s identity", a.name))?;
        let ca = identity::load_signing_key(&dir.join("ca.key"))
            .with_context(|| format!("loading the CA key of {}", a.org))?;
        let now = ordo_proto::now_ms() / 1000;
        let (_, body) = ordo_proto::cert::decode(old.cert_bytes())?;
        let enrollment = Enrollment::new(&a.org, old.role(), &a.name)
            .serial(body.serial.max(serial) + 1000)
            .valid(now.saturating_sub(3600), now + a.validity_days * 86_400);
        let enrollment = Enrollment {
            subject: old.subject().to_string(),
            ..enrollment
        };
        let key = if a.same_key {
            old.signing_key().clone()
        } else {
            generate_signing_key()
        };
        Identity::enroll(&ca, key, &enrollment).save(&files.key, &files.cert)?;
    }
    let tls = match files.tls.clone() {
        Some(tls) => tls,
        None => ordo_sdk::tls::TlsFiles {
            cert: dir.join(format!("{}.tls.crt", a.name)),
            key: dir.join(format!("{}.tls.key", a.name)),
            ca: trusted.clone(),
        },
    };
    let hosts = if a.hosts.is_empty() {
        std::fs::read(&tls.cert)
            .ok()
            .and_then(|_| crate::pki::cert_der(&tls.cert).ok())
            .and_then(|der| ordo_node::certinfo::CertSummary::parse(&der))
            .map(|s| s.hosts)
            .unwrap_or_else(|| {
                crate::pki::LOCAL_HOSTS
                    .iter()
                    .map(|h| h.to_string())
                    .collect()
            })
    } else {
        a.hosts.clone()
    };
    let subject = crate::pki::TlsSubject {
        org: &a.org,
        name: &a.name,
        hosts: &hosts,
        days: a.validity_days,
    };
    let reuse = a.same_key && tls.key.exists();
    crate::pki::issue(&dir.join("tls"), &subject, &tls.cert, &tls.key, reuse)?;
    files.tls = Some(tls);
    let files = files.clone();
    manifest.save(&a.crypto)?;
    Ok(files)
}

/// `ordo crypto issue`: one more member of an existing org, recorded in crypto.json.
pub fn issue(
    crypto: &Path,
    org: &str,
    name: &str,
    role: Role,
    validity_days: u64,
    hosts: &[String],
) -> anyhow::Result<ordo_sdk::network::IdentityFiles> {
    if !valid_name(name) {
        bail!("member name {name:?} must be 1-64 characters of letters, digits, '-' and '_'");
    }
    let mut manifest = Manifest::load(crypto)?;
    let trusted = manifest.tls_cas();
    let entry = manifest
        .orgs
        .iter_mut()
        .find(|o| o.name == org)
        .with_context(|| format!("org {org:?} is not in {}", crypto.display()))?;
    if entry.members.contains_key(name) {
        bail!("org {org} already has a member {name:?}");
    }
    let dir = crypto.canonicalize()?.join(org);
    let ca = identity::load_signing_key(&dir.join("ca.key"))
        .with_context(|| format!("loading the CA key of {org}"))?;
    let serial = entry.members.len() as u64 + 1;
    let mut files = issue_member(
        &ca,
        &dir,
        org,
        name,
        role,
        serial,
        ordo_proto::now_ms() / 1000,
        validity_days,
    )?;
    if entry.tls_ca.is_some() {
        files.tls = Some(issue_member_tls(
            &dir,
            org,
            name,
            hosts,
            validity_days,
            &trusted,
        )?);
    }
    entry.members.insert(name.to_string(), files.clone());
    manifest.save(crypto)?;
    Ok(files)
}
