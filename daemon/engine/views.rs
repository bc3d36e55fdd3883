//! The deployments' views as the status publishes them, kept up to date at a cost that
//! grows with what changed, not with how many deployments are in force.
//!
//! Contract: after [`Engine::publish`], the published views are exactly what building
//! every view again from the deployments in force, the timer and the run-time pauses would
//! give, in the same order. To get there cheaply:
//! - after a commit is applied, the view of a deployment whose file's deployments are the
//!   very same (`Arc::ptr_eq`) as when the views were last built is kept, with its file's
//!   commit and held-back flag and its pause brought up to date; the others are built;
//! - otherwise, only the next fires the timer moved since the last publication
//!   ([`crate::scheduler::Timer::touched`]) and the pauses are brought up to date;
//! - the views are changed in place inside the published status, the engine's own copy let
//!   go first, so no view is copied unless a reader of an older status still holds it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::reconcile::{Applied, SharedDeployment};
use crate::scheduler::{Key, Timer};
use crate::store::Pause;
use crate::validate::Deployment;

use super::status::{DeploymentView, DeploymentViews, Status};
use super::Engine;

/// What [`Engine::publish`] keeps between two publications.
#[derive(Debug, Default)]
pub(super) struct Published {
    /// A commit was applied since the views were built.
    pub stale: bool,
    /// Where each deployment's view is.
    index: HashMap<String, usize>,
    /// Per file, the deployments its views were built from.
    files: HashMap<String, Arc<Vec<Deployment>>>,
}

/// What building a view reads besides the deployment and its file.
struct Sources<'a> {
    pauses: &'a HashMap<String, Pause>,
    timer: &'a Timer,
}

impl Engine {
    /// Publishes the status with its deployments' views up to date (see the module docs).
    pub(super) fn publish(&mut self) {
        let touched = self.timer.touched();
        // The engine's copy is let go, so the published views are changed in place.
        self.status.deployments.clear();
        let sources = Sources {
            pauses: &self.pauses,
            timer: &self.timer,
        };
        let (applied, published, status) = (&self.applied, &mut self.published, &self.status);
        self.status_tx.send_modify(|shown| {
            let mut views = std::mem::take(&mut shown.deployments).into_arcs();
            if std::mem::take(&mut published.stale) {
                views = rebuild(views, applied, &sources, published);
            }
            refresh(&mut views, touched, &sources, published);
            *shown = Status {
                deployments: DeploymentViews::from_arcs(views),
                ..status.clone()
            };
        });
        self.status.deployments = self.status_tx.borrow().deployments.clone();
    }
}

/// The views of every deployment in force, keeping those of unchanged files.
fn rebuild(
    mut old: Vec<Arc<DeploymentView>>,
    applied: &Applied,
    sources: &Sources<'_>,
    published: &mut Published,
) -> Vec<Arc<DeploymentView>> {
    let count = applied.deployments().count();
    let mut views = Vec::with_capacity(count);
    let mut moved = old.len() != count;
    let mut kept: Vec<Option<Arc<DeploymentView>>> = old.drain(..).map(Some).collect();
    for (path, file) in applied.files() {
        let unchanged = published
            .files
            .get(path)
            .is_some_and(|built| Arc::ptr_eq(built, &file.deployments));
        // One copy of the commit for the views of this file that need it.
        let mut commit: Option<Arc<str>> = None;
        let mut commit_of_file =
            || Arc::clone(commit.get_or_insert_with(|| file.commit.as_str().into()));
        for (i, d) in file.deployments.iter().enumerate() {
            let at = published.index.get(&d.name).copied();
            moved |= at != Some(views.len());
            let reused = at
                .filter(|_| unchanged)
                .and_then(|j| kept.get_mut(j)?.take())
                .filter(|v| v.is_of(&file.deployments, i));
            let view = match reused {
                Some(mut view) => {
                    if *view.commit != *file.commit || view.held_back != file.held_back {
                        let view = Arc::make_mut(&mut view);
                        view.commit = commit_of_file();
                        view.held_back = file.held_back;
                    }
                    view
                }
                None => Arc::new(build(
                    &file.deployments,
                    i,
                    commit_of_file(),
                    file.held_back,
                    sources,
                )),
            };
            views.push(view);
        }
    }
    if moved {
        published.index = views
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name().to_string(), i))
            .collect();
    }
    published.files = applied
        .files()
        .iter()
        .map(|(path, f)| (path.clone(), Arc::clone(&f.deployments)))
        .collect();
    views
}

/// Brings the next fires of the `touched` schedules and every pause up to date.
fn refresh(
    views: &mut [Arc<DeploymentView>],
    touched: HashSet<Key>,
    sources: &Sources<'_>,
    published: &Published,
) {
    for key in touched {
        let Some(view) = published.index.get(&key.0).and_then(|&i| views.get_mut(i)) else {
            continue;
        };
        let next = sources.timer.next_of(&key);
        if view.next_of(&key.1).is_some_and(|was| was != next) {
            Arc::make_mut(view).set_next(&key.1, next);
        }
    }
    for view in views.iter_mut() {
        let pause = sources.pauses.get(view.name());
        if view.paused_after_failures.as_deref() != pause {
            Arc::make_mut(view).paused_after_failures = pause.cloned().map(Box::new);
        }
    }
}

/// The view of `file[index]`, with its pause and next fires as they are now.
fn build(
    file: &Arc<Vec<Deployment>>,
    index: usize,
    commit: Arc<str>,
    held_back: bool,
    sources: &Sources<'_>,
) -> DeploymentView {
    let shared = SharedDeployment::new(file, index).expect("an index of the file's deployments");
    let d = &file[index];
    let mut view = DeploymentView::new(shared, commit, held_back);
    view.paused_after_failures = sources.pauses.get(&d.name).cloned().map(Box::new);
    for s in &d.schedules {
        view.set_next(
            &s.id,
            sources.timer.next_of(&(d.name.clone(), s.id.clone())),
        );
    }
    view
}

#[cfg(test)]
mod tests;
