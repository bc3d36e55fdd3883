//! The views kept up to date piece by piece are the views built afresh.

use chrono::{DateTime, Utc};

use super::*;
use crate::reconcile::reconcile;
use crate::validate::outcomes_of as outcomes;

fn manifest(names: &[&str], description: &str) -> String {
    let mut text = String::from("deployments:\n");
    for name in names {
        text.push_str(&format!(
            "  - name: {name}\n    description: {description}\n    entrypoint: f.py:run\n    schedules: [{{interval: 60}}]\n"
        ));
    }
    text
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

/// Keeps views up to date the way `publish` does, and checks them against fresh ones.
struct Check {
    views: Vec<Arc<DeploymentView>>,
    published: Published,
    timer: Timer,
    pauses: HashMap<String, Pause>,
}

impl Check {
    fn publish(&mut self, applied: &Applied, stale: bool) {
        let touched = self.timer.touched();
        let sources = Sources {
            pauses: &self.pauses,
            timer: &self.timer,
        };
        let mut views = std::mem::take(&mut self.views);
        if stale {
            views = rebuild(views, applied, &sources, &mut self.published);
        }
        refresh(&mut views, touched, &sources, &self.published);
        let fresh: Vec<DeploymentView> = applied
            .files()
            .values()
            .flat_map(|f| (0..f.deployments.len()).map(move |i| (f, i)))
            .map(|(f, i)| {
                build(
                    &f.deployments,
                    i,
                    f.commit.as_str().into(),
                    f.held_back,
                    &sources,
                )
            })
            .collect();
        let kept: Vec<&DeploymentView> = views.iter().map(|v| &**v).collect();
        assert_eq!(
            format!("{kept:#?}"),
            format!("{:#?}", fresh.iter().collect::<Vec<_>>())
        );
        self.views = views;
    }
}

#[test]
fn views_kept_up_to_date_are_the_views_built_afresh() {
    let mut check = Check {
        views: Vec::new(),
        published: Published::default(),
        timer: Timer::default(),
        pauses: HashMap::new(),
    };
    let (a, b) = (manifest(&["a1", "a2"], "one"), manifest(&["b1"], "one"));
    let first_outcomes = outcomes(&[("deployments/a.yaml", &a), ("deployments/b.yaml", &b)]);
    let (first, _) = reconcile(&Applied::default(), "c1", &first_outcomes);
    check.publish(&first, true);
    let a1 = first.deployment("a1").unwrap().0.schedules[0].id.clone();
    check
        .timer
        .set(Arc::new(("a1".into(), a1.clone())), Some(at(60)));
    check.publish(&first, false);
    let kept = Arc::clone(&check.views[1]);

    // b.yaml changes (and a deployment moves into it), a.yaml is the same validated file.
    let b2 = manifest(&["b1", "a2"], "two");
    let a_only = manifest(&["a1"], "one");
    let mut second_outcomes = outcomes(&[("deployments/b.yaml", &b2)]);
    second_outcomes.insert(0, first_outcomes[0].clone());
    let (second, _) = reconcile(&first, "c2", &second_outcomes);
    check.publish(&second, true);
    // The view of an unchanged file's deployment is kept (and its commit moved on).
    assert_eq!(check.views[1].name(), "a2");
    assert_eq!(&*check.views[1].commit, "c2");
    assert_eq!(&*kept.commit, "c1", "an older status keeps what it showed");

    // A pause at run time, a next fire cleared, a file that shrinks.
    check.pauses.insert(
        "b1".into(),
        Pause {
            deployment: "b1".into(),
            since: at(0),
            note: "paused after 3 failed runs in a row".into(),
        },
    );
    check.timer.set(Arc::new(("a1".into(), a1.clone())), None);
    check.publish(&second, false);
    let (third, _) = reconcile(
        &second,
        "c3",
        &outcomes(&[("deployments/a.yaml", &a_only), ("deployments/b.yaml", &b2)]),
    );
    check.timer.set(Arc::new(("b1".into(), a1)), Some(at(120)));
    check.publish(&third, true);
    check.pauses.clear();
    check.publish(&third, false);
    let (empty, _) = reconcile(&third, "c4", &[]);
    check.publish(&empty, true);
    assert!(check.views.is_empty());
}
