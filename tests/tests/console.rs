//! The coordinator console against a live loopback federation, loaded in a real browser:
//! Debian's `chromium`, headless, `--dump-dom` (the DOM after the browser parsed the page).
//! Without chromium the test fails when `CI` is set and is skipped with a notice otherwise.
//! With `HUREN_CONSOLE_SCREENSHOT=<path>` it also saves a 1280×900 screenshot of the main
//! page (how `docs/console.png` is made).
//!
//! Also here: `huren audit receipts fetch`'s library call against the same federation at
//! its sunset; `huren pki status`'s summary; and the Hubs page (over plain HTTP, no
//! browser needed) ranking and flagging the hubs that checked a province's travellers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use huren_cli::admin::Readiness;
use huren_cli::demo::{demo_subjects, seed};
use huren_cli::federation::{FederationOptions, DEMO_PROVINCES};
use huren_cli::telemetry::PrometheusMetrics;
use huren_client::HubClient;
use huren_console::{Console, Sources};
use huren_gateway::BreakerPolicy;
use huren_pki::qr::Scanned;
use huren_pki::unix_now;
use huren_tests::{code, http_get, serve_admin, start_with, Deadline};

/// The browser, found on PATH; `None` (with a notice) when it is missing outside CI.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed: the console's browser test needs it in CI (apt-get install chromium)");
        }
        eprintln!("NOTICE: chromium not found on PATH; skipping the console's browser test (apt-get install chromium)");
    }
    found
}

/// Runs headless chromium with `args` and `url`; returns its standard output. Fails the
/// test if it does not finish within a minute.
async fn browse(browser: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let mut command = Command::new(browser);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let what = format!("chromium {args:?} {url}");
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("chromium starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("chromium status").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{what} did not finish within a minute");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("chromium output");
        assert!(out.status.success(), "{what} failed: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("chromium task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_live_federation_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let profile = tempfile::tempdir().unwrap();

    let metrics = PrometheusMetrics::new().unwrap();
    let mut options = FederationOptions::default();
    options.gateway.meter = Some(metrics.meter("huren-gateway"));
    // Two failures open a breaker for ten minutes: the page shows it open, whatever the timing.
    options.gateway.breaker = BreakerPolicy { failures: 2, open_for: Duration::from_secs(600) };
    let (mut f, _dir) = start_with(options).await;
    let readiness: Readiness = Arc::new(|| (true, "ok".into()));
    let (gateway_admin, _stop_gateway_admin) = serve_admin(&metrics, readiness.clone()).await;
    // Each node's admin port: the same gauges a node registers on its own
    // (`huren_runtime::expiry::register_gauges`), over that node's live trust list.
    let mut node_metrics = BTreeMap::new();
    let mut node_admins = Vec::new();
    for (c, _) in DEMO_PROVINCES {
        let m = PrometheusMetrics::new().unwrap();
        huren_runtime::expiry::register_gauges(&m.meter("huren-node"), None, f.node_trust(&code(c)).unwrap());
        let (addr, stop) = serve_admin(&m, readiness.clone()).await;
        node_metrics.insert(c.to_owned(), format!("http://{addr}/metrics"));
        node_admins.push((m, stop));
    }

    // The console, as a coordinator, on a free loopback port.
    let console = Console::new(Sources {
        identity: f.identity("coordinator", "console").unwrap(),
        gateway: f.gateway_addr().to_string(),
        gateway_metrics: Some(format!("http://{gateway_admin}/metrics")),
        node_metrics,
        pki_dir: Some(f.pki.clone()),
        timeout: Duration::from_secs(3),
        hub_window: huren_client::DEFAULT_HUB_WINDOW,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(huren_console::server::serve(listener, console, Duration::from_secs(60), async {
        let _ = stopped.await;
    }));
    let url = |path: &str| format!("http://{addr}{path}");
    let dump = |path: &str| {
        let (browser, profile, url) = (browser.clone(), profile.path().to_owned(), url(path));
        async move { browse(&browser, &profile, &["--dump-dom"], &url).await }
    };

    // A hub at a Shandong highway exit; travellers of every province with tokens.
    f.register_hub_in("g3-exit", &["transit.highway"], &code("370000")).await.unwrap();
    let mut issued = Vec::new();
    for s in demo_subjects() {
        issued.push((s.province, Scanned::parse(&seed(&f, &s, 600).await.unwrap().qr).unwrap()));
    }
    let sequence = f.gateway_trust().unwrap().current().sequence();

    // The first page load is the console's baseline sample.
    let first = dump("/").await;
    for (c, _) in DEMO_PROVINCES {
        assert!(first.contains(&format!(r#"data-province="{c}" data-state="ok""#)), "{c} not shown serving:\n{first}");
    }
    assert!(first.contains(&format!("sequence {sequence}")), "{first}");

    // Two lookups of the Anhui driver from Shandong; then Guangdong goes down and two
    // lookups of its resident fail, which opens its breaker.
    let mut hub = HubClient::connect(&f.gateway_addr().to_string(), &f.identity("hub", "g3-exit").unwrap()).unwrap();
    let anhui = &issued.iter().find(|(p, _)| *p == "340000").unwrap().1;
    for _ in 0..2 {
        hub.lookup(anhui.province(), anhui.token(), "transit.highway").await.unwrap();
    }
    let guangdong = code("440000");
    let guangdong_addr = f.stop_node(&guangdong).deadline("Guangdong's node to stop").await.unwrap();
    let resident = &issued.iter().find(|(p, _)| *p == "440000").unwrap().1;
    for _ in 0..2 {
        hub.lookup(resident.province(), resident.token(), "transit.highway").await.unwrap_err();
    }

    let main = dump("/").await;
    assert!(!main.contains("<script"), "no JavaScript");
    for c in ["340000", "370000"] {
        assert!(main.contains(&format!(r#"data-province="{c}" data-state="ok""#)), "{c} not serving:\n{main}");
    }
    assert!(main.contains(r#"data-province="440000" data-state="down""#), "Guangdong not down:\n{main}");
    assert!(main.contains("unreachable"), "{main}");
    assert!(main.contains(&format!("seq {sequence}")), "the sequence each node holds:\n{main}");
    assert!(main.contains("breaker open"), "Guangdong's breaker:\n{main}");
    assert!(main.contains(r#"<td>370000</td><td>340000</td><td class="ok">ok</td><td class="n">2</td>"#), "{main}");
    assert!(main.contains("days left"), "{main}");
    assert!(main.contains("No sunset is ordered."), "{main}");
    if let Some(path) = std::env::var_os("HUREN_CONSOLE_SCREENSHOT") {
        let arg = format!("--screenshot={}", Path::new(&path).display());
        browse(&browser, profile.path(), &[&arg, "--window-size=1280,900", "--hide-scrollbars"], &url("/")).await;
        assert!(Path::new(&path).metadata().is_ok_and(|m| m.len() > 10_000), "screenshot written");
    }

    let expiry = dump("/expiry").await;
    let trust = f.gateway_trust().unwrap().current();
    for p in trust.provinces() {
        for kid in p.keys.keys() {
            assert!(expiry.contains(&kid.to_string()), "key {kid} of {} missing:\n{expiry}", p.code);
        }
        assert!(expiry.contains(&format!("province-ca {}", p.code)));
    }
    assert!(expiry.contains(">root<") && expiry.contains("hub-g3-exit"), "{expiry}");
    assert!(expiry.contains(" days</td>"), "{expiry}");

    let traffic = dump("/traffic").await;
    assert!(traffic.contains(r#"<td>370000</td><td>440000</td>"#), "the failed pair:\n{traffic}");

    let audit = dump("/audit").await;
    assert!(audit.contains(huren_tests::RED_RULE) && audit.contains("<td>RED</td>"), "{audit}");
    assert!(audit.contains("spiffe://huren.gov/province/370000/authority/jinan-cdc"), "{audit}");
    assert!(audit.contains("Log not verified"), "Guangdong's log cannot be read while it is down:\n{audit}");

    assert!(dump("/sunset").await.contains("No sunset is ordered."));

    // The sunset: every node purges and hands in its receipt; the console counts them.
    f.restart_node(&guangdong, guangdong_addr).deadline("Guangdong's node to restart").await.unwrap();
    let mut receipts = f.gateway_receipts().unwrap();
    f.pki.set_sunset(unix_now(), "the mandate has ended").unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline("every server to hold the sunset list").await.unwrap();
    receipts.wait_for(|n| *n == 3).deadline("the gateway to hold three sunset receipts").await.unwrap();
    let sunset = dump("/sunset").await;
    assert!(sunset.contains("<b>3</b> receipts collected and verified, <b>0</b> missing"), "{sunset}");
    assert!(sunset.contains("in force since"), "{sunset}");

    // `huren audit receipts fetch`: the same three, verified and saved.
    let out = tempfile::tempdir().unwrap();
    let fetched = huren_cli::audit::fetch_receipts(
        &f.identity("auditor", "a1").unwrap(),
        &f.gateway_addr().to_string(),
        &trust_now(&f),
        out.path(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.len(), 3);
    for r in &fetched {
        assert!(matches!(r.outcome, huren_cli::audit::FetchOutcome::Verified { .. }), "{r:?}");
        assert!(Path::new(&r.file).starts_with(out.path()) && Path::new(&r.file).exists());
    }

    // Never a subject reference, a name or a token on any page.
    for page in [&main, &expiry, &traffic, &audit, &sunset] {
        for s in demo_subjects() {
            for secret in [s.subject_ref, s.name, s.id_number, s.phone] {
                assert!(!page.contains(secret), "{secret} shown");
            }
        }
        for (_, scanned) in &issued {
            assert!(!page.contains(&huren_pki::qr::token_to_text(scanned.token())), "a token shown");
        }
    }

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

fn trust_now(f: &huren_cli::federation::Federation) -> huren_pki::TrustList {
    f.gateway_trust().unwrap().current().as_ref().clone()
}

/// `huren pki status`'s summary: the same collection as the console, as text.
#[tokio::test]
async fn pki_status_summarises_the_live_federation() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    let console = Console::new(Sources {
        identity: f.identity("auditor", "status").unwrap(),
        gateway: f.gateway_addr().to_string(),
        gateway_metrics: None,
        node_metrics: BTreeMap::new(),
        pki_dir: None,
        timeout: Duration::from_secs(3),
        hub_window: huren_client::DEFAULT_HUB_WINDOW,
    });
    f.stop_node(&code("370000")).deadline("Shandong's node to stop").await.unwrap();
    let o = console.overview().await;
    let text = huren_cli::cmd::pki::status::text(&o);
    let sequence = f.gateway_trust().unwrap().current().sequence();
    assert!(text.contains(&format!("trust list sequence {sequence} (from the gateway)")), "{text}");
    assert!(text.contains(&format!("serves sequence {sequence}")), "{text}");
    let line = |c: &str| text.lines().find(|l| l.starts_with(c)).unwrap_or_default().to_owned();
    assert!(line("340000").contains("serving"), "{text}");
    assert!(line("370000").contains("UNREACHABLE"), "{text}");
    assert!(text.contains("first key to expire: ") && text.contains("days left"), "{text}");
    assert!(text.contains("traffic: no gateway metrics address given"), "{text}");
}

/// A console with `identity` served on a free loopback port; its address and its stop.
async fn serve_console(
    f: &huren_cli::federation::Federation,
    identity: huren_client::TlsIdentity,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let console = Console::new(Sources {
        identity,
        gateway: f.gateway_addr().to_string(),
        gateway_metrics: None,
        node_metrics: BTreeMap::new(),
        pki_dir: None,
        timeout: Duration::from_secs(3),
        hub_window: huren_client::DEFAULT_HUB_WINDOW,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(huren_console::server::serve(listener, console, Duration::from_secs(60), async {
        let _ = stopped.await;
    }));
    (addr, stop, serving)
}

/// The part of `page` from the element carrying `attribute` to the end of that element
/// (`</tag>` of the first `tag` closed after it).
fn element<'a>(page: &'a str, attribute: &str, tag: &str) -> &'a str {
    let start = page.find(attribute).unwrap_or_else(|| panic!("{attribute} not on the page:\n{page}"));
    let end = page[start..].find(&format!("</{tag}>")).map(|e| start + e).unwrap_or(page.len());
    &page[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_page_flags_the_hub_that_checked_outside_its_registered_province() {
    let (f, _dir) = start_with(FederationOptions::default()).await;
    let anhui = code("340000");
    // Two Shandong hubs; both check the same Anhui traveller.
    f.pki.register_hub("jinan-west", &["transit.rail".to_owned()]).unwrap();
    f.pki.set_hub_name("jinan-west", Some("Jinan West railway station")).unwrap();
    f.pki.set_hub_province("jinan-west", Some(&code("370000"))).unwrap();
    f.register_hub_in("sd-moved", &["transit.rail"], &code("370000")).await.unwrap();
    let subjects = demo_subjects();
    let traveller = subjects.iter().find(|s| s.province == "340000").unwrap();
    let scanned = Scanned::parse(&seed(&f, traveller, 600).await.unwrap().qr).unwrap();
    for hub in ["jinan-west", "sd-moved"] {
        let mut client = HubClient::connect(&f.gateway_addr().to_string(), &f.identity("hub", hub).unwrap()).unwrap();
        client.lookup(scanned.province(), scanned.token(), "transit.rail").await.unwrap();
    }
    // The node records checks off the lookup path: wait until both are in its aggregates.
    let auditor = f.identity("auditor", "console").unwrap();
    let mut audit = huren_client::AuditClient::connect(None, &anhui, &auditor, trust_now(&f)).unwrap();
    async {
        while audit.hub_aggregates(0, 0).await.unwrap().aggregates.len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    .deadline("Anhui's node to aggregate both hubs' checks")
    .await;
    // Then one of them is registered in Guangdong: its checks carried Shandong.
    f.pki.set_hub_province("sd-moved", Some(&code("440000"))).unwrap();
    let seq = f.publish().await.unwrap();
    f.until_everyone_has(seq).deadline("every server to hold the moved hub").await.unwrap();

    let (addr, stop, serving) = serve_console(&f, auditor).await;
    let hubs = http_get(addr, "/hubs").await;
    assert!(hubs.starts_with("HTTP/1.1 200"), "{hubs}");
    let anhui_section = element(&hubs, r#"<section data-province="340000">"#, "section");
    assert!(anhui_section.contains("2 hubs checked travellers of 340000"), "{anhui_section}");
    let moved = element(anhui_section, r#"data-hub="sd-moved""#, "tr");
    assert!(moved.contains(r#"data-flagged="yes""#), "{moved}");
    assert!(moved.contains("checked in 370000 but registered in 440000"), "{moved}");
    let jinan = element(anhui_section, r#"data-hub="jinan-west""#, "tr");
    assert!(jinan.contains(r#"data-flagged="no""#) && jinan.contains(">none<"), "{jinan}");
    assert!(jinan.contains("Jinan West railway station"), "its registered name: {jinan}");
    assert!(!jinan.contains("registered in"), "{jinan}");
    let shandong = element(&hubs, r#"<section data-province="370000">"#, "section");
    assert!(shandong.contains("no checks in the window") && !shandong.contains("data-hub"), "{shandong}");
    assert!(!hubs.contains("WARNING"), "no checks dropped:\n{hubs}");

    let main = http_get(addr, "/").await;
    let line = element(&main, r#"<li data-province="340000">"#, "li");
    assert!(line.contains("1 of 2 hubs flagged"), "{line}");
    assert!(main.contains(r#"<a href="/hubs">"#), "{main}");

    for page in [&hubs, &main] {
        for secret in [traveller.subject_ref, traveller.name, traveller.id_number, traveller.phone] {
            assert!(!page.contains(secret), "{secret} shown");
        }
        assert!(!page.contains(&huren_pki::qr::token_to_text(scanned.token())), "a token shown");
    }
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_page_says_which_node_failed_and_that_a_coordinator_may_not_ask() {
    let (mut f, _dir) = start_with(FederationOptions::default()).await;
    f.stop_node(&code("440000")).deadline("Guangdong's node to stop").await.unwrap();

    let (addr, stop, serving) = serve_console(&f, f.identity("auditor", "console").unwrap()).await;
    let hubs = http_get(addr, "/hubs").await;
    let guangdong = element(&hubs, r#"<section data-province="440000">"#, "section");
    assert!(guangdong.contains(r#"<p class="down hubs-state">Not collected: "#), "{guangdong}");
    assert!(!guangdong.contains("<table"), "{guangdong}");
    let anhui = element(&hubs, r#"<section data-province="340000">"#, "section");
    assert!(anhui.contains("0 hubs checked travellers of 340000"), "the others answer:\n{anhui}");
    let main = http_get(addr, "/").await;
    assert!(element(&main, r#"<li data-province="440000">"#, "li").contains("not collected: "), "{main}");
    let _ = stop.send(());
    serving.await.unwrap().unwrap();

    // A coordinator's console asks no node for aggregates (nodes give them to auditors
    // only) and says so for every province.
    let (addr, stop, serving) = serve_console(&f, f.identity("coordinator", "console").unwrap()).await;
    let hubs = http_get(addr, "/hubs").await;
    for (c, _) in DEMO_PROVINCES {
        let section = element(&hubs, &format!(r#"<section data-province="{c}">"#), "section");
        assert!(
            section.contains("Not asked: nodes give hub aggregates to auditor identities only, and the console runs as a coordinator"),
            "{section}"
        );
    }
    let main = http_get(addr, "/").await;
    assert!(element(&main, r#"id="hubs-summary""#, "p").contains("auditor identities only"), "{main}");
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
