//! Wire types of the HTTP API (DESIGN.md "HTTP API", JSON shapes), shared by the server
//! and the CLI client so both sides agree by construction.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::engine::status::{DeploymentView, SourceHealth, Status};
use crate::store::{time_text, FileError, Run};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunJson {
    pub id: i64,
    pub deployment: String,
    pub state: String,
    pub trigger: String,
    pub scheduled_for: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub attempt: u32,
    pub commit: String,
    pub exit_code: Option<i32>,
    pub parameters: Json,
    pub reason: Option<String>,
    /// For a retry: the id of the attempt it follows.
    #[serde(default)]
    pub retry_of: Option<i64>,
    /// The schedule whose slot it is (null for manual runs).
    #[serde(default)]
    pub schedule_id: Option<String>,
    /// Who or what made it, in words.
    #[serde(default)]
    pub cause: String,
    /// The node that ran it (a PostgreSQL cluster), else null.
    #[serde(default)]
    pub node: Option<String>,
    /// The epoch of the leader that scheduled it (a PostgreSQL cluster), else null.
    #[serde(default)]
    pub epoch: Option<i64>,
}

impl From<&Run> for RunJson {
    fn from(run: &Run) -> RunJson {
        RunJson::from(run.clone())
    }
}

/// Takes the run's text instead of copying it (a page of runs is converted this way).
impl From<Run> for RunJson {
    fn from(run: Run) -> RunJson {
        let cause = run.cause();
        RunJson {
            id: run.id,
            deployment: run.deployment,
            state: run.state.as_str().to_string(),
            trigger: run.trigger.as_str().to_string(),
            scheduled_for: run.scheduled_for.map(time_text),
            started_at: run.started_at.map(time_text),
            ended_at: run.ended_at.map(time_text),
            attempt: run.attempt,
            commit: run.commit,
            exit_code: run.exit_code,
            parameters: run.parameters,
            reason: run.reason,
            retry_of: run.retry_of,
            schedule_id: run.schedule_id,
            cause,
            node: run.node,
            epoch: run.epoch,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusJson {
    pub ready: bool,
    pub commit: Option<String>,
    pub synced_at: Option<String>,
    /// Validation errors of the newest commit.
    pub errors: Vec<FileError>,
    pub warnings: Vec<FileError>,
    /// Why the state database cannot be written now (a full disk), or null.
    pub store_error: Option<String>,
    /// Set while a wall clock stepped back holds schedules until it catches up, or null.
    pub clock_warning: Option<String>,
    /// Fetching and reading the repository, apart from the files' errors.
    pub source: SourceJson,
    /// How notification deliveries stand.
    pub notifications: NotificationsJson,
    /// This node's part in a cluster (a PostgreSQL store), or null alone.
    #[serde(default)]
    pub cluster: Option<ClusterJson>,
}

/// A cluster as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterJson {
    /// This node's name.
    pub node: String,
    /// `leader` (it schedules) or `standby`.
    pub role: String,
    /// The node that holds the lease, or null during a takeover.
    pub leader: Option<String>,
    /// The lease's epoch (one more at each change of leader), or null.
    pub epoch: Option<i64>,
    /// Every node of the cluster, and whether it is alive (a recent heartbeat).
    pub nodes: Vec<NodeJson>,
    /// Why this node cannot keep its lease and heartbeat now, or null.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeJson {
    pub name: String,
    /// A heartbeat within the node-lost time (20 s by default).
    pub alive: bool,
    /// The most runs it runs at once (`--capacity`), or null.
    #[serde(default)]
    pub capacity: Option<i64>,
    /// The runs it runs now.
    #[serde(default)]
    pub running: i64,
    /// What it carries (`--label KEY=VALUE`), by key.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl From<&crate::engine::status::ClusterStatus> for ClusterJson {
    fn from(c: &crate::engine::status::ClusterStatus) -> ClusterJson {
        ClusterJson {
            node: c.node.clone(),
            role: c.role().to_string(),
            leader: c.leader.as_ref().map(|(node, _)| node.clone()),
            epoch: c.leader.as_ref().map(|(_, epoch)| *epoch),
            nodes: c
                .nodes
                .iter()
                .map(|n| NodeJson {
                    name: n.name.clone(),
                    alive: n.alive,
                    capacity: n.capacity,
                    running: n.running,
                    labels: crate::cluster::labels::from_text(&n.labels),
                })
                .collect(),
            error: c.error.clone(),
        }
    }
}

/// The outbox of notifications at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationsJson {
    pub delivered: u64,
    /// Waiting for their first try or a retry.
    pub waiting: u64,
    /// Waiting after at least one failed try.
    pub failing: u64,
    /// Failed for a day and given up.
    pub given_up: u64,
    /// The newest failure of a delivery not yet made: where it went and why, or null.
    pub last_error: Option<String>,
}

impl From<&crate::store::OutboxCounts> for NotificationsJson {
    fn from(c: &crate::store::OutboxCounts) -> NotificationsJson {
        NotificationsJson {
            delivered: c.delivered,
            waiting: c.waiting,
            failing: c.failing,
            given_up: c.given_up,
            last_error: c
                .last_error
                .as_ref()
                .map(|(target, error, at)| format!("{}: {target}: {error}", time_text(*at))),
        }
    }
}

impl From<&Status> for StatusJson {
    fn from(s: &Status) -> StatusJson {
        StatusJson {
            ready: s.ready,
            commit: s.commit.clone(),
            synced_at: s.synced_at.map(time_text),
            errors: s.errors.clone(),
            store_error: s.store_error.clone(),
            clock_warning: s.clock_warning.as_ref().map(|(text, _)| text.clone()),
            warnings: s.warnings.clone(),
            source: SourceJson::from(&s.source),
            notifications: NotificationsJson::from(&s.notifications),
            cluster: s.cluster.as_ref().map(ClusterJson::from),
        }
    }
}

/// How the newest attempt to fetch and read the repository went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceJson {
    /// What is wrong and what to do; null once an attempt succeeds.
    pub error: Option<String>,
    /// `read` (the repository or branch) or `fetch` (`git fetch` of --remote); null
    /// without an error.
    pub kind: Option<String>,
    /// When the failing began.
    pub since: Option<String>,
    /// The last attempt that fetched (with a remote) and read the branch.
    pub last_success_at: Option<String>,
    /// The last successful `git fetch` (null without a remote).
    pub last_fetch_at: Option<String>,
    /// Failed fetches and reads since the daemon started.
    pub failures: u64,
}

impl From<&SourceHealth> for SourceJson {
    fn from(h: &SourceHealth) -> SourceJson {
        SourceJson {
            error: h.error.as_ref().map(|(_, message)| message.clone()),
            kind: h.error.as_ref().map(|(kind, _)| kind.as_str().to_string()),
            since: h.since.map(time_text),
            last_success_at: h.last_success_at.map(time_text),
            last_fetch_at: h.last_fetch_at.map(time_text),
            failures: h.failures(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduleJson {
    pub id: String,
    pub description: String,
    pub timezone: String,
    pub active: bool,
    /// The next fire time, RFC 3339 UTC; null when it has ended or is not planned.
    pub next: Option<String>,
}

/// A pause after failures: since when, and the note that says why and how to resume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PauseJson {
    pub since: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentJson {
    pub name: String,
    pub file: String,
    pub commit: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub paused: bool,
    /// Paused at run time after failing runs in a row (git says otherwise), or null.
    pub paused_after_failures: Option<PauseJson>,
    /// True when its file fails at the newest commit and this is its last good version.
    pub held_back: bool,
    /// The earliest next fire of its schedules.
    pub next: Option<String>,
    pub schedules: Vec<ScheduleJson>,
    /// Its newest run, if it has one.
    pub last_run: Option<RunJson>,
}

impl DeploymentJson {
    pub fn new(d: &DeploymentView, last_run: Option<&Run>) -> DeploymentJson {
        let dep = d.deployment();
        DeploymentJson {
            last_run: last_run.map(RunJson::from),
            name: dep.name.clone(),
            file: dep.file.clone(),
            commit: d.commit.to_string(),
            description: dep.description.clone(),
            tags: dep.tags.clone(),
            paused: dep.paused,
            paused_after_failures: d.paused_after_failures.as_ref().map(|p| PauseJson {
                since: time_text(p.since),
                note: p.note.clone(),
            }),
            held_back: d.held_back,
            next: d.schedules().filter_map(|s| s.next).min().map(time_text),
            schedules: d
                .schedules()
                .map(|s| ScheduleJson {
                    id: s.id.to_string(),
                    description: s.description.to_string(),
                    timezone: s.timezone().to_string(),
                    active: s.active,
                    next: s.next.map(time_text),
                })
                .collect(),
        }
    }
}

/// The body of every error answer; `errors` lists every problem when there are several
/// (a trigger whose parameters fail the deployment's schema).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorJson {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The largest a trigger's parameters may be, as compact JSON (what the run receives).
pub use crate::runner::launch::MAX_PARAMETERS_BYTES;

/// The body of `POST /api/deployments/{name}/runs`: overrides merged over the
/// deployment's default parameters. An empty body means no overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriggerJson {
    #[serde(default)]
    pub parameters: serde_json::Map<String, Json>,
}

/// `GET /api/deployments/{name}/explain`: what happened at each slot, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExplanationJson {
    pub deployment: String,
    /// What holds for the whole deployment now (paused, held back, no schedules).
    pub notes: Vec<String>,
    pub slots: Vec<SlotJson>,
    /// For an instant no slot falls on: why, with the nearest fires; else null.
    pub no_slot: Option<NoSlotJson>,
    /// More slots fell in the range than are listed (the first 1000 are).
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotJson {
    pub at: String,
    pub schedule: String,
    /// `ran`, `failed`, `running`, `waiting`, `skipped`, `refused`, `cancelled`,
    /// `upcoming`, `not_deployed_yet` or `not_in_force`.
    pub what: String,
    /// The first attempt's run.
    pub run_id: Option<i64>,
    /// The last attempt's state.
    pub state: Option<String>,
    pub attempts: u32,
    pub lateness_seconds: Option<f64>,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NoSlotJson {
    pub why: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl From<&crate::explain::Explanation> for ExplanationJson {
    fn from(e: &crate::explain::Explanation) -> ExplanationJson {
        ExplanationJson {
            deployment: e.deployment.clone(),
            notes: e.notes.clone(),
            slots: e
                .slots
                .iter()
                .map(|s| SlotJson {
                    at: time_text(s.at),
                    schedule: s.schedule.clone(),
                    what: s.what.to_string(),
                    run_id: s.run_id,
                    state: s.state.clone(),
                    attempts: s.attempts,
                    lateness_seconds: s.lateness_seconds,
                    why: s.why.clone(),
                })
                .collect(),
            no_slot: e.no_slot.as_ref().map(|n| NoSlotJson {
                why: n.why.clone(),
                before: n.before.map(time_text),
                after: n.after.map(time_text),
            }),
            truncated: e.truncated,
        }
    }
}

/// An SLA breach, as `GET /api/breaches` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BreachJson {
    pub id: i64,
    pub deployment: String,
    pub sla: String,
    /// `time_to_completion`, `lateness`, `frequency` or `min_duration`.
    pub kind: String,
    pub severity: String,
    /// What it is about: `run:ID`, `slot:TIME` or `stale:SINCE`.
    pub subject: String,
    pub run_id: Option<i64>,
    /// When it was found.
    pub at: String,
    pub detail: String,
}

impl From<&crate::store::StoredBreach> for BreachJson {
    fn from(b: &crate::store::StoredBreach) -> BreachJson {
        BreachJson {
            id: b.id,
            deployment: b.deployment.clone(),
            sla: b.sla.clone(),
            kind: b.kind.clone(),
            severity: b.severity.clone(),
            subject: b.subject.clone(),
            run_id: b.run_id,
            at: time_text(b.at),
            detail: b.detail.clone(),
        }
    }
}
