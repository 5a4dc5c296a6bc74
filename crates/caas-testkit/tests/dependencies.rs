//! The dependency invariants of docs/ARCHITECTURE.md, checked on `cargo metadata` of the whole
//! workspace, so a change that breaks one fails here and names the crate and the dependency:
//!
//! - only `caas-deployer` depends on `bollard`;
//! - only `caas-registry` depends on `zookeeper-client`, and only `caas-scheduler` on `sqlx`,
//!   except for the crates of [`TEST_ONLY`];
//! - `caas-gateway` does not depend on `caas-scheduler`, directly or through anything;
//! - no crate depends on a crate of [`TEST_ONLY`] except as a dev-dependency.
//!
//! Dev- and build-dependencies count like normal ones: a test that reaches around a layer
//! spreads the coupling the rule is there to stop.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

/// Crates that only ever are dev-dependencies (the next check makes sure), so they may use
/// `zookeeper-client` and `sqlx` to let tests look at what is really stored. `bollard` stays
/// out even for them: containers go through `caas-deployer`.
const TEST_ONLY: &[&str] = &["caas-testkit"];

/// A dependency and the one workspace crate that may declare it.
const OWNED: &[(&str, &str, bool)] = &[
    // (dependency, owner, whether TEST_ONLY crates may declare it too)
    ("bollard", "caas-deployer", false),
    ("zookeeper-client", "caas-registry", true),
    ("sqlx", "caas-scheduler", true),
];

/// The gateway must not reach the scheduler: it only reads ZooKeeper.
const FORBIDDEN_PATHS: &[(&str, &str)] = &[("caas-gateway", "caas-scheduler")];

/// `cargo metadata` of the workspace this crate is in.
fn metadata() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cargo} metadata`: {e}"));
    assert!(
        out.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("`cargo metadata` prints JSON")
}

/// One declared dependency of a workspace crate.
struct Declared {
    krate: String,
    dependency: String,
    /// `normal`, `dev` or `build`.
    kind: String,
}

/// Every dependency the workspace's crates declare in their manifests.
fn declared(meta: &Value) -> Vec<Declared> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for package in meta["packages"].as_array().expect("packages") {
        if !members.contains(package["id"].as_str().unwrap_or_default()) {
            continue;
        }
        let krate = package["name"].as_str().expect("package name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            out.push(Declared {
                krate: krate.to_owned(),
                dependency: dep["name"].as_str().expect("dependency name").to_owned(),
                kind: dep["kind"].as_str().unwrap_or("normal").to_owned(),
            });
        }
    }
    out
}

fn section(kind: &str) -> String {
    match kind {
        "normal" => "[dependencies]".to_owned(),
        other => format!("[{other}-dependencies]"),
    }
}

/// The rules on direct dependencies, one message per breach.
fn direct_violations(declared: &[Declared]) -> Vec<String> {
    let mut out = Vec::new();
    for d in declared {
        for &(dependency, owner, test_only_may) in OWNED {
            let test_only = TEST_ONLY.contains(&d.krate.as_str());
            if d.dependency == dependency && d.krate != owner && !(test_only_may && test_only) {
                out.push(format!(
                    "{} depends on {dependency} ({}): only {owner} may{}",
                    d.krate,
                    section(&d.kind),
                    if test_only_may {
                        format!(" (and the test-only crates {TEST_ONLY:?})")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if TEST_ONLY.contains(&d.dependency.as_str()) && d.kind != "dev" {
            out.push(format!(
                "{} depends on {} ({}): a test-only crate may only be a [dev-dependencies] entry",
                d.krate,
                d.dependency,
                section(&d.kind)
            ));
        }
    }
    out
}

/// The resolved graph: package name → (dependency name, whether it is only a dev-dependency).
fn resolved(meta: &Value) -> HashMap<String, Vec<(String, bool)>> {
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let mut graph = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
        let name = names[node["id"].as_str().expect("node id")];
        let deps = node["deps"]
            .as_array()
            .expect("node deps")
            .iter()
            .map(|dep| {
                let to = names[dep["pkg"].as_str().expect("dep pkg")].to_owned();
                let dev_only = dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .all(|k| k["kind"].as_str() == Some("dev"));
                (to, dev_only)
            })
            .collect();
        graph.insert(name.to_owned(), deps);
    }
    graph
}

/// A path of dependencies from `from` to `to`, if any: `from`'s own dev-dependencies count
/// (its tests link them), those of the crates it depends on do not (they are not built).
fn path(graph: &HashMap<String, Vec<(String, bool)>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::from([from.to_owned()]);
    let mut queue = std::collections::VecDeque::from([vec![from.to_owned()]]);
    while let Some(trail) = queue.pop_front() {
        let here = trail.last().expect("a trail is never empty");
        for (next, dev_only) in graph.get(here).into_iter().flatten() {
            if *dev_only && here != from {
                continue;
            }
            let mut longer = trail.clone();
            longer.push(next.clone());
            if next == to {
                return Some(longer);
            }
            if seen.insert(next.clone()) {
                queue.push_back(longer);
            }
        }
    }
    None
}

#[test]
fn the_workspace_keeps_its_dependency_invariants() {
    let meta = metadata();
    let declared = declared(&meta);
    assert!(
        declared.iter().any(|d| d.krate == "caas-testkit"),
        "caas-testkit is not a workspace member: this test checks nothing"
    );
    let mut violations = direct_violations(&declared);
    let graph = resolved(&meta);
    for &(from, to) in FORBIDDEN_PATHS {
        if let Some(trail) = path(&graph, from, to) {
            violations.push(format!(
                "{from} depends on {to} through {}: it must not, directly or transitively",
                trail.join(" -> ")
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "dependency invariants broken (docs/ARCHITECTURE.md, Invariants):\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_rules_catch_what_they_should() {
    let d = |krate: &str, dependency: &str, kind: &str| Declared {
        krate: krate.into(),
        dependency: dependency.into(),
        kind: kind.into(),
    };
    let found = direct_violations(&[
        d("caas-deployer", "bollard", "normal"),
        d("caas-scheduler", "sqlx", "normal"),
        d("caas-testkit", "sqlx", "normal"),
        d("caas-gateway", "caas-testkit", "dev"),
        d("caas-gateway", "sqlx", "dev"),
        d("caas-testkit", "bollard", "normal"),
        d("caas-registry", "caas-testkit", "normal"),
    ]);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("caas-gateway depends on sqlx ([dev-dependencies])"));
    assert!(found[1].starts_with("caas-testkit depends on bollard ([dependencies])"));
    assert!(found[2].starts_with("caas-registry depends on caas-testkit ([dependencies])"));

    let graph = HashMap::from([
        ("gw".to_owned(), vec![("kit".to_owned(), true)]),
        ("kit".to_owned(), vec![("lib".to_owned(), false)]),
        ("lib".to_owned(), vec![("sched".to_owned(), true)]),
    ]);
    assert_eq!(
        path(&graph, "gw", "lib"),
        Some(vec!["gw".into(), "kit".into(), "lib".into()])
    );
    assert_eq!(
        path(&graph, "gw", "sched"),
        None,
        "a dependency's dev-dependencies are not built"
    );
}
