//! A large file's deployments checked on several threads give exactly what one thread
//! gives (`validate::parallel`): the same diagnostics in the same order, under the same
//! listing cap, the same deployments, and names claimed in file order across the threads'
//! runs and across files.

use super::super::parallel::PARALLEL_FROM;
use super::super::report::MAX_DIAGNOSTICS;
use super::super::{locate, validate_on, Code, SourceFile, Validation};

fn file(path: &str, text: String) -> SourceFile {
    SourceFile {
        display: path.into(),
        repo_path: path.into(),
        bytes: text.into_bytes().into(),
    }
}

/// A deployment with one schedule of each kind; `extra` lines go under it.
fn deployment(name: &str, i: usize, extra: &str) -> String {
    format!(
        "  - name: {name}\n    entrypoint: flows/etl.py:daily\n    schedules:\n      - cron: \"{} 9 * * *\"\n        timezone: Europe/Madrid\n      - rrule: \"FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE={}\"\n      - interval: {}\n{extra}",
        i % 60,
        i % 3,
        60 + i
    )
}

/// Everything a validation says: each file's diagnostics and deployments as text.
fn said(validation: &Validation) -> Vec<String> {
    validation
        .files
        .iter()
        .map(|f| format!("{:?}\n{}\n{:?}", f.diagnostics, f.declared, f.deployments))
        .collect()
}

fn on(files: &[SourceFile], threads: usize) -> Validation {
    validate_on(files, &locate::Unknown, threads)
}

#[test]
fn a_valid_file_of_many_deployments_gives_the_same_deployments_on_any_number_of_threads() {
    let n = 4 * PARALLEL_FROM;
    let text: String = (0..n)
        .map(|i| deployment(&format!("job-{i}"), i, ""))
        .collect();
    let files = [file("prefect.yaml", format!("deployments:\n{text}"))];
    let one = on(&files, 1);
    assert!(one.is_valid(), "{:?}", one.files[0].diagnostics.first());
    assert_eq!(one.files[0].deployments.as_ref().map(|d| d.len()), Some(n));
    // The warning of each interval without `anchor_date` is said once, naming how many
    // more deployments have it.
    let unanchored: Vec<_> = one.diagnostics().collect();
    assert_eq!(unanchored.len(), 1, "{unanchored:?}");
    assert_eq!(unanchored[0].code, Code::PrefectDifference);
    assert!(
        unanchored[0]
            .message
            .ends_with(&format!("(in `job-0` and {} more deployments)", n - 1)),
        "{}",
        unanchored[0].message
    );
    for threads in [2, 3, 4] {
        assert_eq!(said(&on(&files, threads)), said(&one), "{threads} threads");
    }
}

#[test]
fn errors_duplicates_placeholders_and_the_listing_cap_are_the_same_on_any_number_of_threads() {
    let n = 10 * PARALLEL_FROM;
    let text: String = (0..n)
        .map(|i| match i {
            // Duplicates: of an earlier name in the same run, of one in the first run from
            // the last, and (in the second file) of this file's.
            21 => deployment("job-20", i, ""),
            _ if i == n - 1 => deployment("job-0", i, ""),
            40 => "  - name:\n    description:\n".to_string(),
            41 => "  - description: no name\n    entrypoint: flows/etl.py:daily\n".to_string(),
            _ => deployment(
                &format!("job-{i}"),
                i,
                // Many errors each, found by the deployment's own checks (not the
                // schema's, which come first): the file finds more than the cap lists, in
                // every thread's run.
                &"      - cron: \"61 * * * *\"\n".repeat(8),
            ),
        })
        .collect();
    let files = [
        file("prefect.yaml", format!("deployments:\n{text}")),
        file(
            "deployments/more.yaml",
            format!("deployments:\n{}", deployment("job-5", 5, "")),
        ),
    ];
    let one = on(&files, 1);
    let first = &one.files[0];
    assert_eq!(first.declared, n - 1, "the placeholder is not declared");
    let cap = first.diagnostics.last().expect("diagnostics");
    assert_eq!(cap.code, Code::TooManyProblems);
    let unlisted: usize = cap.message.split(' ').next().unwrap().parse().unwrap();
    assert!(
        unlisted > 3 * MAX_DIAGNOSTICS,
        "each of 4 threads' runs finds more than the cap: {}",
        cap.message
    );
    // Listed: what was found first, in file order (the deployments from the first on).
    let mut listed: Vec<usize> = first.diagnostics[..first.diagnostics.len() - 1]
        .iter()
        .map(|d| d.pointer.split('/').nth(2).unwrap().parse().unwrap())
        .collect();
    listed.dedup();
    assert_eq!(listed, (0..listed.len()).collect::<Vec<_>>());
    assert!(listed.len() > 21, "{}", listed.len());
    let duplicates: Vec<_> = one
        .diagnostics()
        .filter(|d| d.code == Code::DuplicateDeployment)
        .map(|d| (d.file.as_str(), d.message.as_str()))
        .collect();
    assert!(duplicates.contains(&(
        "deployments/more.yaml",
        "deployment name `job-5` is already used"
    )));
    assert!(duplicates.contains(&("prefect.yaml", "deployment name `job-20` is already used")));
    for threads in [2, 3, 4] {
        assert_eq!(said(&on(&files, threads)), said(&one), "{threads} threads");
    }
}
