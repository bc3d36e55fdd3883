//! What the engine publishes for the HTTP API and the logs: readiness, the applied
//! commit and its findings, how reading the repository goes, and the deployments in force
//! with their next fire times.
//! Published through a `tokio::sync::watch` channel: the API reads the latest value and
//! never reaches into the engine's state.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::reconcile::SharedDeployment;
use crate::store::FileError;
use crate::validate::Deployment;

use super::sync::Attempt;

#[derive(Debug, Clone, Default)]
pub struct Status {
    /// True once the first sync was applied.
    pub ready: bool,
    /// The newest commit seen and applied.
    pub commit: Option<String>,
    pub synced_at: Option<DateTime<Utc>>,
    /// Validation errors of that commit.
    pub errors: Vec<FileError>,
    pub warnings: Vec<FileError>,
    /// How the newest attempts to fetch and read the repository went.
    pub source: SourceHealth,
    pub deployments: DeploymentViews,
    /// Why the state database cannot be written now (a full disk), if so.
    pub store_error: Option<String>,
    /// The wall clock was stepped back: what it means, and when schedules resume.
    pub clock_warning: Option<(String, DateTime<Utc>)>,
    /// How notification deliveries stand.
    pub notifications: crate::store::OutboxCounts,
    /// This node's part in a cluster (a PostgreSQL store), or `None` alone.
    pub cluster: Option<ClusterStatus>,
}

/// This node's part in a cluster, and the cluster as the keeper last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// The epoch this node leads at, while it leads (it schedules).
    pub leads: Option<i64>,
    /// The node that holds the lease and its epoch, while one does.
    pub leader: Option<(String, i64)>,
    /// Every node, by name.
    pub nodes: Vec<NodeStatus>,
    /// Why the lease and heartbeat cannot be kept now.
    pub error: Option<String>,
}

/// A node of the cluster, as the keeper last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    /// A heartbeat within the node-lost time.
    pub alive: bool,
    /// The most runs it runs at once (`--capacity`), if it said.
    pub capacity: Option<i64>,
    /// The runs it runs now.
    pub running: i64,
    /// What it carries (`--label`), as `k=v,k2=v2`.
    pub labels: String,
    /// Where its API answers (`--public-url`, else its listening address).
    pub url: Option<String>,
}

impl ClusterStatus {
    pub fn new(node: &str, leads: Option<i64>, view: &crate::cluster::LeaseView) -> ClusterStatus {
        ClusterStatus {
            node: node.to_string(),
            leads,
            leader: view
                .leader
                .as_ref()
                .filter(|l| l.live)
                .map(|l| (l.node().to_string(), l.epoch)),
            nodes: view
                .nodes
                .iter()
                .map(|(n, alive)| NodeStatus {
                    name: n.name.clone(),
                    alive: *alive,
                    capacity: n.capacity,
                    running: n.running,
                    labels: n.labels.clone(),
                    url: n.url.clone(),
                })
                .collect(),
            error: view.error.clone(),
        }
    }

    /// The node that runs (or ran) `run`, and where its API answers, when that is not
    /// this node: the run's log is kept there.
    pub fn elsewhere(&self, run: &crate::store::Run) -> Option<(String, Option<String>)> {
        let node = run.node.as_deref().filter(|n| *n != self.node)?;
        Some((node.to_string(), self.url_of(node).map(str::to_string)))
    }

    /// Where `node`'s API answers, as it said when it joined.
    pub fn url_of(&self, node: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.name == node)
            .and_then(|n| n.url.as_deref())
    }

    /// `leader (epoch 7)`, `standby (leader a, epoch 7)` or `standby (no leader)`: the
    /// readiness answer's and the systemd status line's words.
    pub fn role_text(&self) -> String {
        match (&self.leader, self.leads) {
            (_, Some(epoch)) => format!("leader (epoch {epoch})"),
            (Some((leader, epoch)), None) => format!("standby (leader {leader}, epoch {epoch})"),
            (None, None) => "standby (no leader)".to_string(),
        }
    }

    /// `leader`, or `standby`.
    pub fn role(&self) -> &'static str {
        if self.leads.is_some() {
            "leader"
        } else {
            "standby"
        }
    }
}

/// Which step of reading the source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// Opening or reading the repository and branch (missing, damaged, no branch, ...).
    Read,
    /// `git fetch` of the configured remote.
    Fetch,
}

impl SourceErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceErrorKind::Read => "read",
            SourceErrorKind::Fetch => "fetch",
        }
    }
}

/// The repository's side of the status, apart from the files' validation errors: the
/// newest attempt's problem, cleared by the first attempt that succeeds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceHealth {
    /// What the newest attempt failed at, and the message that says what to do.
    pub error: Option<(SourceErrorKind, String)>,
    /// When the failing began (the first of the attempts failing since).
    pub since: Option<DateTime<Utc>>,
    /// The last attempt that fetched (with a remote) and read the branch.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last successful `git fetch`.
    pub last_fetch_at: Option<DateTime<Utc>>,
    /// Failed reads since the daemon started.
    pub read_failures: u64,
    /// Failed fetches since the daemon started.
    pub fetch_failures: u64,
}

impl SourceHealth {
    /// Takes in how an attempt at `now` went.
    pub fn record(&mut self, attempt: &Attempt, now: DateTime<Utc>) {
        match &attempt.fetch {
            Some(Ok(())) => self.last_fetch_at = Some(now),
            Some(Err(_)) => self.fetch_failures += 1,
            None => {}
        }
        if attempt.read.is_err() {
            self.read_failures += 1;
        }
        self.error = attempt.problem();
        if self.error.is_some() {
            self.since.get_or_insert(now);
        } else {
            self.since = None;
            self.last_success_at = Some(now);
        }
    }

    /// Failed fetches and reads since the daemon started.
    pub fn failures(&self) -> u64 {
        self.read_failures + self.fetch_failures
    }
}

/// The deployments in force, shared: publishing a status (or reading it) copies no
/// view, and changing one view copies only that view while an older status holds it.
/// Reads like a list (`iter`, `len`, `is_empty`, `&views` in a `for`).
#[derive(Debug, Clone, Default)]
pub struct DeploymentViews(Arc<Vec<Arc<DeploymentView>>>);

impl DeploymentViews {
    pub fn iter(&self) -> ViewIter<'_> {
        self.0.iter().map(|v| &**v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0 = Arc::default();
    }

    /// The views, each still shared with any older status that holds it.
    pub(super) fn into_arcs(self) -> Vec<Arc<DeploymentView>> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }

    pub(super) fn from_arcs(views: Vec<Arc<DeploymentView>>) -> DeploymentViews {
        DeploymentViews(Arc::new(views))
    }
}

impl From<Vec<DeploymentView>> for DeploymentViews {
    fn from(views: Vec<DeploymentView>) -> DeploymentViews {
        DeploymentViews(Arc::new(views.into_iter().map(Arc::new).collect()))
    }
}

/// The iterator over [`DeploymentViews`] (a plain type: no drop, no hidden borrows).
pub type ViewIter<'a> = std::iter::Map<
    std::slice::Iter<'a, Arc<DeploymentView>>,
    fn(&'a Arc<DeploymentView>) -> &'a DeploymentView,
>;

impl<'a> IntoIterator for &'a DeploymentViews {
    type Item = &'a DeploymentView;
    type IntoIter = ViewIter<'a>;
    fn into_iter(self) -> ViewIter<'a> {
        self.iter()
    }
}

/// One deployment in force as the status shows it. The deployment itself is not copied:
/// the view points at its file's deployments, shared with the engine (10,000 views cost
/// about a tenth of 10,000 copies). Beside it, what the run time adds: the commit its runs
/// execute, a pause after failures, whether its file is held back, and its next fires.
#[derive(Debug, Clone)]
pub struct DeploymentView {
    deployment: SharedDeployment,
    /// The commit its runs execute (shared by the views of one file).
    pub commit: Arc<str>,
    /// Paused at run time after failing runs in a row (not what git says), until resumed.
    /// Boxed: rare, and each of 10,000 views would keep 64 bytes for it.
    pub paused_after_failures: Option<Box<crate::store::Pause>>,
    /// True when its file fails at the newest commit and this is the last good version.
    pub held_back: bool,
    /// The next fire of each schedule, in the order of the deployment's `schedules`.
    nexts: Box<[Option<DateTime<Utc>>]>,
}

impl DeploymentView {
    /// The view of `deployment`, with no next fire and no pause yet.
    pub fn new(deployment: SharedDeployment, commit: Arc<str>, held_back: bool) -> DeploymentView {
        let schedules = deployment.schedules.len();
        DeploymentView {
            deployment,
            commit,
            paused_after_failures: None,
            held_back,
            nexts: vec![None; schedules].into_boxed_slice(),
        }
    }

    /// The deployment as committed (name, file, parameters, limits, ...).
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// Whether it is the very deployment `file[index]` (not a copy of it).
    pub fn is_of(&self, file: &Arc<Vec<Deployment>>, index: usize) -> bool {
        self.deployment.is(file, index)
    }

    pub fn name(&self) -> &str {
        &self.deployment().name
    }

    /// Its schedules with their next fires.
    pub fn schedules(&self) -> impl ExactSizeIterator<Item = ScheduleView<'_>> + Clone {
        self.deployment()
            .schedules
            .iter()
            .zip(self.nexts.iter())
            .map(|(planned, next)| ScheduleView {
                id: &planned.id,
                description: &planned.description,
                schedule: &planned.schedule,
                active: planned.active,
                next: *next,
            })
    }

    /// Sets the next fire of schedule `id`; false when it has no such schedule.
    pub fn set_next(&mut self, id: &str, next: Option<DateTime<Utc>>) -> bool {
        let Some(j) = self.deployment().schedules.iter().position(|s| s.id == id) else {
            return false;
        };
        self.nexts[j] = next;
        true
    }

    /// The next fire of schedule `id`, if it has that schedule.
    pub fn next_of(&self, id: &str) -> Option<Option<DateTime<Utc>>> {
        let j = self
            .deployment()
            .schedules
            .iter()
            .position(|s| s.id == id)?;
        Some(self.nexts[j])
    }
}

/// Views for tests: a deployment alone in its file, with its schedules' next fires.
#[cfg(test)]
impl DeploymentView {
    pub fn alone(
        deployment: Deployment,
        commit: &str,
        nexts: &[Option<DateTime<Utc>>],
    ) -> DeploymentView {
        let shared = SharedDeployment::new(&Arc::new(vec![deployment]), 0).unwrap();
        let mut view = DeploymentView::new(shared, commit.into(), false);
        view.nexts = nexts.to_vec().into_boxed_slice();
        assert_eq!(view.nexts.len(), view.deployment().schedules.len());
        view
    }
}

/// A committed schedule for tests.
#[cfg(test)]
pub fn planned(id: &str, schedule: crate::schedule::Schedule) -> crate::validate::PlannedSchedule {
    crate::validate::PlannedSchedule {
        id: id.into(),
        fingerprint: id.into(),
        description: format!("{schedule:?}"),
        schedule,
        anchored_at_commit: false,
        introduced_at: None,
        active: true,
        parameters: Default::default(),
    }
}

/// One schedule of a [`DeploymentView`]: the schedule as committed, and its next fire.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleView<'a> {
    pub id: &'a str,
    /// What it says, for people: `cron 0 9 * * * (America/Chicago)`.
    pub description: &'a str,
    /// The timing itself, for listing upcoming fires and saying it in words.
    pub schedule: &'a crate::schedule::Schedule,
    pub active: bool,
    pub next: Option<DateTime<Utc>>,
}

impl ScheduleView<'_> {
    /// Its IANA time zone's name.
    pub fn timezone(&self) -> &'static str {
        self.schedule.timezone().name()
    }
}

impl Status {
    /// The deployment firing next, for logs and the systemd status line.
    pub fn next_fire(&self) -> Option<(&str, DateTime<Utc>)> {
        self.deployments
            .iter()
            .flat_map(|d| {
                d.schedules()
                    .filter_map(move |s| s.next.map(|n| (d.name(), n)))
            })
            .min_by_key(|(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn attempt(fetch: Option<Result<(), &str>>, read: Result<(), &str>) -> Attempt {
        Attempt {
            fetch: fetch.map(|r| r.map_err(str::to_string)),
            read: read.map_err(str::to_string),
        }
    }

    /// Regression (issue 12.6): a source error stayed until the next new commit; it must
    /// clear at the first attempt that succeeds, with the failures counted.
    #[test]
    fn a_source_error_shows_the_newest_attempt_and_clears_at_the_first_success() {
        let mut health = SourceHealth::default();
        health.record(&attempt(None, Ok(())), at(0));
        assert_eq!(health.error, None);
        assert_eq!(health.last_success_at, Some(at(0)));

        health.record(&attempt(None, Err("branch gone")), at(10));
        health.record(&attempt(None, Err("branch still gone")), at(20));
        assert_eq!(
            health.error,
            Some((SourceErrorKind::Read, "branch still gone".into()))
        );
        assert_eq!(health.since, Some(at(10)));
        assert_eq!((health.read_failures, health.failures()), (2, 2));
        assert_eq!(health.last_success_at, Some(at(0)));

        health.record(&attempt(None, Ok(())), at(30));
        assert_eq!((health.error.clone(), health.since), (None, None));
        assert_eq!(health.last_success_at, Some(at(30)));
        assert_eq!(health.failures(), 2, "a counter never goes down");
    }

    #[test]
    fn a_failed_fetch_is_its_own_kind_and_names_a_failed_read_too() {
        let mut health = SourceHealth::default();
        health.record(&attempt(Some(Ok(())), Ok(())), at(0));
        assert_eq!(health.last_fetch_at, Some(at(0)));

        health.record(&attempt(Some(Err("fetch failed")), Ok(())), at(10));
        assert_eq!(
            health.error,
            Some((SourceErrorKind::Fetch, "fetch failed".into()))
        );
        assert_eq!(health.last_fetch_at, Some(at(0)));
        health.record(
            &attempt(Some(Err("fetch failed")), Err("no branch")),
            at(20),
        );
        assert_eq!(
            health.error,
            Some((
                SourceErrorKind::Fetch,
                "fetch failed; reading the branch as fetched before failed too: no branch".into()
            ))
        );
        assert_eq!((health.fetch_failures, health.read_failures), (2, 1));
        assert_eq!(health.since, Some(at(10)));

        health.record(&attempt(Some(Ok(())), Ok(())), at(30));
        assert_eq!(health.error, None);
        assert_eq!(health.last_fetch_at, Some(at(30)));
    }
}
