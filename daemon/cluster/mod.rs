//! A cluster of daemons on one PostgreSQL store: one leads (schedules), the others stand
//! by, and a standby takes over when the leader dies, stops or is cut off.
//!
//! Contract:
//! - Leadership is a lease in the store ([`crate::store::pg::lease`]), taken and renewed
//!   in one statement against the server's clock by the [`keeper`], a thread of its own
//!   that never waits for the engine. Not an advisory lock: a cut connection would keep
//!   one for the TCP keepalive time, a paused leader would keep it, and it gives no
//!   fencing token.
//! - A leader that has not renewed within [`Timings::demote_after`] of *sending* its last
//!   successful renew, by `CLOCK_BOOTTIME` (which, unlike `Instant`, counts a suspended
//!   host and a stopped process), stops leading at once ([`Liveness`]); the server's lease
//!   is longer ([`Timings::lease`]), so no two nodes ever believe they lead at once.
//! - Fencing: every scheduling write checks the lease's holder and epoch in its own
//!   transaction (`store::pg`), and a process starts only after its row is committed
//!   and only while this node still leads ([`Liveness::leads`], checked on the launch
//!   thread at the instant of the spawn).
//! - A graceful stop releases the lease, so a standby takes over within one renew.

pub mod keeper;
pub mod labels;
pub mod liveness;

use std::time::Duration;

pub use keeper::{Keeper, LeaseView};
pub use liveness::Liveness;

/// How the lease is kept. The defaults are the issue's: a 10 s lease renewed every
/// second (±20 %), given up by its holder 6 s after the last renew it sent, and a node
/// silent for 20 s lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    /// How long a lease lasts on the server after each renew.
    pub lease: Duration,
    /// How often the keeper renews (or, standing by, tries to take) the lease and
    /// heartbeats.
    pub renew: Duration,
    /// How long after sending its last successful renew a leader stops leading.
    pub demote_after: Duration,
    /// How long a node may go without a heartbeat before the leader settles its runs as
    /// lost.
    pub node_lost: Duration,
}

impl Timings {
    /// How long a node goes without a heartbeat before it ends its own jobs: half the
    /// node-lost time, so that they are over (SIGKILL included) before the leader settles
    /// them as lost and retries them elsewhere.
    pub fn stop_own_runs_after(&self) -> Duration {
        self.node_lost / 2
    }
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            lease: Duration::from_secs(10),
            renew: Duration::from_secs(1),
            demote_after: Duration::from_secs(6),
            node_lost: Duration::from_secs(20),
        }
    }
}

impl Timings {
    /// The defaults, scaled by `$SUNDIAL_CLUSTER_TIMINGS` (`scale=0.5` halves each; for
    /// tests, like `$SUNDIAL_STORE_MAX_VALUE`). Anything else there is ignored with a
    /// warning.
    pub fn from_env() -> Timings {
        let Ok(value) = std::env::var("SUNDIAL_CLUSTER_TIMINGS") else {
            return Timings::default();
        };
        let scale = value
            .trim()
            .strip_prefix("scale=")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| (0.05..=10.0).contains(s));
        match scale {
            Some(scale) => Timings::default().scaled(scale),
            None => {
                tracing::warn!("$SUNDIAL_CLUSTER_TIMINGS={value:?} is not `scale=F` with F between 0.05 and 10; the default timings are used");
                Timings::default()
            }
        }
    }

    /// Every timing multiplied by `factor`.
    pub fn scaled(self, factor: f64) -> Timings {
        let scale = |d: Duration| d.mul_f64(factor);
        Timings {
            lease: scale(self.lease),
            renew: scale(self.renew),
            demote_after: scale(self.demote_after),
            node_lost: scale(self.node_lost),
        }
    }
}

/// How this daemon takes part in a cluster (`--node`, with a PostgreSQL `--store`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster.
    pub node: String,
    pub timings: Timings,
    /// Where this node's API answers, shown to the others.
    pub url: String,
    /// The most runs this node runs at once (`--capacity`).
    pub capacity: usize,
    /// What this node carries (`--label`): it runs only the deployments whose
    /// `node_labels` it has.
    pub labels: labels::Labels,
}

/// The default `--capacity`: four runs per core.
pub fn default_capacity() -> usize {
    4 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The default node name: the host's name, if it makes one ([`check_node_name`]).
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| check_node_name(name, true).is_ok())
        .unwrap_or_else(|| "sundial".into())
}

/// Checks `--node`: a name of 1 to 64 letters, digits, `.`, `_` or `-`, given with a
/// PostgreSQL store (alone, a daemon has no node).
pub fn check_node_name(name: &str, clustered: bool) -> Result<(), String> {
    if !clustered {
        return Err("--node: a node name is for a cluster, which needs a PostgreSQL --store; leave --node unset with SQLite".into());
    }
    let fits = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !fits {
        return Err(format!("--node: {name:?} is not a node name; give 1 to 64 letters, digits, `.`, `_` or `-` (e.g. the host's name)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_name_is_short_plain_and_for_a_cluster() {
        assert!(check_node_name("db-1.example", true).is_ok());
        for bad in ["", "a/b", "with space", &"x".repeat(65)] {
            let e = check_node_name(bad, true).unwrap_err();
            assert!(e.starts_with("--node: "), "{e}");
        }
        assert!(check_node_name("a", false)
            .unwrap_err()
            .contains("PostgreSQL --store"));
    }

    #[test]
    fn timings_scale_together_and_keep_their_order() {
        let half = Timings::default().scaled(0.5);
        assert_eq!(half.lease, Duration::from_secs(5));
        assert_eq!(half.demote_after, Duration::from_secs(3));
        // A leader gives up well before its lease expires on the server.
        for t in [Timings::default(), half] {
            assert!(t.renew < t.demote_after && t.demote_after < t.lease && t.lease < t.node_lost);
        }
    }
}
