//! The chaos soak in the suite: `scripts/chaos.py` for 60 s against the built binary —
//! commits every few seconds, SIGKILLs at random moments — then its audit: no slot
//! started twice, no due slot without a row, the store's integrity, no orphan process.
//! `python3 scripts/chaos.py --duration 600` is the long run (see the script's doc).

#[test]
fn sixty_seconds_of_commits_and_kills_start_no_slot_twice_and_lose_none() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chaos.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([
            "--duration",
            "60",
            "--binary",
            env!("CARGO_BIN_EXE_sundial"),
        ])
        .output()
        .expect("run python3 scripts/chaos.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the soak found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("")).unwrap();
    assert!(figures["kills"].as_u64().unwrap() >= 3, "{figures}");
    assert!(figures["slots"].as_u64().unwrap() >= 500, "{figures}");
    assert_eq!(
        (
            figures["doubles"].as_u64(),
            figures["lost"].as_u64(),
            figures["orphans"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
}
