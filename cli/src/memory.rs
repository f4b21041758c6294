//! Process-wide memory settings, applied first thing in `main`.
//!
//! **Transparent huge pages are turned off for the `ordo` process** (Linux
//! `prctl(PR_SET_THP_DISABLE)`), as databases such as Redis and MongoDB advise. mimalloc
//! asks the kernel for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), and hosts
//! configured `transparent_hugepage=always` (RHEL's default) give them to every large
//! mapping. Ordo's hot path allocates and frees megabyte buffers (raft entries, block
//! messages, RocksDB memtable arenas) many times a second; once the allocator returns such
//! memory to the kernel, the next touch faults in a fresh 2 MiB page that the kernel zeroes
//! whole. Measured on a three-orderer raft benchmark: zeroing huge pages was 16% of both
//! cores, and turning THP off raised committed throughput by about 10%
//! (`benches/RESULTS.md`, session 16).
//!
//! The setting is inherited by every process `ordo` starts (`ordo up`'s nodes). Set
//! [`ALLOW_THP_ENV`]`=1` to keep the host's setting, e.g. to measure the difference.

/// The environment variable that keeps transparent huge pages on when set to `1`.
pub const ALLOW_THP_ENV: &str = "ORDO_ALLOW_THP";

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// Turned off for this process and its children.
    Disabled,
    /// Left as the host sets it, because [`ALLOW_THP_ENV`] asked for it.
    KeptByRequest,
    /// The kernel refused or does not know the call (not Linux, or a kernel before 3.15);
    /// nothing changed and the process runs as before.
    Unsupported,
}

/// Applies the process-wide memory settings: transparent huge pages off unless
/// [`ALLOW_THP_ENV`] is `1`. Never fails: a kernel without the setting just keeps its own.
pub fn apply() -> HugePages {
    if std::env::var(ALLOW_THP_ENV).is_ok_and(|v| v == "1") {
        return HugePages::KeptByRequest;
    }
    disable_transparent_huge_pages()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one FFI call with integer arguments (below)
fn disable_transparent_huge_pages() -> HugePages {
    // SAFETY: PR_SET_THP_DISABLE takes only integer arguments and touches no memory of
    // ours; it sets a flag on this process's memory map.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        HugePages::Disabled
    } else {
        HugePages::Unsupported
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() -> HugePages {
    HugePages::Unsupported
}

/// Whether transparent huge pages are off for this process (`None` where the kernel
/// cannot say).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one FFI call with integer arguments (below)
fn transparent_huge_pages_disabled() -> Option<bool> {
    // SAFETY: PR_GET_THP_DISABLE takes only integer arguments and returns the flag.
    let rc = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    (rc >= 0).then_some(rc == 1)
}

/// "off", "on" or "unknown": for the node's starting log line, so that an operator sees
/// what [`apply`] left in force.
pub fn transparent_huge_pages_state() -> &'static str {
    match transparent_huge_pages_disabled() {
        Some(true) => "off",
        Some(false) => "on",
        None => "unknown",
    }
}

#[cfg(not(target_os = "linux"))]
fn transparent_huge_pages_disabled() -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `THP_enabled` from a `/proc/PID/status` text (Linux 5.0 and later report it).
    fn thp_enabled(status: &str) -> Option<String> {
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
        line.split_whitespace().nth(1).map(str::to_string)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn apply_turns_transparent_huge_pages_off_for_the_process_and_its_children() {
        assert_eq!(apply(), HugePages::Disabled);
        assert_eq!(transparent_huge_pages_disabled(), Some(true));
        assert_eq!(transparent_huge_pages_state(), "off");
        let own = std::fs::read_to_string("/proc/self/status").expect("read own status");
        assert_eq!(thp_enabled(&own).as_deref(), Some("0"));
        let child = std::process::Command::new("cat")
            .arg("/proc/self/status")
            .output()
            .expect("run cat");
        let child = String::from_utf8_lossy(&child.stdout);
        assert_eq!(
            thp_enabled(&child).as_deref(),
            Some("0"),
            "the child's status"
        );
    }
}
