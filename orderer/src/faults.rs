//! Faults a test can switch on to prove that the chaos checkers catch a broken promise.
//!
//! Compiled in only with the `test-faults` cargo feature (the chaos-test crate turns it on
//! for its own builds; a release build of `ordo` never has it), and then active only when
//! the node's environment names the fault in `ORDO_TEST_FAULT`. Each fault breaks exactly
//! one documented guarantee:
//!
//! - `ack-before-durable`: in `committed` ack mode, Broadcast answers SUCCESS as soon as
//!   the chain accepted the envelope instead of once its block is durable — a crash then
//!   loses acknowledged transactions.

/// Whether the `ack-before-durable` fault is on.
#[cfg(feature = "test-faults")]
pub fn ack_before_durable() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var("ORDO_TEST_FAULT").is_ok_and(|v| v == "ack-before-durable");
        if on {
            tracing::warn!("TEST FAULT ack-before-durable is on: committed acks are not durable");
        }
        on
    })
}

/// Whether the `ack-before-durable` fault is on: never, without the `test-faults` feature.
#[cfg(not(feature = "test-faults"))]
pub fn ack_before_durable() -> bool {
    false
}
