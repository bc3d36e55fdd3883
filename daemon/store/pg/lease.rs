//! The cluster's lease and nodes on PostgreSQL: the statements the keeper
//! (`crate::cluster::keeper`) sends on a connection of its own.
//!
//! Contract:
//! - There is one lease row (`sundial_lease`): its holder, its epoch and when it expires,
//!   by the server's clock (`clock_timestamp()`), never a node's. [`LeaseStore::take_or_renew`]
//!   takes an expired or released lease (the epoch goes up by one) or renews this
//!   holder's own (same epoch) in one statement; two nodes trying at once are serialised
//!   by the row lock, and only one gets it.
//! - An epoch is never reused: a node that lost the lease can only come back at a new
//!   one, so no write from before a loss shares an epoch with one after it.
//! - A node name is one daemon at a time: [`LeaseStore::join`] refuses a name whose
//!   row was heartbeated recently by another state directory (`instance`).

use std::sync::Arc;
use std::time::Duration;

use postgres::Client;

use super::super::StoreError;
use super::conn::Conn;
use super::Target;

/// How long one keeper call may take: well inside the time a leader may go without
/// renewing, so a stuck server is noticed in time.
const CALL_LIMIT: Duration = Duration::from_secs(2);

/// Who holds the lease, as the server sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// `node/incarnation`.
    pub holder: String,
    pub epoch: i64,
    /// Whether the lease is unexpired now.
    pub live: bool,
}

impl Leader {
    /// The node part of the holder.
    pub fn node(&self) -> &str {
        self.holder
            .rsplit_once('/')
            .map_or(self.holder.as_str(), |(node, _)| node)
    }
}

/// A node of the cluster, as the server sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub name: String,
    /// Seconds since its last heartbeat, by the server's clock.
    pub heartbeat_age: f64,
    pub url: Option<String>,
    /// The most runs it runs at once (`--capacity`).
    pub capacity: Option<i64>,
    /// The runs it runs now.
    pub running: i64,
    /// What it carries (`--label`), as `k=v,k2=v2`.
    pub labels: String,
}

/// What a node tells the others of itself when it joins.
#[derive(Debug, Clone)]
pub struct Joining {
    pub node: String,
    /// Its state directory's id: one daemon per name.
    pub instance: String,
    /// Where its API answers.
    pub url: String,
    pub capacity: i64,
    /// As `k=v,k2=v2`.
    pub labels: String,
}

/// The keeper's connection.
pub struct LeaseStore {
    conn: Conn,
}

impl LeaseStore {
    /// A connection to `target` (made on first use, and again after a failure).
    pub fn new(target: &Arc<Target>) -> LeaseStore {
        LeaseStore {
            conn: Conn::new(target.clone(), CALL_LIMIT),
        }
    }

    /// Registers this daemon as `node` and returns its incarnation (one more at each
    /// start). Refused (with the seconds since that heartbeat) when another state
    /// directory (`instance`) heartbeated as `node` within `live_for`: two daemons may not
    /// share a name. A lease still held by an earlier incarnation of the same state
    /// directory is released: that daemon is dead (this one holds its state directory's
    /// lock), and its successor need not wait for the lease to expire.
    pub fn join(
        &self,
        joining: &Joining,
        live_for: Duration,
    ) -> Result<Result<i64, f64>, StoreError> {
        let Joining {
            node,
            instance,
            url,
            capacity,
            labels,
        } = joining.clone();
        let secs = live_for.as_secs_f64();
        self.conn.call(move |c| {
            let mut c = c.transaction()?;
            let before: Option<String> = c
                .query_opt(
                    "SELECT instance FROM sundial_nodes WHERE name = $1 FOR UPDATE",
                    &[&node],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            let joined = c.query_opt(
                "INSERT INTO sundial_nodes (name, incarnation, instance, started_at, heartbeat_at, url, version, capacity, labels)
                 VALUES ($1, 1, $2, clock_timestamp(), clock_timestamp(), $3, $4, $6, $7)
                 ON CONFLICT (name) DO UPDATE SET incarnation = sundial_nodes.incarnation + 1,
                     instance = excluded.instance, started_at = excluded.started_at,
                     heartbeat_at = excluded.heartbeat_at, url = excluded.url, version = excluded.version,
                     capacity = excluded.capacity, labels = excluded.labels
                 WHERE sundial_nodes.instance = excluded.instance
                    OR sundial_nodes.heartbeat_at < clock_timestamp() - make_interval(secs => $5)
                 RETURNING incarnation",
                &[&node, &instance, &url, &env!("CARGO_PKG_VERSION"), &secs, &capacity, &labels],
            )?;
            if let Some(row) = joined {
                let incarnation: i64 = row.try_get(0)?;
                if before.as_deref() == Some(instance.as_str()) {
                    c.execute(
                        "UPDATE sundial_lease SET expires_at = '-infinity'
                         WHERE id = 1 AND split_part(holder, '/', 1) = $1 AND holder <> $1 || '/' || $2::text",
                        &[&node, &incarnation.to_string()],
                    )?;
                }
                c.commit()?;
                return Ok(Ok(incarnation));
            }
            let age: f64 = c
                .query_one(
                    "SELECT EXTRACT(EPOCH FROM clock_timestamp() - heartbeat_at)::float8 FROM sundial_nodes WHERE name = $1",
                    &[&node],
                )?
                .try_get(0)?;
            c.commit()?;
            Ok(Err(age))
        })
    }

    /// Takes the lease if it is free (expired or released), or renews it if `holder`
    /// holds it at `epoch`, for `length` from now by the server's clock. Returns the epoch
    /// held, or `None` when another node holds it.
    pub fn take_or_renew(
        &self,
        holder: &str,
        epoch: i64,
        length: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let holder = holder.to_string();
        let secs = length.as_secs_f64();
        self.conn
            .call(move |c| take_or_renew(c, &holder, epoch, secs))
    }

    /// Gives the lease up (a graceful stop), so that a standby takes it at once.
    pub fn release(&self, holder: &str, epoch: i64) -> Result<(), StoreError> {
        let holder = holder.to_string();
        self.conn.call(move |c| {
            c.execute(
                "UPDATE sundial_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = $1 AND epoch = $2",
                &[&holder, &epoch],
            )?;
            Ok(())
        })
    }

    /// Records that `node` (this `incarnation` of it) is alive; false when a newer
    /// incarnation took the name over.
    pub fn heartbeat(&self, node: &str, incarnation: i64) -> Result<bool, StoreError> {
        let node = node.to_string();
        self.conn.call(move |c| {
            let changed = c.execute(
                "UPDATE sundial_nodes SET heartbeat_at = clock_timestamp() WHERE name = $1 AND incarnation = $2",
                &[&node, &incarnation],
            )?;
            Ok(changed == 1)
        })
    }

    /// Who holds the lease now, and every node with its heartbeat's age.
    pub fn cluster(&self) -> Result<(Option<Leader>, Vec<NodeRow>), StoreError> {
        self.conn.call(|c| {
            let row = c.query_one(
                "SELECT holder, epoch, expires_at > clock_timestamp() FROM sundial_lease WHERE id = 1",
                &[],
            )?;
            let holder: String = row.try_get(0)?;
            let leader = (!holder.is_empty())
                .then(|| -> Result<Leader, StoreError> {
                    Ok(Leader {
                        holder,
                        epoch: row.try_get(1)?,
                        live: row.try_get(2)?,
                    })
                })
                .transpose()?;
            let nodes = c
                .query(
                    "SELECT n.name, EXTRACT(EPOCH FROM clock_timestamp() - n.heartbeat_at)::float8, n.url,
                            n.capacity, n.labels,
                            (SELECT count(*) FROM runs r
                              WHERE r.node = n.name AND r.state = 'Running' AND r.ended_at IS NULL)
                     FROM sundial_nodes n ORDER BY n.name",
                    &[],
                )?
                .iter()
                .map(|r| {
                    Ok(NodeRow {
                        name: r.try_get(0)?,
                        heartbeat_age: r.try_get(1)?,
                        url: r.try_get(2)?,
                        capacity: r.try_get(3)?,
                        labels: r.try_get(4)?,
                        running: r.try_get(5)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok((leader, nodes))
        })
    }
}

/// The one statement that takes or renews the lease: renew when `holder` holds it at
/// `epoch` unexpired; take (epoch + 1) when it has expired or was released.
fn take_or_renew(
    c: &mut Client,
    holder: &str,
    epoch: i64,
    secs: f64,
) -> Result<Option<i64>, StoreError> {
    let row = c.query_opt(
        "UPDATE sundial_lease SET
             epoch = CASE WHEN holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()
                          THEN epoch ELSE epoch + 1 END,
             acquired_at = CASE WHEN holder = $1 AND epoch = $2 AND expires_at > clock_timestamp()
                          THEN acquired_at ELSE clock_timestamp() END,
             holder = $1,
             expires_at = clock_timestamp() + make_interval(secs => $3)
         WHERE id = 1 AND ((holder = $1 AND epoch = $2 AND expires_at > clock_timestamp())
                           OR expires_at <= clock_timestamp())
         RETURNING epoch",
        &[&holder, &epoch, &secs],
    )?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::{Joining, LeaseStore};
    use crate::store::pg::testing::TestDatabase;
    use crate::store::pg::PgStore;
    use crate::store::{NewRun, RunState, SlotCursor, StoreError, StoreWrite, Trigger};

    const TEN: Duration = Duration::from_secs(10);

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Node `node` of state directory `instance`, with room for 4 and labelled `zone=a`.
    fn joining(node: &str, instance: &str) -> Joining {
        Joining {
            node: node.into(),
            instance: instance.into(),
            url: "http://127.0.0.1:1".into(),
            capacity: 4,
            labels: "zone=a".into(),
        }
    }

    fn slot(when: &str) -> NewRun {
        NewRun {
            deployment: "etl".into(),
            schedule_id: Some("s".into()),
            scheduled_for: Some(at(when)),
            trigger: Trigger::Schedule,
            state: RunState::Running,
            reason: None,
            attempt: 1,
            commit: "abc".into(),
            parameters: json!({}),
            started_at: Some(at(when)),
            not_before: None,
            retry_of: None,
        }
    }

    fn cursor(last: &str) -> SlotCursor<'_> {
        SlotCursor {
            deployment: "etl",
            schedule_id: "s",
            last_slot: at(last),
            fingerprint: "f",
        }
    }

    /// The lease's rules: a free lease is taken at the next epoch, its holder renews it
    /// at the same epoch, nobody else gets it while it lasts, a released or expired lease
    /// goes to the next taker at a new epoch, and a holder that lost it comes back only
    /// at a new one.
    #[test]
    fn the_lease_goes_to_one_node_at_a_time_and_each_taking_is_a_new_epoch() {
        let db = TestDatabase::new();
        PgStore::open(&db.target()).unwrap();
        let lease = LeaseStore::new(&db.target());
        assert_eq!(lease.take_or_renew("a/1", 0, TEN).unwrap(), Some(1));
        assert_eq!(lease.take_or_renew("b/1", 0, TEN).unwrap(), None);
        assert_eq!(lease.take_or_renew("a/1", 1, TEN).unwrap(), Some(1));
        // A stale belief (epoch 0) does not renew: the holder must wait like anyone.
        assert_eq!(lease.take_or_renew("a/1", 0, TEN).unwrap(), None);
        lease.release("a/1", 1).unwrap();
        assert_eq!(lease.take_or_renew("b/1", 0, TEN).unwrap(), Some(2));
        // a cannot renew what b took, even naming its old epoch.
        assert_eq!(lease.take_or_renew("a/1", 1, TEN).unwrap(), None);
        // Expired: the next taker gets epoch 3.
        db.execute("UPDATE sundial_lease SET expires_at = clock_timestamp() - interval '1 ms'");
        assert_eq!(lease.take_or_renew("b/1", 2, TEN).unwrap(), Some(3));
        let (leader, _) = lease.cluster().unwrap();
        let leader = leader.unwrap();
        assert_eq!((leader.node(), leader.epoch, leader.live), ("b", 3, true));
    }

    /// A node name is one daemon: another state directory cannot join under a name
    /// heartbeated recently, the same one can (a restart), and its earlier incarnation's
    /// lease is released then.
    #[test]
    fn a_node_name_is_one_daemon_and_a_restart_frees_its_old_lease() {
        let db = TestDatabase::new();
        PgStore::open(&db.target()).unwrap();
        let lease = LeaseStore::new(&db.target());
        assert_eq!(lease.join(&joining("a", "dir-1"), TEN).unwrap(), Ok(1));
        assert!(lease.join(&joining("a", "dir-2"), TEN).unwrap().is_err());
        assert_eq!(lease.take_or_renew("a/1", 0, TEN).unwrap(), Some(1));
        assert!(lease.heartbeat("a", 1).unwrap());
        // The same state directory again (the old daemon died): incarnation 2, and the
        // lease of incarnation 1 is free at once.
        assert_eq!(lease.join(&joining("a", "dir-1"), TEN).unwrap(), Ok(2));
        assert!(
            !lease.heartbeat("a", 1).unwrap(),
            "the old incarnation lives on"
        );
        assert_eq!(lease.take_or_renew("a/2", 0, TEN).unwrap(), Some(2));
        // A name silent for longer than `live_for` may be taken by another directory.
        db.execute("UPDATE sundial_nodes SET heartbeat_at = clock_timestamp() - interval '11 s'");
        assert_eq!(lease.join(&joining("a", "dir-2"), TEN).unwrap(), Ok(3));
    }

    /// Fencing: a writer whose lease was taken over writes nothing, neither its slot's
    /// row nor its cursor, and says so; the new leader's write of the same slot goes in.
    /// Without a fence at all a clustered writer cannot schedule; node writes (a run's
    /// end) need none.
    #[test]
    fn a_writer_that_lost_the_lease_writes_nothing() {
        let db = TestDatabase::new();
        let mut old = PgStore::open(&db.target()).unwrap();
        let mut new = PgStore::open(&db.target()).unwrap();
        old.join_cluster("a");
        new.join_cluster("b");
        let lease = LeaseStore::new(&db.target());
        let now = at("2026-03-01T09:00:00Z");
        assert!(matches!(
            old.claim_slots(
                &[slot("2026-03-01T09:00:00Z")],
                Some(cursor("2026-03-01T09:00:00Z")),
                now
            ),
            Err(StoreError::Fenced { epoch: 0 })
        ));
        assert_eq!(lease.take_or_renew("a/1", 0, TEN).unwrap(), Some(1));
        StoreWrite::fence(&mut old, Some(("a/1".into(), 1)));
        let first = old
            .claim_slots(
                &[slot("2026-03-01T09:00:00Z")],
                Some(cursor("2026-03-01T09:00:00Z")),
                now,
            )
            .unwrap();
        let id = first[0].expect("a's slot");
        let row = old.run(id).unwrap().unwrap();
        assert_eq!((row.node.as_deref(), row.epoch), (Some("a"), Some(1)));
        // b takes over once a's lease expired.
        db.execute("UPDATE sundial_lease SET expires_at = clock_timestamp() - interval '1 ms'");
        assert_eq!(lease.take_or_renew("b/1", 0, TEN).unwrap(), Some(2));
        StoreWrite::fence(&mut new, Some(("b/1".into(), 2)));
        // a, unaware, claims the next slot: refused whole, inside a batch too.
        let refused = old.claim_slots(
            &[slot("2026-03-01T09:00:01Z")],
            Some(cursor("2026-03-01T09:00:01Z")),
            now,
        );
        assert!(
            matches!(refused, Err(StoreError::Fenced { epoch: 1 })),
            "{refused:?}"
        );
        old.begin_batch().unwrap();
        let in_batch = old.claim_slots(&[slot("2026-03-01T09:00:02Z")], None, now);
        assert!(matches!(in_batch, Err(StoreError::Fenced { epoch: 1 })));
        old.rollback_batch();
        assert_eq!(
            new.cursor("etl", "s").unwrap().unwrap().last_slot,
            at("2026-03-01T09:00:00Z"),
            "the fenced write moved the cursor"
        );
        let claimed = new
            .claim_slots(
                &[slot("2026-03-01T09:00:01Z")],
                Some(cursor("2026-03-01T09:00:01Z")),
                now,
            )
            .unwrap();
        let row = new.run(claimed[0].expect("b's slot")).unwrap().unwrap();
        assert_eq!((row.node.as_deref(), row.epoch), (Some("b"), Some(2)));
        // a still records the end of the run it had: a node write.
        old.finish_run(id, RunState::Completed, Some(0), None, now)
            .unwrap();
        assert_eq!(new.run(id).unwrap().unwrap().state, RunState::Completed);
    }

    /// The leader settles the runs of a silent node as lost, and only those: a live
    /// node's run and its own stay Running; the lost node's later end does not overwrite
    /// the settlement.
    #[test]
    fn runs_of_a_silent_node_are_settled_lost_or_cancelled_as_asked_and_stay_so() {
        let db = TestDatabase::new();
        let mut leader = PgStore::open(&db.target()).unwrap();
        let mut gone = PgStore::open(&db.target()).unwrap();
        let mut alive = PgStore::open(&db.target()).unwrap();
        let lease = LeaseStore::new(&db.target());
        for (name, store) in [
            ("lead", &mut leader),
            ("gone", &mut gone),
            ("alive", &mut alive),
        ] {
            assert!(lease.join(&joining(name, name), TEN).unwrap().is_ok());
            store.join_cluster(name);
        }
        let now = at("2026-03-01T09:00:00Z");
        let mut ids = Vec::new();
        for (i, store) in [&mut gone, &mut alive, &mut leader].into_iter().enumerate() {
            let holder = format!("h{i}/1");
            db.execute("UPDATE sundial_lease SET expires_at = '-infinity'");
            let epoch = lease.take_or_renew(&holder, 0, TEN).unwrap().unwrap();
            StoreWrite::fence(store, Some((holder, epoch)));
            let when = format!("2026-03-01T09:00:0{i}Z");
            ids.push(store.claim_slots(&[slot(&when)], None, now).unwrap()[0].unwrap());
        }
        // Each node is seen with its capacity, its labels and the one run it runs.
        let (_, nodes) = lease.cluster().unwrap();
        let seen: Vec<(&str, Option<i64>, &str, i64)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.capacity, n.labels.as_str(), n.running))
            .collect();
        assert_eq!(
            seen,
            [
                ("alive", Some(4), "zone=a", 1),
                ("gone", Some(4), "zone=a", 1),
                ("lead", Some(4), "zone=a", 1)
            ]
        );
        db.execute("UPDATE sundial_nodes SET heartbeat_at = clock_timestamp() - interval '30 s' WHERE name = 'gone'");
        let lost = leader
            .settle_lost_nodes(Duration::from_secs(20), now)
            .unwrap();
        assert_eq!(lost, vec![ids[0]]);
        let settled = leader.run(ids[0]).unwrap().unwrap();
        assert_eq!(
            (settled.state, settled.reason.as_deref()),
            (RunState::Crashed, Some("node_lost"))
        );
        assert!(settled.retry_pending);
        for id in &ids[1..] {
            assert_eq!(leader.run(*id).unwrap().unwrap().state, RunState::Running);
        }
        gone.finish_run(ids[0], RunState::Completed, Some(0), None, now)
            .unwrap();
        let kept = leader.run(ids[0]).unwrap().unwrap();
        assert_eq!(
            (kept.state, kept.reason.as_deref()),
            (RunState::Crashed, Some("node_lost"))
        );
        // A cancel asked of the node that runs a run, which then goes silent: the run is
        // settled Cancelled, and no retry is owed.
        assert!(leader.ask_cancel(ids[1], "alive", now).unwrap());
        assert!(
            !leader.ask_cancel(ids[2], "alive", now).unwrap(),
            "lead's run"
        );
        assert_eq!(alive.cancels_asked(&ids).unwrap(), vec![ids[1]]);
        assert!(leader.cancels_asked(&ids).unwrap().is_empty());
        db.execute("UPDATE sundial_nodes SET heartbeat_at = clock_timestamp() - interval '30 s' WHERE name = 'alive'");
        let lost = leader
            .settle_lost_nodes(Duration::from_secs(20), now)
            .unwrap();
        assert_eq!(lost, vec![ids[1]]);
        let settled = leader.run(ids[1]).unwrap().unwrap();
        assert_eq!(
            (
                settled.state,
                settled.reason.as_deref(),
                settled.retry_pending
            ),
            (RunState::Cancelled, Some("cancelled"), false)
        );
        // Settled meanwhile, the run is still the silent node's to end when it is back.
        assert_eq!(alive.cancels_asked(&ids).unwrap(), vec![ids[1]]);
        // An end its node records after a cancel was asked owes no retry.
        assert!(leader.ask_cancel(ids[2], "lead", now).unwrap());
        leader
            .finish_run(ids[2], RunState::Failed, Some(1), None, now)
            .unwrap();
        let ended = leader.run(ids[2]).unwrap().unwrap();
        assert_eq!(
            (ended.state, ended.retry_pending),
            (RunState::Failed, false)
        );
    }
}
