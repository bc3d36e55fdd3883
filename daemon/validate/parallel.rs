//! A file's deployments checked on several threads, and what they found merged as one
//! thread would have found it.
//!
//! Contract: the file's diagnostics (their order, the listing cap, the merge of repeated
//! warnings), its deployments and the names it claims are exactly those of checking each
//! deployment in file order on one thread. A large file (at least [`PARALLEL_FROM`]
//! deployments) is cut into contiguous runs, one per core up to [`MOST_THREADS`]; each run
//! is checked with its own report ([`FileReport::part`]), repository cache and parsed
//! schemas, then replayed in file order on the caller's thread, which claims each
//! deployment's name there (names are unique across all files: the claims must stay in
//! order). A view that cannot be shared with another thread (a git repository handle)
//! keeps the whole file on the caller's thread.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use crate::manifest::{pointer, Node, Value};

use super::deployment::{self, Context, FileContext};
use super::desired::Deployment;
use super::diagnostic::Code;
use super::incremental::Names;
use super::locate::View;
use super::memo::{MemoView, Recurrences};
use super::parameters::ParameterSchemas;
use super::report::FileReport;
use super::{check_keys, raw_deployment, Shared};

/// Below this many deployments a file is checked on one thread: a thread costs more than
/// it saves.
pub const PARALLEL_FROM: usize = 64;
/// At most this many threads check one file.
const MOST_THREADS: usize = 4;

/// How many threads check a large file: one per core, at most [`MOST_THREADS`]. Asked of
/// the system once (on Linux it reads the cgroup's CPU quota), not for each file.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(MOST_THREADS)
    })
}

/// What one deployment's check left for the replay on the caller's thread.
struct Checked {
    /// Diagnostics listed before its name is claimed, and after.
    before_claim: usize,
    after_claim: usize,
    /// Whether it counts as declared (a mapping, not a placeholder).
    declared: bool,
    /// Its name and the line of the name, when it has one to claim.
    name: Option<(String, usize)>,
    built: Option<Deployment>,
}

/// Checks the deployments `items` (the file's `deployments:` list) and returns those built,
/// recording into `report` what the checks found, as [`Self`'s contract](self) says.
pub fn check_deployments(
    report: &mut FileReport<'_>,
    items: &[Node],
    file: FileContext<'_>,
    shared: &Shared<'_>,
    names: &mut Names,
    declared: &mut usize,
) -> Vec<Deployment> {
    let threads = if items.len() >= PARALLEL_FROM {
        shared.threads
    } else {
        1
    };
    let others: Vec<Box<dyn View + Send + '_>> = (1..threads)
        .map_while(|_| shared.view.for_another_thread())
        .collect();
    let per_run = items.len().div_ceil(others.len() + 1).max(1);
    let runs = std::thread::scope(|scope| {
        let whole = &*report;
        let mut runs = items.chunks(per_run).enumerate();
        let first = runs.next();
        let spawned: Vec<_> = runs
            .zip(others)
            .map(|((k, run), view)| {
                scope.spawn(move || {
                    let view = MemoView::new(&*view);
                    let schemas = ParameterSchemas::default();
                    let recurrences = Recurrences::default();
                    let ctx = Context {
                        file,
                        view: &view,
                        parameter_schemas: &schemas,
                        recurrences: &recurrences,
                    };
                    check_run(whole.part(), &ctx, k * per_run, run)
                })
            })
            .collect();
        let mut done = Vec::with_capacity(spawned.len() + 1);
        if let Some((_, run)) = first {
            let ctx = Context {
                file,
                view: &shared.view,
                parameter_schemas: &shared.parameter_schemas,
                recurrences: &shared.recurrences,
            };
            done.push(check_run(whole.part(), &ctx, 0, run));
        }
        for handle in spawned {
            done.push(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        done
    });
    let mut out = Vec::new();
    let mut index = 0;
    for (mut part, checked) in runs {
        let mut listed = std::mem::take(&mut part.listed).into_iter();
        for item in checked {
            report.checking_deployment(Some(index));
            let at = pointer("/deployments", index);
            index += 1;
            for found in listed.by_ref().take(item.before_claim) {
                report.record(found);
            }
            *declared += usize::from(item.declared);
            // A duplicate is an error of the file, which then keeps none of its deployments.
            if let Some((name, here)) = item.name {
                if let Some((first_file, first_line)) = names.claim(&name, report.file, here) {
                    report.error(
                        &pointer(&at, "name"),
                        false,
                        Code::DuplicateDeployment,
                        format!("deployment name `{name}` is already used"),
                        Some(format!("first declared at {first_file}:{first_line}; names are unique across all manifest files")),
                    );
                }
            }
            for found in listed.by_ref().take(item.after_claim) {
                report.record(found);
            }
            out.extend(item.built);
        }
        report.adopt_unlisted(&part);
    }
    report.checking_deployment(None);
    out
}

/// Checks the run of deployments `nodes`, the first at index `first` of the file's list.
fn check_run(
    mut report: FileReport<'_>,
    ctx: &Context<'_>,
    first: usize,
    nodes: &[Node],
) -> (super::report::Part, Vec<Checked>) {
    let checked = nodes
        .iter()
        .enumerate()
        .map(|(k, node)| {
            report.checking_deployment(Some(first + k));
            let start = report.diagnostics.len();
            let mut item = Checked {
                before_claim: 0,
                after_claim: 0,
                declared: false,
                name: None,
                built: None,
            };
            let claim_at = check_one(&mut report, ctx, node, first + k, &mut item);
            let end = report.diagnostics.len();
            let claim_at = claim_at.unwrap_or(end);
            item.before_claim = claim_at - start;
            item.after_claim = end - claim_at;
            item
        })
        .collect();
    (report.into_part(), checked)
}

/// Checks the deployment `node` (index `i`) into `item`; returns how many diagnostics were
/// listed when its name would be claimed, when it gets that far.
fn check_one(
    report: &mut FileReport<'_>,
    ctx: &Context<'_>,
    node: &Node,
    i: usize,
    item: &mut Checked,
) -> Option<usize> {
    let at = pointer("/deployments", i);
    if !matches!(node.value, Value::Map(_)) {
        return None; // the schema reported it
    }
    if node.is_placeholder() {
        report.warning(
            &at,
            false,
            Code::PlaceholderDeployment,
            "this deployment has only empty values and is skipped",
            Some("fill it in or delete it (a `prefect init` leftover)".into()),
        );
        return None;
    }
    item.declared = true;
    check_keys(report, node, &at);
    let raw = match raw_deployment(node, &at, ctx.file.wrong) {
        Ok(raw) => raw,
        Err(e) => {
            report.error(
                &at,
                false,
                Code::Type,
                format!("this deployment cannot be read: {e}"),
                None,
            );
            return None;
        }
    };
    item.name = raw
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .map(|name| {
            let here = node.get("name").map_or(0, |n| n.span.start.line);
            (name.to_string(), here)
        });
    let claim_at = report.diagnostics.len();
    item.built = deployment::check(report, ctx, node, &at, raw);
    Some(claim_at)
}
