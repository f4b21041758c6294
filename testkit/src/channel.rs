//! A channel-config builder: one place that knows every field of a [`ChannelConfig`], so
//! a test states only what it is about.
//!
//! Defaults, chosen to be what most tests want and each overridable:
//!
//! | field | default |
//! | --- | --- |
//! | consensus | `solo`, no consenters |
//! | batch size | 10 envelopes, 1 MiB absolute, 512 KiB preferred |
//! | batch timeout | 50 ms |
//! | ack mode | `committed` |
//! | readers | any member |
//! | writers | any client |
//! | admins | a majority of orgs' admins |
//! | block validation | any orderer |
//! | sequence | 0, no chaincodes |

use ordo_proto::pb::common::{
    AckMode, BatchSize, Block, ChaincodeDefinition, ChannelConfig, Consenter, OrdererConfig,
    Organization, Policy, Role,
};
use ordo_proto::policy::build as policy;

use crate::org::TestOrg;

/// Builds a [`ChannelConfig`] from the defaults in the module docs.
#[derive(Debug, Clone)]
pub struct ChannelBuilder {
    config: ChannelConfig,
}

impl ChannelBuilder {
    /// A channel named `channel_id` with no orgs yet and every default.
    pub fn new(channel_id: &str) -> Self {
        Self {
            config: ChannelConfig {
                channel_id: channel_id.to_string(),
                sequence: 0,
                orgs: Vec::new(),
                orderer: Some(OrdererConfig {
                    consensus_type: "solo".into(),
                    batch_size: Some(BatchSize {
                        max_message_count: 10,
                        absolute_max_bytes: 1 << 20,
                        preferred_max_bytes: 1 << 19,
                    }),
                    batch_timeout_ms: 50,
                    ack_mode: AckMode::Committed as i32,
                    ..Default::default()
                }),
                readers: Some(policy::any_member(&[], &[])),
                writers: Some(policy::any_member(&[], &[Role::Client])),
                admins: Some(policy::majority(&[], Role::Admin)),
                block_validation: Some(policy::any_member(&[], &[Role::Orderer])),
                chaincodes: vec![],
                // Changes to chaincode definitions alone: a majority of orgs' admins, as
                // `ordo channel genesis` sets it.
                lifecycle: Some(policy::majority(&[], Role::Admin)),
                // Transactions never expire: tests build their transactions at fixed
                // times far apart; `tx_validity_window` turns expiry on.
                tx_validity_window_s: 0,
            },
        }
    }

    /// Adds `org` (its name and CA key).
    pub fn org(self, org: &TestOrg) -> Self {
        self.organization(org.organization())
    }

    /// Adds an org entry as given.
    pub fn organization(mut self, org: Organization) -> Self {
        self.config.orgs.push(org);
        self
    }

    /// The consensus type (`solo`, `raft`, `kafka`).
    pub fn consensus(mut self, consensus_type: &str) -> Self {
        self.orderer().consensus_type = consensus_type.to_string();
        self
    }

    /// The tx validity window in seconds (`ChannelConfig.tx_validity_window_s`; 0, the
    /// builder's default, never expires a transaction).
    pub fn tx_validity_window(mut self, seconds: u64) -> Self {
        self.config.tx_validity_window_s = seconds;
        self
    }

    /// The consenters (raft).
    pub fn consenters(mut self, consenters: Vec<Consenter>) -> Self {
        self.orderer().consenters = consenters;
        self
    }

    /// Blocks of at most `max_count` envelopes.
    pub fn max_count(mut self, max_count: u32) -> Self {
        self.batch_size().max_message_count = max_count;
        self
    }

    /// The byte limits of a block: `absolute` is the hard cap, `preferred` where the cutter
    /// stops adding.
    pub fn batch_bytes(mut self, absolute: u32, preferred: u32) -> Self {
        let size = self.batch_size();
        size.absolute_max_bytes = absolute;
        size.preferred_max_bytes = preferred;
        self
    }

    /// How long a partial block waits for more envelopes.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.orderer().batch_timeout_ms = ms;
        self
    }

    /// What a Broadcast acknowledgement promises.
    pub fn ack(mut self, mode: AckMode) -> Self {
        self.orderer().ack_mode = mode as i32;
        self
    }

    /// Who may read (Deliver).
    pub fn readers(mut self, p: Policy) -> Self {
        self.config.readers = Some(p);
        self
    }

    /// Who may submit (Broadcast).
    pub fn writers(mut self, p: Policy) -> Self {
        self.config.writers = Some(p);
        self
    }

    /// Who may change the config.
    pub fn admins(mut self, p: Policy) -> Self {
        self.config.admins = Some(p);
        self
    }

    /// Whose signatures make a block valid.
    pub fn block_validation(mut self, p: Policy) -> Self {
        self.config.block_validation = Some(p);
        self
    }

    /// The config sequence number.
    pub fn sequence(mut self, sequence: u64) -> Self {
        self.config.sequence = sequence;
        self
    }

    /// The chaincodes defined on the channel.
    pub fn chaincodes(mut self, chaincodes: Vec<ChaincodeDefinition>) -> Self {
        self.config.chaincodes = chaincodes;
        self
    }

    /// Changes anything else on the orderer config.
    pub fn orderer_with(mut self, change: impl FnOnce(&mut OrdererConfig)) -> Self {
        change(self.orderer());
        self
    }

    /// The config.
    pub fn build(self) -> ChannelConfig {
        self.config
    }

    /// The channel's genesis block at `timestamp_ms`.
    ///
    /// # Panics
    /// When the config is invalid: a fixture's mistake, not the code under test's.
    pub fn genesis(self, timestamp_ms: u64) -> Block {
        ordo_proto::config::genesis_block(&self.config, timestamp_ms)
            .expect("the fixture's channel config is valid")
    }

    fn orderer(&mut self) -> &mut OrdererConfig {
        self.config.orderer.get_or_insert_with(Default::default)
    }

    fn batch_size(&mut self) -> &mut BatchSize {
        self.orderer()
            .batch_size
            .get_or_insert_with(Default::default)
    }
}
