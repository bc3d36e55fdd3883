//! Fills a state database with finished runs for `benches/api.sh`:
//! `fill_store STATE_DB COUNT`. Rows go through the public store API, in batches, and are
//! recorded as noticed (their events already derived), as the history of a daemon that
//! ran for that long would be: otherwise the daemon's first notice pass would read all of
//! them at start.

use chrono::{Duration, Utc};
use sundial::store::{NewRun, Noticed, RunState, Store, Trigger};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: fill_store STATE_DB COUNT")?;
    let count: i64 = args
        .next()
        .ok_or("usage: fill_store STATE_DB COUNT")?
        .parse()?;
    let mut store = Store::open(std::path::Path::new(&path))?;
    let start = Utc::now() - Duration::minutes(count);
    let states = [
        RunState::Completed,
        RunState::Completed,
        RunState::Failed,
        RunState::Skipped,
    ];
    let mut made = 0;
    while made < count {
        let batch: Vec<NewRun> = (made..(made + 10_000).min(count))
            .map(|i| {
                let slot = start + Duration::minutes(i);
                let state = states[(i % 4) as usize];
                NewRun {
                    deployment: format!("deployment-{}", i % 20),
                    schedule_id: Some("every-minute".into()),
                    scheduled_for: Some(slot),
                    trigger: Trigger::Schedule,
                    state,
                    reason: (state == RunState::Skipped).then(|| "missed".into()),
                    attempt: 1,
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    parameters: serde_json::json!({"batch_size": 500, "day": i % 7}),
                    started_at: (state != RunState::Skipped)
                        .then(|| slot + Duration::milliseconds(5 + i % 50)),
                    not_before: None,
                    retry_of: None,
                }
            })
            .collect();
        made += batch.len() as i64;
        let ids = store.claim_slots(&batch, None, Utc::now())?;
        let noticed = Noticed {
            runs: ids
                .iter()
                .zip(&batch)
                .filter_map(|(id, run)| Some(((*id)?, run.state)))
                .collect(),
            ..Noticed::default()
        };
        store.record_noticed(&noticed, Utc::now())?;
    }
    println!("{made} runs in {path}");
    Ok(())
}
