//! `GET /metrics`: Prometheus metrics (OpenMetrics text), derived at scrape time from the
//! store and the published [`Status`](crate::engine::status::Status), so the engine keeps
//! no counters. Run counters are counts of stored rows (one `GROUP BY`); the lateness
//! histogram is computed in SQL over every first attempt of a slot, like Kubernetes'
//! `cronjob_controller_job_creation_skew`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::{read, ApiError, ApiState};
use crate::store::{Lateness, RunCount};

/// Upper bounds (seconds) of the lateness histogram: a healthy daemon starts within
/// milliseconds; minutes mean downtime or a full concurrency slot.
const LATENESS_BOUNDS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0,
];

type Labels = Vec<(&'static str, String)>;

pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let commit = state.status.borrow().commit.clone();
    let (counts, lateness, applied_at, breaches) = read(state.db.clone(), move |store| {
        let applied = match &commit {
            Some(sha) => store.applied_at(sha)?,
            None => None,
        };
        Ok((
            store.run_counts()?,
            store.lateness(&LATENESS_BOUNDS)?,
            applied,
            store.breach_counts()?,
        ))
    })
    .await?;
    let mut registry = registry(&state, &counts, lateness, applied_at);
    let breached = Family::<Labels, Counter>::default();
    for (deployment, sla, count) in breaches {
        breached
            .get_or_create(&vec![("deployment", deployment), ("sla", sla)])
            .inc_by(count);
    }
    registry.register(
        "sla_breaches",
        "SLA breaches recorded, by deployment and SLA name",
        breached,
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn registry(
    state: &ApiState,
    counts: &[RunCount],
    lateness: Lateness,
    applied_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Registry {
    let mut registry = Registry::with_prefix("sundial");

    let started = Family::<Labels, Counter>::default();
    let finished = Family::<Labels, Counter>::default();
    let skipped = Family::<Labels, Counter>::default();
    let running = Gauge::<i64>::default();
    for c in counts {
        let deployment = ("deployment", c.deployment.clone());
        if c.started > 0 {
            started
                .get_or_create(&vec![deployment.clone(), ("trigger", c.trigger.clone())])
                .inc_by(c.started);
        }
        let ended = crate::store::RunState::parse(&c.state).is_some_and(|s| s.is_final());
        if ended && c.started > 0 {
            finished
                .get_or_create(&vec![deployment.clone(), ("state", c.state.clone())])
                .inc_by(c.started);
        }
        if ended && c.rows > c.started {
            let reason = c.reason.clone().unwrap_or_else(|| "unknown".into());
            skipped
                .get_or_create(&vec![
                    deployment,
                    ("state", c.state.clone()),
                    ("reason", reason),
                ])
                .inc_by(c.rows - c.started);
        }
        if c.state == "Running" {
            running.inc_by(c.rows as i64);
        }
    }
    registry.register(
        "runs_started",
        "Runs whose process started, by deployment and trigger",
        started,
    );
    registry.register(
        "runs_finished",
        "Started runs that ended, by deployment and final state",
        finished,
    );
    registry.register(
        "slots_skipped",
        "Due slots (and waiting runs) that never started, by deployment, state and reason",
        skipped,
    );
    registry.register(
        "running_processes",
        "Runs in state Running (a process group is alive)",
        running,
    );
    registry.register(
        "run_start_lateness_seconds",
        "started_at - scheduled_for of the first attempt of each scheduled slot",
        ConstHistogram::from(lateness),
    );

    let status = state.status.borrow();
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    registry.register(
        "ready",
        "1 once the first commit is applied",
        gauge(status.ready as i64),
    );
    registry.register(
        "deployments",
        "Deployments in force",
        gauge(status.deployments.len() as i64),
    );
    registry.register(
        "sync_errors",
        "Validation errors of the newest commit (bad files keep their last good version)",
        gauge(status.errors.len() as i64),
    );
    let source = &status.source;
    registry.register(
        "source_error",
        "1 while the newest attempt to fetch or read the repository failed (see /api/status)",
        gauge(source.error.is_some() as i64),
    );
    let failures = Family::<Labels, Counter>::default();
    for (kind, count) in [
        ("read", source.read_failures),
        ("fetch", source.fetch_failures),
    ] {
        failures
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc_by(count);
    }
    registry.register(
        "source_failures",
        "Failed reads of the repository and fetches of --remote since the daemon started",
        failures,
    );
    if let Some(at) = source.last_success_at {
        registry.register(
            "last_source_success_timestamp_seconds",
            "When an attempt last fetched (with --remote) and read the branch (Unix time)",
            gauge(at.timestamp()),
        );
    }
    if let Some(at) = source.last_fetch_at {
        registry.register(
            "last_fetch_timestamp_seconds",
            "When `git fetch` of --remote last succeeded (Unix time)",
            gauge(at.timestamp()),
        );
    }
    registry.register(
        "store_disk_full",
        "1 while the state database cannot be written because its disk is full",
        gauge(i64::from(status.store_error.is_some())),
    );
    if let Some(cluster) = &status.cluster {
        registry.register(
            "leader",
            "1 while this node leads its cluster (schedules), 0 while it stands by",
            gauge(i64::from(cluster.leads.is_some())),
        );
        registry.register(
            "leader_epoch",
            "The epoch of the cluster's lease (one more at each change of leader); 0 while none is held",
            gauge(cluster.leader.as_ref().map_or(0, |(_, epoch)| *epoch)),
        );
        registry.register(
            "cluster_nodes_alive",
            "Nodes of the cluster with a recent heartbeat",
            gauge(cluster.nodes.iter().filter(|n| n.alive).count() as i64),
        );
        let (running, capacity) = (
            Family::<Labels, Gauge>::default(),
            Family::<Labels, Gauge>::default(),
        );
        for n in cluster.nodes.iter().filter(|n| n.alive) {
            let node = vec![("node", n.name.clone())];
            running.get_or_create(&node).set(n.running);
            if let Some(most) = n.capacity {
                capacity.get_or_create(&node).set(most);
            }
        }
        registry.register(
            "cluster_node_running",
            "Runs each live node of the cluster runs now",
            running,
        );
        registry.register(
            "cluster_node_capacity",
            "The most runs each live node of the cluster runs at once (--capacity)",
            capacity,
        );
    }
    let outbox = &status.notifications;
    for (name, help, value) in [
        (
            "notifications_delivered",
            "Notification deliveries made (kept as long as run history)",
            outbox.delivered,
        ),
        (
            "notifications_waiting",
            "Notification deliveries waiting for their first try or a retry",
            outbox.waiting,
        ),
        (
            "notifications_failing",
            "Notification deliveries waiting after at least one failed try",
            outbox.failing,
        ),
        (
            "notifications_given_up",
            "Notification deliveries that failed for a day and were given up",
            outbox.given_up,
        ),
    ] {
        registry.register(name, help, gauge(value as i64));
    }
    registry.register(
        "sync_warnings",
        "Validation warnings of the newest commit",
        gauge(status.warnings.len() as i64),
    );
    if let Some(at) = status.synced_at {
        registry.register(
            "last_sync_timestamp_seconds",
            "When the daemon last handled a sync (Unix time)",
            gauge(at.timestamp()),
        );
    }
    if let Some(at) = applied_at {
        registry.register(
            "applied_commit_timestamp_seconds",
            "When the newest commit was applied (Unix time)",
            gauge(at.timestamp()),
        );
    }
    if let Some(commit) = &status.commit {
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&vec![("commit", commit.clone())]).set(1);
        registry.register("applied_commit", "The newest commit applied", info);
    }
    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    registry.register("build_info", "The sundial build", build);
    registry
}

/// A histogram whose buckets were counted elsewhere (in SQL).
#[derive(Debug)]
struct ConstHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, count in this bucket alone); the last bound is +Inf.
    buckets: Vec<(f64, u64)>,
}

impl From<Lateness> for ConstHistogram {
    fn from(l: Lateness) -> ConstHistogram {
        let mut buckets = Vec::with_capacity(LATENESS_BOUNDS.len() + 1);
        let mut below = 0;
        for (bound, at_most) in LATENESS_BOUNDS.iter().zip(&l.at_most) {
            buckets.push((*bound, at_most - below));
            below = *at_most;
        }
        buckets.push((f64::INFINITY, l.count - below));
        ConstHistogram {
            sum: l.sum_seconds,
            count: l.count,
            buckets,
        }
    }
}

impl TypedMetric for ConstHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
