//! The benchmark suite's report: turns a `deploy/bench/run.sh` results folder into
//! `results.json` and `results.md` (ratios, added p99, targets, where the CPU goes).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{BenchError, Result};
use crate::measure::round;

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

/// The suite's paths, in the order they are reported.
const PATHS: [(&str, &str); 7] = [
    ("direct", "1. hub → node direct"),
    ("gateway", "2. hub → gateway → node (miss)"),
    ("cached", "3. hub → gateway (cache hit, in-process)"),
    ("cached-redis", "3r. hub → gateway (cache hit, shared Redis cache)"),
    ("nginx", "4. hub → nginx grpc_pass → node"),
    ("gateway-unique", "5u. hub → gateway, cache on, every token once (max load only)"),
    ("batch", "5b. hub → gateway LookupBatch, cache off (attestations/s; max load only)"),
];

/// Buckets of a flat `perf report --sort dso,sym` listing: where a process's CPU goes.
const CPU_BUCKETS: [(&str, &[&str]); 11] = [
    (
        "kernel and syscalls (loopback TCP, scheduling)",
        &["[k]", "[kernel", "[.] syscall", "epoll", "writev", "__libc_recv", "__libc_send", "vdso"],
    ),
    ("Ed25519 (attestation sign/verify)", &["curve25519", "ed25519", "sha512"]),
    ("TLS record crypto (ring AES-GCM)", &["aes_", "gcm", "ghash", "chacha", "ring_core", "ring::aead", "poly1305"]),
    ("rustls (records, state)", &["rustls"]),
    (
        "HTTP/2 and service plumbing (h2, hyper, tower, bytes)",
        &[
            "h2::",
            "hyper",
            "http::",
            "http_body",
            "httparse",
            "tower",
            "axum",
            "matchit",
            "bytes::",
            "slab::",
            "indexmap",
        ],
    ),
    ("gRPC and protobuf (tonic, prost)", &["tonic", "prost", "huren_proto"]),
    ("metrics and tracing", &["opentelemetry", "tracing", "metrics"]),
    ("redb store", &["redb"]),
    ("tokio runtime and locks", &["tokio", "futex", "parking_lot", "std::sys::sync", "mio::"]),
    (
        "allocation and copying (libc)",
        &["malloc", "free", "_int_", "memmove", "memcpy", "memset", "memcmp", "unlink_chunk", "realloc", "consolidate"],
    ),
    ("Huren logic", &["huren_"]),
];

/// Sums a profile listing into [`CPU_BUCKETS`] (percent of the process's samples).
fn cpu_breakdown(listing: &str) -> Vec<(String, f64)> {
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for line in listing.lines() {
        let line = line.trim();
        let Some((pct, rest)) = line.split_once('%') else { continue };
        let Ok(pct) = pct.trim().parse::<f64>() else { continue };
        let bucket = CPU_BUCKETS
            .iter()
            .find(|(_, needles)| needles.iter().any(|n| rest.contains(n)))
            .map(|(name, _)| *name)
            .unwrap_or("other");
        *sums.entry(bucket).or_default() += pct;
    }
    let mut out: Vec<(String, f64)> = sums.into_iter().map(|(k, v)| (k.to_owned(), round(v, 1))).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Summarises a `deploy/bench/run.sh` results folder: writes `results.json` and
/// `results.md` into it and returns the Markdown.
pub fn report(dir: &Path) -> Result<String> {
    let meta = read_json(&dir.join("meta.json")).unwrap_or(json!({}));
    let max: BTreeMap<&str, Value> =
        PATHS.iter().filter_map(|(k, _)| read_json(&dir.join(format!("max-{k}.json"))).map(|v| (*k, v))).collect();
    let half: BTreeMap<&str, Value> =
        PATHS.iter().filter_map(|(k, _)| read_json(&dir.join(format!("half-{k}.json"))).map(|v| (*k, v))).collect();
    if max.is_empty() {
        return Err(BenchError::NoResults(dir.to_owned()));
    }
    let rps = |k: &str| max.get(k).and_then(|v| num(v, "/rps"));
    let ratio = |a: &str, b: &str| match (rps(a), rps(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(round(x / y, 3)),
        _ => None,
    };
    let p99_half = |k: &str| half.get(k).and_then(|v| num(v, "/latency_us/p99"));
    let added = |k: &str| match (p99_half(k), p99_half("direct")) {
        (Some(a), Some(b)) => Some(round((a - b) / 1000.0, 3)),
        _ => None,
    };
    // CPU of everything under test per request (all watched processes but the load generator):
    // on a shared or noisy machine, 1e6 / that is the steadier capacity estimate per core.
    let sut_us = |k: &str| -> Option<f64> {
        let cpu = max.get(k)?.get("cpu")?.as_object()?;
        let sum: f64 = cpu.iter().filter(|(l, _)| *l != "loadgen").filter_map(|(_, v)| num(v, "/us_per_request")).sum();
        (sum > 0.0).then_some(sum)
    };
    let per_core = |k: &str| sut_us(k).map(|us| round(1e6 / us, 0));
    let cpu_ratio = |a: &str, b: &str| match (sut_us(a), sut_us(b)) {
        (Some(x), Some(y)) => Some(round(y / x, 3)),
        _ => None,
    };
    let cpu_ratios = json!({
        "gateway_over_direct": cpu_ratio("gateway", "direct"),
        "gateway_over_nginx": cpu_ratio("gateway", "nginx"),
        "cached_over_gateway": cpu_ratio("cached", "gateway"),
        "cached_redis_over_gateway": cpu_ratio("cached-redis", "gateway"),
        "batch_over_gateway": cpu_ratio("batch", "gateway"),
    });
    let ratios = json!({
        "gateway_over_direct": ratio("gateway", "direct"),
        "gateway_over_nginx": ratio("gateway", "nginx"),
        "cached_over_gateway": ratio("cached", "gateway"),
        "cached_redis_over_gateway": ratio("cached-redis", "gateway"),
        "gateway_unique_over_gateway": ratio("gateway-unique", "gateway"),
        "batch_over_gateway": ratio("batch", "gateway"),
    });
    let added_p99_ms = json!({
        "gateway": added("gateway"),
        "cached": added("cached"),
        "cached-redis": added("cached-redis"),
        "nginx": added("nginx"),
    });
    let store = read_json(&dir.join("store.json"));
    let check = |value: Option<f64>, pass: &dyn Fn(f64) -> bool| match value {
        Some(v) if pass(v) => "met",
        Some(_) => "missed",
        None => "not measured",
    };
    let cached_note = if max.contains_key("cached") { None } else { Some("not yet available") };
    let batch_size = max.get("batch").and_then(|v| num(v, "/batch"));
    let targets = json!([
        {"target": "gateway miss path ≥ 1.0× nginx grpc_pass throughput", "value": ratios["gateway_over_nginx"],
         "result": check(ratio("gateway", "nginx"), &|v| v >= 1.0)},
        {"target": "gateway miss path ≥ 0.5× direct", "value": ratios["gateway_over_direct"],
         "result": check(ratio("gateway", "direct"), &|v| v >= 0.5)},
        {"target": "cached hits ≥ 3× the miss path", "value": ratios["cached_over_gateway"],
         "result": cached_note.unwrap_or_else(|| check(ratio("cached", "gateway"), &|v| v >= 3.0))},
        {"target": "added p99 ≤ 1.0 ms at half load (gateway miss path)", "value": added_p99_ms["gateway"],
         "result": match added("gateway") {
             Some(v) if v < -0.05 => "inconclusive (negative: noise)",
             v => check(v, &|v| v <= 1.0),
         }},
        {"target": format!("LookupBatch of {} tokens ≥ 3× path 2's attestations/s", batch_size.unwrap_or(100.0)),
         "value": ratios["batch_over_gateway"],
         "result": check(ratio("batch", "gateway"), &|v| v >= 3.0)},
        {"target": "node ingest ≥ 100k updates/s (upsert_batch)",
         "value": store.as_ref().and_then(|s| num(s, "/updates/updates_per_s")),
         "result": check(store.as_ref().and_then(|s| num(s, "/updates/updates_per_s")), &|v| v >= 100_000.0)},
        {"target": "store lookup p99 < 1 ms",
         "value": store.as_ref().and_then(|s| num(s, "/lookups/latency_ns/p99")).map(|ns| round(ns / 1e6, 4)),
         "result": check(store.as_ref().and_then(|s| num(s, "/lookups/latency_ns/p99")), &|v| v < 1e6)},
    ]);
    let profiles: BTreeMap<&str, Vec<(String, f64)>> = ["gateway", "node"]
        .into_iter()
        .filter_map(|who| {
            let text = std::fs::read_to_string(dir.join(format!("profile-{who}.txt"))).ok()?;
            Some((who, cpu_breakdown(&text)))
        })
        .filter(|(_, b)| !b.is_empty())
        .collect();
    let summary = json!({
        "meta": meta,
        "cpu_profile_percent": profiles,
        "max": max,
        "half_load": half,
        "ratios": ratios,
        "cpu_normalised_ratios": cpu_ratios,
        "sut_cpu_us_per_request": PATHS.iter().map(|(k, _)| (*k, sut_us(k))).collect::<BTreeMap<_, _>>(),
        "added_p99_ms_at_half_load": added_p99_ms,
        "store": store,
        "targets": targets,
    });
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&summary)? + "\n")?;

    let mut md = String::new();
    md.push_str(&format!(
        "Machine: {} · {} · date {} · git {}\n\n",
        meta["cpu_model"].as_str().unwrap_or("?"),
        meta["cores"].as_u64().map(|c| format!("{c} cores")).unwrap_or_default(),
        meta["date"].as_str().unwrap_or("?"),
        meta["git"].as_str().unwrap_or("?"),
    ));
    md.push_str("| path | max req/s | p50 | p99 | max | errors | SUT CPU µs/req | req/s per SUT core | p99 at half load | added p99 |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (k, name) in PATHS {
        let Some(m) = max.get(k) else {
            if matches!(k, "gateway-unique" | "batch") {
                continue; // optional runs (UNIQUE_TOKENS=0, no batch)
            }
            md.push_str(&format!("| {name} | not yet available | | | | | | | | |\n"));
            continue;
        };
        let sut_cpu: f64 = m["cpu"]
            .as_object()
            .map(|o| o.iter().filter(|(l, _)| *l != "loadgen").filter_map(|(_, v)| num(v, "/us_per_request")).sum())
            .unwrap_or(0.0);
        md.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} |\n",
            num(m, "/rps").unwrap_or(0.0),
            f_ms(num(m, "/latency_us/p50")),
            f_ms(num(m, "/latency_us/p99")),
            f_ms(num(m, "/latency_us/max")),
            num(m, "/errors").unwrap_or(0.0),
            sut_cpu,
            per_core(k).unwrap_or(0.0),
            f_ms(p99_half(k)),
            match (k, added(k)) {
                ("direct", _) => "(baseline)".to_owned(),
                (_, Some(v)) => format!("{v:+.2} ms"),
                _ => "—".to_owned(),
            },
        ));
    }
    let r = |v: &Value| v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into());
    md.push_str(&format!(
        "\nRatios: 2/1 (gateway/direct) = {}, 2/4 (gateway/nginx) = {}, 3/2 (cached/miss) = {}\n",
        r(&ratios["gateway_over_direct"]),
        r(&ratios["gateway_over_nginx"]),
        if cached_note.is_some() { "not yet available".to_owned() } else { r(&ratios["cached_over_gateway"]) },
    ));
    if ratios["batch_over_gateway"].is_number() {
        md.push_str(&format!(
            "LookupBatch: 5b/2 (attestations/s) = {}, CPU-normalised {}\n",
            r(&ratios["batch_over_gateway"]),
            r(&cpu_ratios["batch_over_gateway"]),
        ));
    }
    if ratios["gateway_unique_over_gateway"].is_number() {
        md.push_str(&format!(
            "Unique tokens, cache on: 5u/2 = {} (a cache that only ever misses against the miss path)\n",
            r(&ratios["gateway_unique_over_gateway"]),
        ));
    }
    if ratios["cached_redis_over_gateway"].is_number() {
        md.push_str(&format!(
            "Shared Redis cache: 3r/2 (cached-redis/miss) = {}, CPU-normalised {}\n",
            r(&ratios["cached_redis_over_gateway"]),
            r(&cpu_ratios["cached_redis_over_gateway"]),
        ));
    }
    md.push_str(&format!(
        "CPU-normalised (req/s per core of everything under test): 2/1 = {}, 2/4 = {}, 3/2 = {}\n",
        r(&cpu_ratios["gateway_over_direct"]),
        r(&cpu_ratios["gateway_over_nginx"]),
        if cached_note.is_some() { "not yet available".to_owned() } else { r(&cpu_ratios["cached_over_gateway"]) },
    ));
    if let Some(rate) = half.values().next().and_then(|v| num(v, "/rate_target")) {
        md.push_str(&format!(
            "Half load: every path driven open-loop at {rate:.0} req/s (50% of the gateway miss path's maximum).\n"
        ));
    }
    if let Some(s) = &store {
        md.push_str(&format!(
            "\nNode store, {} subjects: bulk load {:.0}/s, batched random updates {:.0}/s, single upserts {:.0}/s, \
             lookup p50 {:.1} µs p99 {:.1} µs, file {:.1} MiB, peak RSS {:.1} MiB\n",
            num(s, "/subjects").unwrap_or(0.0),
            num(s, "/load/subjects_per_s").unwrap_or(0.0),
            num(s, "/updates/updates_per_s").unwrap_or(0.0),
            num(s, "/single_upserts/per_s").unwrap_or(0.0),
            num(s, "/lookups/latency_ns/p50").unwrap_or(0.0) / 1000.0,
            num(s, "/lookups/latency_ns/p99").unwrap_or(0.0) / 1000.0,
            num(s, "/file_bytes").unwrap_or(0.0) / 1048576.0,
            num(s, "/peak_rss_kib").unwrap_or(0.0) / 1024.0,
        ));
    }
    md.push_str("\n| target | value | result |\n|---|---:|---|\n");
    for t in targets.as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            t["target"].as_str().unwrap_or(""),
            t["value"].as_f64().map(|v| format!("{v}")).unwrap_or_else(|| "—".into()),
            t["result"].as_str().unwrap_or("")
        ));
    }
    md.push_str(&by_province_code(&max));
    if !profiles.is_empty() {
        md.push_str("\nWhere the CPU goes on the gateway path (perf, share of each process's samples):\n\n");
        md.push_str("| process | bucket | share |\n|---|---|---:|\n");
        for (who, buckets) in &profiles {
            for (bucket, pct) in buckets {
                md.push_str(&format!("| {who} | {bucket} | {pct:.1}% |\n"));
            }
        }
    }
    std::fs::write(dir.join("results.md"), &md)?;
    Ok(md)
}

/// Microseconds as milliseconds with two decimals, "—" when absent.
fn f_ms(v: Option<f64>) -> String {
    v.map(|us| format!("{:.2} ms", us / 1000.0)).unwrap_or_else(|| "—".into())
}

/// Every answer of the maximum-load runs by token province and gRPC code, failures
/// timed as well as successes.
fn by_province_code(max: &BTreeMap<&str, Value>) -> String {
    let mut md = String::from(
        "\nAnswers by province and gRPC code (maximum load; failures are timed too):\n\n\
         | path | province and code | answers | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|\n",
    );
    let mut rows = 0;
    for (k, _) in PATHS {
        let Some(codes) = max.get(k).and_then(|m| m.get("by_province_code")).and_then(Value::as_object) else {
            continue;
        };
        for (code, v) in codes {
            rows += 1;
            md.push_str(&format!(
                "| {k} | {code} | {:.0} | {} | {} | {} |\n",
                num(v, "/count").unwrap_or(0.0),
                f_ms(num(v, "/latency_us/p50")),
                f_ms(num(v, "/latency_us/p99")),
                f_ms(num(v, "/latency_us/max")),
            ));
        }
    }
    if rows == 0 {
        return String::new();
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rps: f64, p99_us: f64, extra: Value) -> Value {
        let mut v = json!({
            "rps": rps, "errors": 0, "latency_us": {"p50": p99_us / 2.0, "p99": p99_us, "max": p99_us * 2.0},
            "cpu": {"node": {"us_per_request": 1e6 / rps / 2.0}, "gateway": {"us_per_request": 1e6 / rps / 2.0}},
            "by_province_code": {"340000 OK": {"count": rps * 10.0, "latency_us": {"p50": 1000, "p99": p99_us, "max": 9000}},
                                 "340000 NotFound": {"count": 3, "latency_us": {"p50": 800, "p99": 900, "max": 950}}},
        });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    }

    #[test]
    fn the_report_judges_each_target_and_lists_failures_by_province_and_code() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, v: Value| std::fs::write(dir.path().join(name), v.to_string()).unwrap();
        write("max-direct.json", run(10_000.0, 5_000.0, json!({})));
        write("max-gateway.json", run(5_000.0, 9_000.0, json!({})));
        write("max-nginx.json", run(6_000.0, 8_000.0, json!({})));
        write("max-cached.json", run(40_000.0, 2_000.0, json!({})));
        write("max-batch.json", run(16_000.0, 400_000.0, json!({"batch": 100})));
        write("half-direct.json", run(2_500.0, 1_000.0, json!({})));
        write("half-gateway.json", run(2_500.0, 1_800.0, json!({})));
        let md = report(dir.path()).unwrap();
        let result = |target: &str| {
            let line = md.lines().find(|l| l.starts_with(&format!("| {target}"))).unwrap_or_else(|| panic!("{target}"));
            line.rsplit('|').nth(1).unwrap().trim().to_owned()
        };
        assert_eq!(result("gateway miss path ≥ 1.0× nginx"), "missed"); // 0.83
        assert_eq!(result("gateway miss path ≥ 0.5× direct"), "met"); // 0.5
        assert_eq!(result("cached hits ≥ 3× the miss path"), "met"); // 8
        assert_eq!(result("added p99 ≤ 1.0 ms at half load"), "met"); // +0.8 ms
        assert_eq!(result("LookupBatch of 100 tokens ≥ 3× path 2"), "met"); // 3.2
        assert!(md.contains("| gateway | 340000 NotFound | 3 | 0.80 ms | 0.90 ms | 0.95 ms |"), "{md}");
        assert!(md.contains("5b. hub → gateway LookupBatch"));
        assert!(!md.contains("5u."), "a run that was not made is left out, not shown empty");
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
        assert_eq!(json["ratios"]["batch_over_gateway"], json!(3.2));
    }

    #[test]
    fn profile_buckets() {
        let listing = "    40.00%  huren  [.] curve25519_dalek::field::mul\n    \
                       25.00%  [kernel.kallsyms]  [k] tcp_sendmsg\n    \
                       10.00%  libc.so.6  [.] malloc\n     5.00%  huren  [.] h2::proto::x\n";
        let b = cpu_breakdown(listing);
        assert_eq!(b[0], ("Ed25519 (attestation sign/verify)".to_owned(), 40.0));
        assert_eq!(b[1], ("kernel and syscalls (loopback TCP, scheduling)".to_owned(), 25.0));
        assert_eq!(b.iter().map(|(_, v)| v).sum::<f64>(), 80.0);
    }
}
