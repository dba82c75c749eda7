//! The load harness end to end, in miniature: the small GET (with NGINX left
//! out, so every orchestrator target, the second app's included, must serve)
//! and every scenario that needs no NGINX, against the workspace's debug
//! `orchestrator` binary, with tiny counts. Checks that it runs, measures
//! something in each scenario and says so in its JSON report; the numbers
//! themselves are not judged here.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_load_harness_runs_every_scenario_without_nginx_and_reports_json() {
    let load = Path::new(env!("CARGO_BIN_EXE_load"));
    let orchestrator = load.with_file_name("orchestrator");
    assert!(
        orchestrator.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        orchestrator.display()
    );
    let out = Command::new(load)
        .arg("--orchestrator-bin")
        .arg(&orchestrator)
        .args([
            "--scenario",
            "small,logins,exchanges,sessions,startup",
            "--no-nginx",
            "--duration",
            "2s",
            "--connections",
            "4",
            "--sessions",
            "40",
            "--starts",
            "1",
            "--no-pin",
            "--json",
        ])
        .output()
        .expect("the load harness starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "load failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");

    // Each throughput scenario served requests, and none failed.
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["scenario"].as_str())
        .collect();
    for expected in [
        "small GET",
        "new login (password, full flow)",
        "new login (existing SSO session)",
        "OIDC code exchange (memory)",
    ] {
        assert!(names.iter().any(|n| n.starts_with(expected)), "{names:?}");
    }
    for row in scenarios
        .iter()
        .flat_map(|s| s["targets"].as_array().into_iter().flatten())
    {
        assert!(
            row["ops"].as_u64().unwrap_or(0) > 0,
            "nothing served: {row}"
        );
        assert_eq!(row["errors"], 0, "{row}");
    }

    // The single-number results are there, next to their goals.
    let results = report["results"].as_array().expect("results");
    let measured = |name: &str| {
        results
            .iter()
            .find(|r| r["result"].as_str().is_some_and(|n| n.starts_with(name)))
            .and_then(|r| r["measured"].as_str())
            .unwrap_or_else(|| panic!("no result {name:?} in {results:?}"))
            .to_owned()
    };
    assert!(measured("start to /readyz 200").ends_with("1 starts)"));
    assert!(measured("RSS per live gateway session").contains("over 40 sessions"));
    assert!(
        measured("OIDC code exchanges/s, memory cache")
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
}
