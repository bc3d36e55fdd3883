//! Any bytes as a committed manifest, through the path the daemon takes: load (within
//! every bound of `manifest::limits`), validate on a 2 MiB stack (a tokio blocking
//! thread's), and render the findings in every format `sundial validate` has.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sundial::manifest::limits::{expanded_bytes_limit, MAX_DEPTH, MAX_NODES};
use sundial::manifest::yaml;
use sundial::validate::{render, validate_in, SourceFile};

fuzz_target!(|data: &[u8]| {
    let loaded = yaml::load(data);
    assert!(loaded.cost.depth <= MAX_DEPTH, "{:?}", loaded.cost);
    assert!(loaded.cost.nodes <= MAX_NODES, "{:?}", loaded.cost);
    assert!(
        loaded.cost.bytes <= expanded_bytes_limit(data.len()),
        "{:?}",
        loaded.cost
    );
    let bytes = data.to_vec();
    let validation = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let file = SourceFile {
                display: "prefect.yaml".into(),
                repo_path: "deployments/prefect.yaml".into(),
                bytes: bytes.into(),
            };
            // Half of the requirements files exist, so both answers are explored.
            validate_in(&[file], &|path: &str| Some(path.len().is_multiple_of(2)))
        })
        .expect("spawn")
        .join()
        .expect("validation panicked");
    for d in validation.diagnostics() {
        assert!(d.line == 0 || d.column >= 1, "{d:?}");
    }
    let sources = HashMap::from([(
        "prefect.yaml".to_string(),
        String::from_utf8_lossy(data).into_owned(),
    )]);
    let _ = render::human(&validation, &sources);
    let _ = render::json(&validation);
    let _ = render::github(&validation);
});
