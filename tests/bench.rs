//! The benchmark harness still works: `benches/run.sh --quick` against the debug build,
//! with only the peers already installed (a missing one is "peer not available"). Every
//! figure must produce a number; nothing about time is asserted (docs/performance.md has
//! the full runs' figures).

/// The first cell of each row of the table, in order.
const FIGURES: &[&str] = &[
    "start lateness, native command",
    "the same, both cores kept busy",
    "start lateness of a Python entrypoint",
    "the same with `prestart_seconds: 0.4`",
    "200 deployments due at one instant",
    "start → ready: first commit of 200 deployments",
    "RSS with 200 deployments loaded",
    "commit → applied",
    "a one-line change in a repository of 200 deployments",
    "idle RSS / CPU",
    "`sundial validate`, 50 deployments",
    "`/api/runs?limit=50` with",
    "dashboard page",
];

#[test]
fn bench_harness_quick_mode_gives_every_figure_a_number() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/run.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args([
            "--quick",
            "--no-install",
            "--binary",
            env!("CARGO_BIN_EXE_sundial"),
        ])
        .output()
        .expect("run benches/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "benches/run.sh --quick failed:\n{stdout}\n{stderr}"
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure |"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), FIGURES.len(), "{stdout}");
    for (row, figure) in rows.iter().zip(FIGURES) {
        assert!(row[0].starts_with(figure), "expected {figure:?}:\n{stdout}");
        assert!(
            row[1].chars().any(|c| c.is_ascii_digit()) && !row[1].starts_with("not measured"),
            "no number for {figure:?}:\n{stdout}"
        );
        assert_eq!(row[5], "(not asserted)", "{stdout}");
    }
}
