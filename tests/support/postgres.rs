//! A PostgreSQL server of a test's own, for what the shared test server must not suffer
//! (being stopped and started again).

/// A PostgreSQL server of the test's own (`scripts/pg-cluster.sh`), which it can stop and
/// start again on the same port; deleted on drop.
pub struct PrivateServer {
    dir: String,
    /// Its `postgres` database, for `--store`.
    pub url: String,
}

impl PrivateServer {
    fn script(args: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-cluster.sh");
        let out = std::process::Command::new(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn start() -> PrivateServer {
        let line = PrivateServer::script(&["start"]);
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {line:?}"))
                .to_string()
        };
        let server = field("SUNDIAL_TEST_POSTGRES=");
        let (base, _) = server.rsplit_once('/').unwrap();
        let url = format!("{base}/postgres");
        PrivateServer {
            dir: field("PG_CLUSTER_DIR="),
            url,
        }
    }

    pub fn down(&self) {
        PrivateServer::script(&["down", &self.dir]);
    }

    pub fn up(&self) {
        PrivateServer::script(&["up", &self.dir]);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-cluster.sh"
        ))
        .args(["stop", &self.dir])
        .output();
    }
}

/// Every run of `deployment` as the database holds it (read directly, not through a
/// node's API).
pub fn stored_runs(store: &str, deployment: &str) -> Vec<sundial::store::Run> {
    let (store, deployment) = (store.to_string(), deployment.to_string());
    // The sync PostgreSQL client runs on a thread of its own.
    std::thread::spawn(move || {
        let spec =
            sundial::store::StoreSpec::from_flag(Some(&store), std::path::Path::new("/")).unwrap();
        let filter = sundial::store::RunFilter {
            deployment: Some(deployment),
            limit: 100_000,
            ..Default::default()
        };
        spec.open_reader().unwrap().runs(&filter).unwrap()
    })
    .join()
    .unwrap()
}
