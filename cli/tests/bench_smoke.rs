//! `huren bench lookup` end to end: the real binary loads a real in-process federation
//! over mTLS for a moment and reports what it saw. Checks the report's content, never its
//! speed (performance is measured in BENCHMARKS.md, not asserted here).

use std::process::{Command, Output};

use huren_cli::demo::{demo_rules, demo_subjects, seed};
use huren_cli::federation::{Federation, DEMO_PROVINCES};
use huren_pki::ca::Validity;

async fn huren(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_huren")).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn report(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not one JSON object ({e}): {:?}", out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_lookup_loads_a_gateway_over_mtls_and_reports_what_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let f = Federation::start(dir.path(), &DEMO_PROVINCES, demo_rules()).await.unwrap();
    let subject = demo_subjects().into_iter().find(|s| s.province == "340000").unwrap();
    let issued = seed(&f, &subject, 600).await.unwrap();
    let token = format!("340000:{}", huren_pki::qr::token_to_text(&issued.token));
    f.register_hub("bench-hub", &["transit.rail"]).await.unwrap();
    let hub = f.pki.issue("hub", "bench-hub", Validity::days(1)).unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let base = |target: &str, token: &str| -> Vec<String> {
        [
            "bench",
            "lookup",
            "--target",
            target,
            "--cert",
            &path(&hub.cert),
            "--key",
            &path(&hub.key),
            "--ca",
            &path(&f.pki.root_cert_path()),
            "--token",
            token,
            "--purpose",
            "transit.rail",
            "--concurrency",
            "4",
            "--connections",
            "2",
            "--warmup",
            "100ms",
            "--duration",
            "500ms",
            "--json",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let gateway = f.gateway_addr().to_string();

    // A known token: every request answered, each answer verified by the load generator.
    let mut args = base(&gateway, &token);
    args.extend(["--verify-trust-list".to_owned(), path(&f.pki.trust_list_path()), "--label".into(), "smoke".into()]);
    let r = report(&huren(args).await);
    assert_eq!(
        (r["label"].as_str(), r["rpc"].as_str(), r["mode"].as_str()),
        (Some("smoke"), Some("lookup"), Some("closed"))
    );
    assert_eq!((r["connections"].as_u64(), r["concurrency"].as_u64()), (Some(2), Some(4)));
    assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    assert_eq!(r["requests"], r["ok"]);
    assert_eq!(r["verified_by_client"].as_bool(), Some(true));
    let l = &r["latency_us"];
    let (p50, p99, max) = (l["p50"].as_f64().unwrap(), l["p99"].as_f64().unwrap(), l["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "percentiles out of order: {l}");

    // A token the province never issued: the run stops before measuring, saying why.
    let unknown = format!("340000:{}", huren_pki::qr::token_to_text(&huren_pki::qr::new_token().unwrap()));
    let out = huren(base(&gateway, &unknown)).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("first request") && stderr.contains("NotFound"), "{stderr}");

    // It only ever loads this machine.
    let out = huren(base("192.0.2.1:8443", &token)).await;
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_handshake_flood_holds_idle_connections_and_a_trickler_and_times_fresh_lookups() {
    let args = ["bench", "handshake-flood", "--idle", "600", "--lookups", "5", "--trickle-every", "200ms", "--json"];
    let r = report(&huren(args.map(str::to_owned).to_vec()).await);
    assert_eq!((r["idle_requested"].as_u64(), r["idle_held"].as_u64()), (Some(600), Some(600)), "{r}");
    // Beyond the per-source cap, the gateway closed the idle connections at once.
    assert!(r["idle_closed_by_server"].as_u64().unwrap() >= 600 - 64, "{r}");
    assert_eq!((r["ok"].as_u64(), r["failed"].as_u64()), (Some(5), Some(0)), "{r}");
    let l = &r["latency_us"];
    assert_eq!(l["count"].as_u64(), Some(5), "{l}");
    let (p50, p99, max) = (l["p50"].as_u64().unwrap(), l["p99"].as_u64().unwrap(), l["max"].as_u64().unwrap());
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "percentiles out of order: {l}");
    assert!(r["trickler_closes"].is_array(), "{r}");

    let out = huren(["bench", "handshake-flood", "--lookups", "0"].map(str::to_owned).to_vec()).await;
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ingest_with_an_importer_process_applies_every_row_beside_attest_load() {
    let dir = tempfile::tempdir().unwrap();
    let args = "bench ingest --backend fjall --subjects 3000 --rows 12000 --batch 1000 --attest-rate 200 \
                --attest-seconds 0.5 --importer-process --importer-nice 5 --json";
    let mut args: Vec<String> = args.split_whitespace().map(String::from).collect();
    args.extend(["--dir".into(), dir.path().join("fed").display().to_string()]);
    let out = huren(args).await;
    let json = report(&out);
    assert_eq!(json["importer"], "process", "{json}");
    assert_eq!(json["importer_nice"], 5, "{json}");
    // The binary's own importer process reported every row applied (the bench fails otherwise).
    assert_eq!(json["accepted"], 12000, "{json}");
    let overlap = json["attest_overlap"].as_f64().unwrap();
    assert!(overlap > 0.0 && overlap <= 1.0, "{json}");
    let attest = &json["attest"];
    assert!(attest["ok"].as_u64().unwrap() > 0, "{attest}");
    assert_eq!(attest["errors"], 0, "{attest}");
    // Its input was written as the documented JSON Lines, one row a line.
    let input = std::fs::read_to_string(dir.path().join("fed").join("import.jsonl")).unwrap();
    assert_eq!(input.lines().count(), 12000);

    // The Attest load from a process of its own too (`huren bench lookup`), its report read back.
    let args = "bench ingest --backend fjall --subjects 2000 --rows 4000 --batch 1000 --attest-rate 200 \
                --attest-seconds 0.5 --attest-process --json";
    let mut args: Vec<String> = args.split_whitespace().map(String::from).collect();
    args.extend(["--dir".into(), dir.path().join("fed2").display().to_string()]);
    let json = report(&huren(args).await);
    assert_eq!(json["attest_generator"], "process", "{json}");
    assert_eq!(json["importer"], "in-process", "{json}");
    assert_eq!(json["accepted"], 4000, "{json}");
    let attest = &json["attest"];
    assert_eq!(attest["rpc"], "attest", "{attest}");
    assert!(attest["ok"].as_u64().unwrap() > 0, "{attest}");
    assert_eq!(attest["errors"], 0, "{attest}");

    // A window that is no length of time is refused in words, not a panic.
    for bad in ["-1", "NaN", "0"] {
        let out = huren(vec!["bench".into(), "ingest".into(), format!("--attest-seconds={bad}")]).await;
        assert!(!out.status.success(), "{bad}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--attest-seconds must be"), "{bad}: {out:?}");
    }

    // Without --importer-process, --importer-nice is refused with a usage error.
    let out = huren("bench ingest --importer-nice 5".split_whitespace().map(String::from).collect()).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--importer-process"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_store_with_several_writers_loads_every_subject() {
    let dir = tempfile::tempdir().unwrap();
    let args = "bench store --backend fjall --subjects 20000 --batch 1000 --writers 3 --updates 6000 \
                --singles 10 --lookups 200 --json";
    let mut args: Vec<String> = args.split_whitespace().map(String::from).collect();
    args.extend(["--dir".into(), dir.path().display().to_string()]);
    let json = report(&huren(args).await);
    assert_eq!(json["writers"], 3, "{json}");
    // Three threads took batches of one permutation: every subject once, none twice.
    assert_eq!(json["subject_count"], 20000, "{json}");
    assert_eq!(json["updates"]["count"], 6000, "{json}");

    let out = huren("bench store --writers 0".split_whitespace().map(String::from).collect()).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--writers"), "{out:?}");
}
