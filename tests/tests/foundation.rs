//! The foundation through the real binary: admin endpoints and metric names,
//! hot reload (plain edit and Kubernetes' `..data` swap), bad input at start
//! and on reload, TLS on the main listener, and the one-shot subcommands.

use std::time::Duration;

use orchestrator_tests::{Layout, Orchestrator, Setup, free_port, run_cli, self_signed};

fn write(dir: &std::path::Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write test file");
    p.display().to_string()
}

#[tokio::test]
async fn admin_endpoints_and_metric_names() {
    let orch = Orchestrator::start("", &[]).await;
    let health = reqwest::get(format!("{}/healthz", orch.admin_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("{}/readyz", orch.admin_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    // Nothing is configured on the main listener yet: a 404, counted per listener.
    let resp = reqwest::get(format!("{}/anything", orch.base_url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let metrics = orch.metrics().await;
    for name in [
        "orchestrator_build_info{version=\"0.1.0\"} 1",
        "orchestrator_config_reloads_total{result=\"success\"} 0",
        "orchestrator_config_reloads_total{result=\"error\"} 0",
        "orchestrator_http_requests_total{listener=\"main\",status=\"4xx\"} 1",
        "orchestrator_http_request_duration_seconds_bucket{listener=\"main\"",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    let other = reqwest::Client::new()
        .post(format!("{}/healthz", orch.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 405);
    let missing = reqwest::get(format!("{}/nope", orch.admin_url()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn edited_config_is_reloaded_and_counted() {
    let mut orch = Orchestrator::start("shutdown:\n  delay: 1s\n", &[]).await;
    orch.update_config("shutdown:\n  delay: 2s\n");
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;

    // A broken config is reported and ignored: the old one keeps serving.
    orch.update_config("shutdown:\n  delay: 2 fortnights\n");
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"error\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let ready = reqwest::get(format!("{}/readyz", orch.admin_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        orch.all_logs().contains("shutdown.delay"),
        "{}",
        orch.all_logs()
    );
}

#[tokio::test]
async fn kubernetes_data_symlink_swap_is_reloaded() {
    let mut orch = Orchestrator::start_with(Setup {
        yaml: "shutdown:\n  delay: 1s\n",
        layout: Layout::Kubernetes,
        ..Setup::default()
    })
    .await;
    assert!(
        std::fs::symlink_metadata(orch.config_path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    orch.update_config("shutdown:\n  delay: 3s\n");
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // A second swap is seen too (the watch survives the first).
    orch.update_config("shutdown:\n  delay: 4s\n");
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        2.0,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn changed_secret_file_triggers_a_reload() {
    let yaml = "cache:\n  redis:\n    password: ${secret:redis-password}\n";
    let orch = Orchestrator::start(yaml, &[("redis-password", "first-secret-value")]).await;
    // Kubernetes swaps Secret files the same way; a plain rename is enough here.
    let tmp = orch.secrets_dir().join(".tmp");
    std::fs::write(&tmp, "second-secret-value").unwrap();
    std::fs::rename(&tmp, orch.secrets_dir().join("redis-password")).unwrap();
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"success\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    // The value never reaches a log line.
    let logs = orch.all_logs();
    assert!(
        !logs.contains("first-secret-value") && !logs.contains("second-secret-value"),
        "{logs}"
    );
}

#[tokio::test]
async fn listen_address_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut orch = Orchestrator::spawn(Setup {
        ports: Some((port, free_port())),
        ..Setup::default()
    })
    .await;
    let code = orch.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(1));
    let logs = orch.all_logs();
    assert!(
        logs.contains(&format!(
            "listen.address: cannot listen on 127.0.0.1:{port}"
        )),
        "{logs}"
    );
}

#[tokio::test]
async fn validate_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.yaml", "listen:\n  address: 127.0.0.1:8080\n");
    let out = run_cli(&["validate", "--config", &cfg], "").await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "config OK");
}

/// Each bad input: exit 1, one line per problem naming key path and reason.
#[tokio::test]
async fn validate_rejects_bad_input_with_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let s = secrets.display();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "yaml syntax",
            "listen:\n  address: [x\n".into(),
            vec!["line 3 column 1"],
        ),
        (
            "unknown key",
            "admin:\n  adress: 127.0.0.1:1\n".into(),
            vec!["admin.adress: unknown key \"adress\"; did you mean \"address\"?"],
        ),
        (
            "wrong type",
            "listen:\n  maxHeaderBytes: lots\n".into(),
            vec!["listen.maxHeaderBytes: invalid type"],
        ),
        (
            "missing required key",
            "oidcProvider:\n  clients: []\n".into(),
            vec!["oidcProvider.issuer: required key is missing"],
        ),
        (
            "missing secret",
            format!("secretsDir: {s}\ncache:\n  redis:\n    password: ${{secret:redis-password}}\n"),
            vec!["cache.redis.password: secret \"redis-password\" cannot be read"],
        ),
        (
            "secret name with a path",
            format!("secretsDir: {s}\ncache:\n  redis:\n    password: ${{secret:../../etc/passwd}}\n"),
            vec!["cache.redis.password: secret name \"../../etc/passwd\""],
        ),
        (
            "invalid URL",
            "appGateway:\n  identityProviders: [{name: d, issuer: \"https://idp.example\", clientId: c}]\n  apps: [{name: a, upstream: \"htp://x\", identityProvider: d}]\n".into(),
            vec!["appGateway.apps[0].upstream: \"htp://x\" is not an http(s) URL"],
        ),
        (
            "invalid duration",
            "shutdown:\n  drainTimeout: soon\n".into(),
            vec!["shutdown.drainTimeout:"],
        ),
        (
            "several problems at once",
            "admin:\n  adress: x\nlog:\n  format: xml\ncache:\n  backend: redis\n  redis: {url: \"http://r\"}\n".into(),
            vec!["admin.adress:", "log.format:", "cache.redis.url:"],
        ),
    ];
    for (name, yaml, needles) in cases {
        let cfg = write(dir.path(), "c.yaml", &yaml);
        let out = run_cli(&["validate", "--config", &cfg], "").await;
        assert_eq!(out.code, Some(1), "{name}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            needles.len(),
            "{name}: one line per problem: {lines:#?}"
        );
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{name}: {needle:?} not in {:?}",
                out.stderr
            );
        }
    }
    let out = run_cli(
        &["validate", "--config", "/nonexistent/orchestrator.yaml"],
        "",
    )
    .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("/nonexistent/orchestrator.yaml: cannot be read"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn secret_values_never_reach_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("addr"), "not-an-address-but-secret").unwrap();
    let cfg = write(
        dir.path(),
        "c.yaml",
        &format!(
            "secretsDir: {}\nlisten:\n  address: ${{secret:addr}}\n",
            secrets.display()
        ),
    );
    let out = run_cli(&["validate", "--config", &cfg], "").await;
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("listen.address"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("not-an-address-but-secret"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn bad_tls_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _key_a) = self_signed(&["localhost"]);
    let (_cert_b, key_b) = self_signed(&["localhost"]);
    let cert = write(dir.path(), "tls.crt", &cert_a);
    let mismatched = write(dir.path(), "other.key", &key_b);
    let garbage = write(dir.path(), "garbage.pem", "not pem at all\n");

    let cfg = write(
        dir.path(),
        "c.yaml",
        &format!("listen:\n  tls: {{certFile: {cert}, keyFile: {mismatched}}}\n"),
    );
    let out = run_cli(&["validate", "--config", &cfg], "").await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("does not match the certificate"),
        "{}",
        out.stderr
    );

    let cfg = write(
        dir.path(),
        "c.yaml",
        &format!("listen:\n  tls: {{certFile: {garbage}, keyFile: {mismatched}}}\n"),
    );
    let out = run_cli(&["validate", "--config", &cfg], "").await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("listen.tls.certFile:"),
        "{}",
        out.stderr
    );

    // `run` refuses the same config before binding anything.
    let out = run_cli(&["run", "--config", &cfg], "").await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("listen.tls.certFile:"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn tls_listener_serves_http1_and_http2_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(&["localhost"]);
    let cert_path = write(dir.path(), "tls.crt", &cert);
    let key_path = write(dir.path(), "tls.key", &key);
    let yaml = format!(
        "listen:\n  address: 127.0.0.1:{{port}}\n  tls: {{certFile: {cert_path}, keyFile: {key_path}}}\n"
    );
    let orch = Orchestrator::start(&yaml, &[]).await;
    let url = format!("https://localhost:{}/x", orch.port());
    let client = |pem: &str| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .resolve("localhost", ([127, 0, 0, 1], orch.port()).into())
            .build()
            .unwrap()
    };
    let resp = client(&cert).get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], orch.port()).into())
        .http1_only()
        .build()
        .unwrap();
    assert_eq!(
        h1.get(&url).send().await.unwrap().version(),
        reqwest::Version::HTTP_11
    );

    // cert-manager renews the certificate: the listener picks it up without a restart.
    let (new_cert, new_key) = self_signed(&["localhost"]);
    write(dir.path(), "tls.key.tmp", &new_key);
    write(dir.path(), "tls.crt.tmp", &new_cert);
    std::fs::rename(dir.path().join("tls.key.tmp"), &key_path).unwrap();
    std::fs::rename(dir.path().join("tls.crt.tmp"), &cert_path).unwrap();
    let fresh = client(&new_cert);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if fresh.get(&url).send().await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn header_limits_are_enforced() {
    let orch = Orchestrator::start(
        "listen:\n  address: 127.0.0.1:{port}\n  maxHeaderBytes: 8192\n",
        &[],
    )
    .await;
    let resp = reqwest::Client::new()
        .get(format!("{}/x", orch.base_url()))
        .header("x-big", "a".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
}

#[tokio::test]
async fn hash_password_prints_an_argon2id_phc_string() {
    let out = run_cli(&["hash-password"], "correct horse\n").await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let hash = out.stdout.trim();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    let again = run_cli(&["hash-password"], "correct horse\n").await;
    assert_ne!(again.stdout.trim(), hash, "a fresh salt each time");
    let empty = run_cli(&["hash-password"], "").await;
    assert_eq!(empty.code, Some(1));
}

#[tokio::test]
async fn version_flag() {
    let out = run_cli(&["--version"], "").await;
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout.trim(), "orchestrator 0.1.0");
}

#[tokio::test]
async fn probe_reports_readiness() {
    let orch = Orchestrator::start("", &[]).await;
    let ok = run_cli(
        &["probe", "--url", &format!("{}/readyz", orch.admin_url())],
        "",
    )
    .await;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    let missing = run_cli(
        &["probe", "--url", &format!("{}/nope", orch.admin_url())],
        "",
    )
    .await;
    assert_eq!(missing.code, Some(1));
}

#[tokio::test]
async fn log_level_changes_without_a_restart() {
    // An empty RUST_LOG leaves the level to the config file.
    let mut orch = Orchestrator::start_with(Setup {
        yaml: "log:\n  format: json\n  level: warn\n",
        env: &[("RUST_LOG", "")],
        ..Setup::default()
    })
    .await;
    assert!(
        !orch.all_logs().contains("orchestrator started"),
        "info is filtered at level warn"
    );
    orch.update_config("log:\n  format: json\n  level: info\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !orch.all_logs().contains("log level changed") {
        assert!(
            std::time::Instant::now() < deadline,
            "level not applied\n{}",
            orch.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A bad level is rejected and counted; the old filter stays.
    orch.update_config("log:\n  format: json\n  level: \"info,[[[\"\n");
    orch.wait_metric_at_least(
        "orchestrator_config_reloads_total{result=\"error\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
}

/// Reads from `stream` until a full response head has arrived (bounded by `limit`).
async fn read_head(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    use tokio::io::AsyncWriteExt as _;
    let orch = Orchestrator::start(
        "listen:\n  address: 127.0.0.1:{port}\n  maxConnections: 1\n",
        &[],
    )
    .await;
    let addr = format!("127.0.0.1:{}", orch.port());
    let request = b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n";

    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let head = read_head(&mut first, Duration::from_secs(5))
        .await
        .expect("first served");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The first connection stays open (keep-alive) and holds the only slot.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second.write_all(request).await.unwrap();
    assert!(
        read_head(&mut second, Duration::from_millis(500))
            .await
            .is_none(),
        "a second connection was served beyond maxConnections"
    );

    drop(first);
    let head = read_head(&mut second, Duration::from_secs(5))
        .await
        .expect("served once the slot is free");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}
