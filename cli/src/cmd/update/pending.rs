//! A pending config update: the file that travels between the banks, its signatures,
//! and what it takes to be complete.

use super::*;

/// The update file as written (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateFile {
    /// [`UPDATE_FORMAT`].
    pub(super) format: String,
    /// The channel.
    pub(super) channel: String,
    /// For people reading the file: what the update changes (recomputed when read).
    #[serde(default)]
    pub(super) summary: Vec<String>,
    /// Hex encoded ChannelConfig in force when the update was made.
    pub(super) current_config: String,
    /// Hex encoded proposed ChannelConfig: the exact bytes every admin signs.
    pub(super) config: String,
    /// Hex SHA-256 of the proposed config's bytes (catches a damaged file early).
    pub(super) config_sha256: String,
    /// The signatures so far.
    #[serde(default)]
    pub(super) signatures: Vec<SignatureEntry>,
}

/// One admin's signature in an update file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignatureEntry {
    /// For people: the signer's org (read from the certificate when loaded).
    #[serde(default)]
    pub(super) org: String,
    /// For people: the signer's subject.
    #[serde(default)]
    pub(super) subject: String,
    /// Hex encoded certificate of the signer.
    pub(super) signer: String,
    /// Hex Ed25519 signature over the proposed config's bytes.
    pub(super) signature: String,
}

/// An update being signed: checked and decoded.
#[derive(Debug, Clone)]
pub struct PendingUpdate {
    /// The channel.
    pub channel: String,
    /// The config in force when the update was made.
    pub current: ChannelConfig,
    /// The proposed config.
    pub proposed: ChannelConfig,
    /// The proposed config's exact bytes.
    pub config_bytes: Bytes,
    /// Signatures over `config_bytes`, each verified against its certificate's key.
    pub signatures: Vec<ConfigSignature>,
}

impl PendingUpdate {
    /// A new, unsigned update from `current` to `proposed`.
    pub fn new(current: &ChannelConfig, proposed: &ChannelConfig) -> Self {
        Self {
            channel: current.channel_id.clone(),
            current: current.clone(),
            proposed: proposed.clone(),
            config_bytes: proposed.encode_to_vec().into(),
            signatures: Vec::new(),
        }
    }

    /// What the update changes, one line each.
    pub fn summary(&self) -> Vec<String> {
        describe_change(&self.current, &self.proposed)
    }

    /// Reads and checks an update file: its format, checksum, both configs, and every
    /// signature against its certificate's key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if meta.len() > MAX_UPDATE_FILE_BYTES {
            bail!(
                "{}: {} bytes is more than a config update file may hold ({MAX_UPDATE_FILE_BYTES})",
                path.display(),
                meta.len()
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config update file {}", path.display()))
    }

    /// [`PendingUpdate::load`] of the file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let f: UpdateFile = serde_json::from_str(text).context(
            "not a config update file, or a damaged one (written by `ordo channel ... --out-update`)",
        )?;
        if f.format != UPDATE_FORMAT {
            bail!(
                "format {:?} is not {UPDATE_FORMAT:?} (made by another version of ordo?)",
                f.format
            );
        }
        let bytes = |field: &str, v: &str| {
            hex::decode(v.trim())
                .with_context(|| format!("{field} is not hex: the file is damaged"))
        };
        let config_bytes = bytes("config", &f.config)?;
        let want = bytes("config_sha256", &f.config_sha256)?;
        if ordo_proto::hash::sha256(&config_bytes).as_slice() != want.as_slice() {
            bail!(
                "the proposed config does not match its config_sha256: the file is damaged or \
                 was edited; get the update again from whoever made it"
            );
        }
        let current = ChannelConfig::decode(bytes("current_config", &f.current_config)?.as_slice())
            .context("current_config does not decode: the file is damaged")?;
        let proposed = ChannelConfig::decode(config_bytes.as_slice())
            .context("the proposed config does not decode: the file is damaged")?;
        if current.channel_id != f.channel || proposed.channel_id != f.channel {
            bail!(
                "the configs are for channel {:?} and {:?}, the file says {:?}",
                current.channel_id,
                proposed.channel_id,
                f.channel
            );
        }
        if proposed.sequence != current.sequence + 1 {
            bail!(
                "the proposed config has sequence {}, not {} (the one after the config it was made against)",
                proposed.sequence,
                current.sequence + 1
            );
        }
        config::validate(&proposed).context("the proposed config")?;
        if f.signatures.len() > MAX_SIGNATURES {
            bail!(
                "{} signatures, at most {MAX_SIGNATURES}",
                f.signatures.len()
            );
        }
        let mut signatures = Vec::new();
        for (i, s) in f.signatures.iter().enumerate() {
            let signer = bytes("a signer", &s.signer)?;
            let signature = bytes("a signature", &s.signature)?;
            let (_, body) = ordo_proto::cert::decode(&signer)
                .with_context(|| format!("signature {}: the signer's certificate", i + 1))?;
            let key = ordo_proto::crypto::parse_public_key(&body.public_key)
                .with_context(|| format!("signature {}: the signer's key", i + 1))?;
            if ordo_proto::crypto::verify(&key, &config_bytes, &signature).is_err() {
                bail!(
                    "signature {} ({} of {}) does not verify over the proposed config: the \
                     file was changed after it was signed",
                    i + 1,
                    body.subject,
                    body.org
                );
            }
            signatures.push(ConfigSignature {
                signer: signer.into(),
                signature: signature.into(),
            });
        }
        Ok(Self {
            channel: f.channel,
            current,
            proposed,
            config_bytes: config_bytes.into(),
            signatures,
        })
    }

    /// Writes the file (atomically: a signer interrupted mid-write leaves the old one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let f = UpdateFile {
            format: UPDATE_FORMAT.into(),
            channel: self.channel.clone(),
            summary: self.summary(),
            current_config: hex::encode(self.current.encode_to_vec()),
            config: hex::encode(&self.config_bytes),
            config_sha256: hex::encode(ordo_proto::hash::sha256(&self.config_bytes)),
            signatures: self
                .signatures
                .iter()
                .map(|s| {
                    let (org, subject) = ordo_proto::cert::decode(&s.signer)
                        .map(|(_, b)| (b.org, b.subject))
                        .unwrap_or_default();
                    SignatureEntry {
                        org,
                        subject,
                        signer: hex::encode(&s.signer),
                        signature: hex::encode(&s.signature),
                    }
                })
                .collect(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = serde_json::to_string_pretty(&f)? + "\n";
        crate::pki::write_atomic(path, &text, false)
    }

    /// The signers whose certificate is valid in the config the update was made against
    /// (at `now_secs`), and whether they meet the policy the change needs there (Lifecycle
    /// for chaincode definitions alone, Admins otherwise).
    pub fn policy_status(
        &self,
        now_secs: u64,
    ) -> (
        Vec<VerifiedCert>,
        Result<(), ordo_proto::policy::PolicyError>,
    ) {
        let Ok(msp) = Msp::from_config(&self.current) else {
            return (
                Vec::new(),
                Err(ordo_proto::policy::PolicyError::Malformed(
                    "the config in force has unusable org keys".into(),
                )),
            );
        };
        let signers = msp.verified_signers(
            &self.config_bytes,
            self.signatures
                .iter()
                .map(|s| (s.signer.as_ref(), s.signature.as_ref())),
            now_secs,
        );
        let names: Vec<String> = self.current.orgs.iter().map(|o| o.name.clone()).collect();
        let result =
            match ordo_proto::config_change::authorizing_policy(&self.current, &self.proposed) {
                Ok((_, p)) => ordo_proto::policy::evaluate(p, &signers, &names),
                Err(e) => Err(ordo_proto::policy::PolicyError::Malformed(e)),
            };
        (signers, result)
    }

    /// The name of the policy the change needs (`Lifecycle` or `Admins`).
    pub fn policy_name(&self) -> &'static str {
        ordo_proto::config_change::authorizing_policy(&self.current, &self.proposed)
            .map_or("Admins", |(name, _)| name)
    }

    /// Adds `id`'s signature. Refused when `id` (its certificate or its key) already
    /// signed, or when its certificate is not valid in the config in force, where the
    /// signature could never count.
    pub fn sign(&mut self, id: &Identity, now_secs: u64) -> anyhow::Result<()> {
        let own_key = id.signing_key().verifying_key();
        for s in &self.signatures {
            let same_key = ordo_proto::cert::decode(&s.signer)
                .is_ok_and(|(_, b)| b.public_key.as_ref() == own_key.as_bytes().as_slice());
            if s.signer == *id.cert_bytes() || same_key {
                bail!(
                    "{} of {} already signed this update; each identity signs once (another \
                     admin of the org, or another org, must sign next)",
                    id.subject(),
                    id.org()
                );
            }
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            bail!("the update already carries {MAX_SIGNATURES} signatures");
        }
        let msp = Msp::from_config(&self.current).context("the config in force")?;
        msp.verify(id.cert_bytes(), now_secs).with_context(|| {
            format!(
                "{} of {} cannot sign for channel {}: its certificate is not valid in the \
                 channel's config in force, so its signature would not count",
                id.subject(),
                id.org(),
                self.channel
            )
        })?;
        if id.role() != Role::Admin {
            eprintln!(
                "warning: {} is a {}, not an admin: the Admins policy counts admins only",
                id.subject(),
                id.role().as_str_name()
            );
        }
        self.signatures.push(ConfigSignature {
            signer: id.cert_bytes().clone(),
            signature: Bytes::from(id.sign(&self.config_bytes).to_vec()),
        });
        Ok(())
    }

    /// The `ConfigUpdate` the orderer takes.
    pub fn config_update(&self) -> ConfigUpdate {
        ConfigUpdate {
            config: self.config_bytes.clone(),
            signatures: self.signatures.clone(),
        }
    }
}

/// The org a certificate names ("?" when it does not decode).
pub(super) fn cert_org(cert: &[u8]) -> String {
    ordo_proto::cert::decode(cert)
        .map(|(_, b)| b.org)
        .unwrap_or_else(|_| "?".into())
}
