//! The HTML pages, server-rendered with maud: no JavaScript, no external assets, one
//! inline stylesheet, large type and high contrast (a laptop or a projector), colours
//! always doubled by words. Pages refresh themselves every 30 s (`<meta refresh>`).
//!
//! [`overview`] is the main page (tile map, expiry, breakers, traffic, sunset and flagged
//! hubs in short); [`expiry`], [`traffic`], [`sunset`], [`audit`] and [`hubs`] give the
//! detail. Each takes data
//! from [`crate::model`] only, which holds no personal data.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::model::*;

const STYLE: &str = r#"
:root { color-scheme: light; --ok: #1a7f37; --warn: #9a6700; --down: #b3261e; --ink: #111; --muted: #555; }
* { box-sizing: border-box; }
body { font: 18px/1.45 system-ui, "Noto Sans", "Noto Sans CJK SC", sans-serif; color: var(--ink); background: #fafafa; margin: 0; }
header { background: #0b2545; color: #fff; padding: .6rem 1.2rem; display: flex; flex-wrap: wrap; gap: 1.2rem; align-items: baseline; }
header h1 { font-size: 1.3rem; margin: 0; }
header nav a { color: #fff; margin-right: 1rem; text-decoration: none; border-bottom: 2px solid transparent; }
header nav a[aria-current] { border-bottom-color: #fff; font-weight: 700; }
main { padding: 1rem 1.2rem; max-width: 1400px; }
h2 { font-size: 1.15rem; margin: 1.2rem 0 .5rem; }
.summary { display: flex; flex-wrap: wrap; gap: .6rem 1.6rem; }
.summary div { min-width: 9rem; }
.summary b { display: block; font-size: 1.5rem; }
.columns { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 1.5rem; }
@media (max-width: 1000px) { .columns { grid-template-columns: 1fr; } }
.map { display: grid; grid-template-columns: repeat(8, minmax(0, 1fr)); gap: 4px; }
.tile { border-radius: 4px; padding: .25rem .35rem; color: #fff; min-height: 4.2rem; font-size: .8rem; line-height: 1.2; overflow-wrap: break-word; }
.tile strong { display: block; font-size: .82rem; }
.tile.ok { background: var(--ok); } .tile.warn { background: var(--warn); } .tile.down { background: var(--down); }
.tile.absent { background: #ececec; color: #777; min-height: 2.4rem; font-size: .7rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .down { color: var(--down); }
.tile.ok, .tile.warn, .tile.down { color: #fff; }
.note { color: var(--muted); font-size: .9rem; }
.legend span { display: inline-block; padding: 0 .4rem; margin-right: .4rem; color: #fff; border-radius: 3px; }
@media (min-width: 1800px) { body { font-size: 22px; } }
"#;

/// Where each provincial-level division sits on the schematic map: GB/T 2260 code,
/// name, row, column (8 columns). Codes not listed are placed below the map.
const GRID: &[(&str, &str, u8, u8)] = &[
    ("230000", "Heilongjiang", 1, 7),
    ("650000", "Xinjiang", 2, 1),
    ("150000", "Inner Mongolia", 2, 5),
    ("220000", "Jilin", 2, 7),
    ("620000", "Gansu", 3, 3),
    ("640000", "Ningxia", 3, 4),
    ("110000", "Beijing", 3, 5),
    ("120000", "Tianjin", 3, 6),
    ("210000", "Liaoning", 3, 7),
    ("540000", "Tibet", 4, 1),
    ("630000", "Qinghai", 4, 2),
    ("610000", "Shaanxi", 4, 3),
    ("140000", "Shanxi", 4, 4),
    ("130000", "Hebei", 4, 5),
    ("370000", "Shandong", 4, 6),
    ("510000", "Sichuan", 5, 2),
    ("500000", "Chongqing", 5, 3),
    ("410000", "Henan", 5, 4),
    ("340000", "Anhui", 5, 5),
    ("320000", "Jiangsu", 5, 6),
    ("530000", "Yunnan", 6, 2),
    ("520000", "Guizhou", 6, 3),
    ("420000", "Hubei", 6, 4),
    ("360000", "Jiangxi", 6, 5),
    ("310000", "Shanghai", 6, 6),
    ("450000", "Guangxi", 7, 3),
    ("430000", "Hunan", 7, 4),
    ("350000", "Fujian", 7, 5),
    ("330000", "Zhejiang", 7, 6),
    ("460000", "Hainan", 8, 3),
    ("440000", "Guangdong", 8, 4),
    ("810000", "Hong Kong", 8, 5),
    ("710000", "Taiwan", 8, 6),
    ("820000", "Macao", 9, 4),
];

fn time(unix: i64) -> String {
    huren_client::rfc3339(unix)
}

fn tile_class(t: Tile) -> &'static str {
    match t {
        Tile::Ok => "ok",
        Tile::Warn => "warn",
        Tile::Down => "down",
    }
}

fn days_class(days: i64) -> &'static str {
    if days < 0 {
        "down"
    } else if days <= 14 {
        "warn"
    } else {
        "ok"
    }
}

/// One page: header with navigation, `body`, refreshing every 30 s.
fn page(title: &str, current: &str, generated_at: i64, body: Markup) -> Markup {
    let links = [
        ("/", "Overview"),
        ("/expiry", "Keys & certificates"),
        ("/traffic", "Traffic"),
        ("/audit", "Non-green changes"),
        ("/hubs", "Hubs"),
        ("/sunset", "Sunset"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="30";
                title { "Huren console — " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Huren federation" }
                    nav {
                        @for (href, label) in links {
                            @if href == current { a href=(href) aria-current="page" { (label) } }
                            @else { a href=(href) { (label) } }
                        }
                    }
                    span.note style="color:#cfd8e3" { "as of " (time(generated_at)) " · read-only · refreshes every 30 s" }
                }
                main { (body) }
            }
        }
    }
}

fn trust_summary(o: &Overview) -> Markup {
    html! {
        section.summary id="summary" {
            @match &o.trust {
                Some(t) => {
                    div { "Trust list" b id="sequence" { "sequence " (t.sequence) } }
                    div { "Signed" b { (time(t.issued_at)) } }
                    div { "Next update due" b class=(if t.stale { "warn" } else { "" }) {
                        (time(t.next_update)) @if t.stale { " (stale)" }
                    } }
                    div { "Provinces" b { (o.provinces.len()) } }
                    div { "Hubs" b { (t.hubs) } }
                    div { "Rules" b { (t.rules) } }
                    div { "Revoked" b { (t.revoked) } }
                }
                None => { div.down { "No trust list: the gateway could not be asked and no PKI directory was given." } }
            }
            div { "Gateway " (o.gateway.address)
                @match (&o.gateway.sequence, &o.gateway.error) {
                    (Some(s), _) => { b.ok { "serves sequence " (s) } }
                    (None, Some(e)) => { b.down { "unreachable" } span.note { (e) } }
                    _ => {}
                }
            }
        }
    }
}

fn tile(p: &ProvinceView) -> Markup {
    html! {
        div class={ "tile " (tile_class(p.tile)) } data-province=(p.code) data-state=(tile_class(p.tile)) {
            strong { (p.name) }
            (p.code) br;
            (p.health.word())
            @if let Some(s) = p.sequence_held { br; "seq " (s) }
            @if let Some(b) = p.breaker { @if b != Breaker::Closed { br; "breaker " (b.word()) } }
        }
    }
}

/// The schematic map: provinces on a tile grid, coloured by health and trust-list
/// sequence held (words on every tile too).
pub fn map(provinces: &[ProvinceView]) -> Markup {
    let placed = |code: &str| GRID.iter().find(|(c, _, _, _)| *c == code).map(|(_, _, r, c)| (*r, *c));
    let extra_row = GRID.iter().map(|(_, _, r, _)| *r).max().unwrap_or(0) + 1;
    let members: Vec<&str> = provinces.iter().map(|p| p.code.as_str()).collect();
    let mut extra_col = 0u8;
    html! {
        div.map role="img" aria-label="Provinces of the federation by node health" {
            @for (code, name, row, col) in GRID.iter().filter(|(c, _, _, _)| !members.contains(c)) {
                div.tile.absent data-absent=(code) style={ "grid-row:" (row) ";grid-column:" (col) } title="not in the federation" { (name) }
            }
            @for p in provinces {
                @let (row, col) = placed(&p.code).unwrap_or_else(|| { extra_col += 1; (extra_row + (extra_col - 1) / 8, (extra_col - 1) % 8 + 1) });
                div style={ "grid-row:" (row) ";grid-column:" (col) } { (tile(p)) }
            }
        }
        p.legend.note {
            span style="background:var(--ok)" { "serving, current" }
            span style="background:var(--warn)" { "behind on the trust list or breaker not closed" }
            span style="background:var(--down)" { "unreachable or not serving" }
            span style="background:#ececec;color:#555" { "not in the federation" }
        }
    }
}

fn provinces_table(o: &Overview) -> Markup {
    let current = o.trust.as_ref().map(|t| t.sequence);
    html! {
        table id="provinces" {
            thead { tr { th { "Province" } th { "Node" } th { "Health" } th.n { "Sequence held" } th { "Gateway breaker" } } }
            tbody {
                @for p in &o.provinces {
                    tr data-province=(p.code) {
                        td { (p.code) " " (p.name) }
                        td { (p.endpoint.as_deref().unwrap_or("—")) }
                        td class=(if p.health == Health::Serving { "ok" } else { "down" }) {
                            (p.health.word())
                            @match &p.health { Health::NotServing(d) | Health::Unreachable(d) => { br; span.note { (d) } } _ => {} }
                        }
                        td.n class=(match (p.sequence_held, current) { (Some(h), Some(c)) if h < c => "warn", _ => "" }) {
                            @match p.sequence_held { Some(s) => { (s) } None => { span.note { "not reported" } } }
                        }
                        td class=(match p.breaker { Some(Breaker::Closed) => "ok", Some(_) => "down", None => "" }) {
                            (p.breaker.map(Breaker::word).unwrap_or("—"))
                        }
                    }
                }
            }
        }
    }
}

fn keys_table(keys: &[KeyRow], limit: usize) -> Markup {
    html! {
        table id="keys" {
            thead { tr { th { "Province" } th { "Key" } th { "Status" } th { "Expires" } th.n { "Days left" } } }
            tbody {
                @for k in keys.iter().take(limit) {
                    tr data-kid=(k.kid) {
                        td { (k.province) } td { code { (k.kid) } } td { (k.status) } td { (time(k.not_after)) }
                        td.n class=(days_class(k.days_left)) { (k.days_left) " days" }
                    }
                }
            }
        }
    }
}

fn certs_table(certs: &[CertRow], limit: usize) -> Markup {
    html! {
        table id="certs" {
            thead { tr { th { "Certificate" } th { "Serial" } th { "Expires" } th.n { "Days left" } } }
            tbody {
                @for c in certs.iter().take(limit) {
                    tr {
                        td { (c.what) @if c.revoked { " " span.down { "(revoked)" } } }
                        td { code { (c.serial) } } td { (time(c.not_after)) }
                        td.n class=(days_class(c.days_left)) { (c.days_left) " days" }
                    }
                }
            }
        }
    }
}

fn window(t: &Traffic) -> String {
    if t.window_seconds == 0 {
        "since the gateway started (the console has no earlier sample yet)".into()
    } else if t.window_seconds >= crate::metrics::WINDOW_SECONDS - 120 {
        "over the last hour".into()
    } else {
        format!("over the last {} minutes (the console has watched no longer)", (t.window_seconds + 59) / 60)
    }
}

fn lookups_table(t: &Traffic, limit: usize) -> Markup {
    html! {
        @if let Some(e) = &t.error { p.warn { "Gateway metrics: " (e) } }
        p.note { "Lookups by province pair and outcome " (window(t)) "." }
        table id="lookups" {
            thead { tr { th { "From" } th { "To" } th { "Outcome" } th.n { "Lookups" } } }
            tbody {
                @for l in t.lookups.iter().take(limit) {
                    tr { td { (l.from) } td { (l.province) } td class=(if l.outcome == "ok" { "ok" } else { "warn" }) { (l.outcome) } td.n { (l.count) } }
                }
                @if t.lookups.is_empty() { tr { td colspan="4" { span.note { "none" } } } }
            }
        }
        p.note { "Policy violations by province and reason " (window(t)) "." }
        table id="violations" {
            thead { tr { th { "Province" } th { "Reason" } th.n { "Violations" } } }
            tbody {
                @for v in t.violations.iter().take(limit) {
                    tr { td { (v.province) } td.down { (v.reason) } td.n { (v.count) } }
                }
                @if t.violations.is_empty() { tr { td colspan="3" { span.note { "none" } } } }
            }
        }
    }
}

fn sunset_block(s: &Option<SunsetView>) -> Markup {
    html! {
        @match s {
            None => { p id="sunset-state" { "No sunset is ordered." } }
            Some(s) => {
                @let verified = s.receipts.iter().filter(|r| matches!(r.state, ReceiptState::Verified { .. })).count();
                @let missing = s.receipts.iter().filter(|r| r.state == ReceiptState::Missing).count();
                @let invalid = s.receipts.len() - verified - missing;
                p id="sunset-state" class=(if s.in_force { "down" } else { "warn" }) {
                    "Sunset " (if s.in_force { "in force since " } else { "ordered for " }) (time(s.effective_at)) ": " (s.reason)
                }
                p id="receipts-summary" {
                    b { (verified) } " receipts collected and verified, "
                    b { (missing) } " missing"
                    @if invalid > 0 { ", " b.down { (invalid) } " invalid" }
                    " (of " (s.receipts.len()) " provinces)."
                }
                @if let Some(e) = &s.error { p.down { "Receipts could not be listed: " (e) } }
                table id="receipts" {
                    thead { tr { th { "Province" } th { "Receipt" } th { "Purged" } th.n { "Records deleted" } } }
                    tbody {
                        @for r in &s.receipts {
                            tr data-province=(r.province) {
                                td { (r.province) }
                                @match &r.state {
                                    ReceiptState::Verified { time: t, deleted } => { td.ok { "verified" } td { (time(*t)) } td.n { (deleted) } }
                                    ReceiptState::Invalid { error } => { td.down { "invalid: " (error) } td { "—" } td.n { "—" } }
                                    ReceiptState::Missing => { td.warn { "missing" } td { "—" } td.n { "—" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A window's length in words: `7 days`, `36 hours`.
fn span_words(seconds: i64) -> String {
    match seconds {
        s if s % DAY == 0 => format!("{} day{}", s / DAY, if s == DAY { "" } else { "s" }),
        s if s % 3600 == 0 => format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" }),
        s => format!("{} minutes", (s + 59) / 60),
    }
}

/// The overview's lines on hubs: per province, how many of the hubs that checked its
/// travellers are flagged (or why that is not known).
fn hubs_summary(v: &HubsView) -> Markup {
    let all_not_asked =
        !v.provinces.is_empty() && v.provinces.iter().all(|p| matches!(p.state, HubsState::NotAsked { .. }));
    html! {
        @if let Some(e) = &v.error { p.warn id="hubs-summary" { (e) } }
        @else if all_not_asked {
            @if let Some(ProvinceHubs { state: HubsState::NotAsked { reason }, .. }) = v.provinces.first() {
                p.warn id="hubs-summary" { (reason) }
            }
        }
        @else {
            ul id="hubs-summary" {
                @for p in &v.provinces {
                    li data-province=(p.province) {
                        (p.province) " " (p.name) ": "
                        @match &p.state {
                            HubsState::Ranked { hubs, disclosures_dropped } => {
                                @let flagged = hubs.iter().filter(|h| !h.flags.is_empty()).count();
                                span class=(if flagged > 0 { "warn" } else { "ok" }) {
                                    (flagged) " of " (hubs.len()) " hubs flagged"
                                }
                                @if *disclosures_dropped > 0 { ", " span.warn { (disclosures_dropped) " checks not recorded" } }
                            }
                            HubsState::NotAsked { .. } => { span.warn { "not asked (auditor identities only)" } }
                            HubsState::Failed { error } => { span.down { "not collected: " (error) } }
                        }
                    }
                }
            }
        }
    }
}

/// The main page; `hubs` gives its lines on flagged hubs.
pub fn overview(o: &Overview, hubs: &HubsView) -> Markup {
    let soon_keys = o.keys.iter().filter(|k| k.status != "revoked").take(1).collect::<Vec<_>>();
    let soon_cert = o.certs.iter().filter(|c| !c.revoked).take(1).collect::<Vec<_>>();
    page(
        "overview",
        "/",
        o.generated_at,
        html! {
            (trust_summary(o))
            div.columns {
                section {
                    h2 { "Provinces" }
                    (map(&o.provinces))
                }
                section {
                    h2 { "Expiring first" }
                    ul id="expiring-first" {
                        @for k in soon_keys { li { "attestation key " (k.province) "/" code { (k.kid) } ": " span class=(days_class(k.days_left)) { (k.days_left) " days left" } } }
                        @for c in soon_cert { li { "certificate " (c.what) ": " span class=(days_class(c.days_left)) { (c.days_left) " days left" } } }
                    }
                    p { a href="/expiry" { "All keys and certificates" } }
                    h2 { "Sunset" }
                    (sunset_block(&o.sunset))
                    h2 { "Hubs over the last " (span_words(hubs.generated_at - hubs.since)) }
                    (hubs_summary(hubs))
                    p { a href="/hubs" { "Hubs ranked per province" } }
                }
            }
            h2 { "Nodes and circuit breakers" }
            (provinces_table(o))
            h2 { "Traffic" }
            (lookups_table(&o.traffic, 8))
            p { a href="/traffic" { "All province pairs" } }
        },
    )
}

/// Keys and certificates with days left.
pub fn expiry(o: &Overview) -> Markup {
    page(
        "keys & certificates",
        "/expiry",
        o.generated_at,
        html! {
            (trust_summary(o))
            h2 { "Attestation keys" }
            (keys_table(&o.keys, usize::MAX))
            h2 { "Certificates" }
            @if o.certs.iter().all(|c| c.what.starts_with("province-ca")) {
                p.note { "Province CAs from the trust list; give the console the PKI directory to see the root and every issued certificate." }
            }
            (certs_table(&o.certs, usize::MAX))
        },
    )
}

/// Lookups and violations by province pair and reason.
pub fn traffic(o: &Overview) -> Markup {
    page(
        "traffic",
        "/traffic",
        o.generated_at,
        html! {
            (trust_summary(o))
            h2 { "Lookups and policy violations" }
            (lookups_table(&o.traffic, usize::MAX))
        },
    )
}

/// Receipts at a sunset.
pub fn sunset(o: &Overview) -> Markup {
    page(
        "sunset",
        "/sunset",
        o.generated_at,
        html! {
            (trust_summary(o))
            h2 { "Sunset and deletion receipts" }
            (sunset_block(&o.sunset))
        },
    )
}

/// Non-green changes per rule and authority, per province (the `audit stats` view).
pub fn audit(generated_at: i64, sequence: Option<u64>, stats: &[ProvinceStats]) -> Markup {
    page(
        "non-green changes",
        "/audit",
        generated_at,
        html! {
            p.note {
                "From each node's transparency log, downloaded and verified against its signed tree head"
                @if let Some(s) = sequence { " (trust list sequence " (s) ")" } ". Counts of distinct subjects are of commitments, never of references."
            }
            @for p in stats {
                section data-province=(p.province) {
                    h2 { "Province " (p.province) }
                    @match &p.stats {
                        Err(e) => { p.down { "Log not verified: " (e) } }
                        Ok(s) => {
                            p { (s.entries) " status changes in a verified log of " (p.tree_size) " entries." }
                            table {
                                thead { tr { th { "Status" } th { "Rule" } th { "Authority" } th.n { "Changes" } th.n { "Subjects" } } }
                                tbody {
                                    @for r in &s.non_green { tr { td { (r.status) } td { (r.rule_id) } td { (r.authority) } td.n { (r.count) } td.n { (r.distinct_subjects) } } }
                                    @if s.non_green.is_empty() { tr { td colspan="5" { span.note { "no non-green changes" } } } }
                                }
                            }
                            @if !s.lifts.is_empty() {
                                table {
                                    thead { tr { th { "Lifted rule" } th { "Lifted by" } th.n { "Lifts" } th.n { "Subjects" } } }
                                    tbody { @for r in &s.lifts { tr { td { (r.lifted_rule_id) } td { (r.authority) } td.n { (r.count) } td.n { (r.distinct_subjects) } } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Per province, the hubs that checked its travellers, ranked and flagged (the `huren
/// audit hubs` view, with the same words for each flag).
pub fn hubs(v: &HubsView) -> Markup {
    page(
        "hubs",
        "/hubs",
        v.generated_at,
        html! {
            p.note {
                "Per province, the hubs that checked its travellers since " (time(v.since))
                " (the last " (span_words(v.generated_at - v.since)) "), from its node's hourly aggregates: counts "
                "only, no subject is identified in them. Ranked by distinct subjects. A hub is flagged when its "
                "busiest hour has more than " (v.factor) " times the subjects of its median hour and at least "
                (v.min_subjects) ", when its checks carried another province than the one it is registered in, "
                "when it checked for a purpose it is not registered for, or when it is not registered"
                @if let Some(s) = v.sequence { " (trust list sequence " (s) ")" }
                ". The nodes are asked at most every " (crate::collect::HUB_REFRESH.as_secs() / 60) " minutes."
            }
            @if let Some(e) = &v.error { p.down id="hubs-error" { (e) } }
            @for p in &v.provinces {
                section data-province=(p.province) {
                    h2 { "Travellers of " (p.province) " " (p.name) }
                    @match &p.state {
                        HubsState::NotAsked { reason } => { p.warn.hubs-state { (reason) } }
                        HubsState::Failed { error } => { p.down.hubs-state { "Not collected: " (error) } }
                        HubsState::Ranked { hubs, disclosures_dropped } => {
                            @if *disclosures_dropped > 0 {
                                p.warn.dropped { "WARNING: the node could not record " (disclosures_dropped)
                                    " checks in disclosure logs (see its metrics)" }
                            }
                            @let flagged = hubs.iter().filter(|h| !h.flags.is_empty()).count();
                            p { (hubs.len()) " hubs checked travellers of " (p.province) "; "
                                span class=(if flagged > 0 { "warn" } else { "ok" }) { (flagged) " flagged" } "." }
                            table {
                                thead { tr {
                                    th.n { "Rank" } th { "Hub" } th { "Registered name" } th.n { "Subjects" }
                                    th.n { "Checks" } th.n { "Active hours" } th { "Flags" }
                                } }
                                tbody {
                                    @for (i, h) in hubs.iter().enumerate() {
                                        tr data-hub=(h.hub_id) data-flagged=(if h.flags.is_empty() { "no" } else { "yes" }) {
                                            td.n { (i + 1) }
                                            td { code { (h.hub_id) } }
                                            td { @if h.name.is_empty() { span.note { "—" } } @else { (h.name) } }
                                            td.n { (h.distinct_subjects) }
                                            td.n { (h.checks) }
                                            td.n { (h.active_hours) }
                                            @if h.flags.is_empty() { td.ok { "none" } }
                                            @else { td.down { @for (j, f) in h.flags.iter().enumerate() { @if j > 0 { br; } (f) } } }
                                        }
                                    }
                                    @if hubs.is_empty() { tr { td colspan="7" { span.note { "no checks in the window" } } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Overview {
        let province =
            |code: &str, name: &str, health: Health, held: Option<u64>, breaker: Option<Breaker>| ProvinceView {
                code: code.into(),
                name: name.into(),
                endpoint: Some("127.0.0.1:7443".into()),
                tile: ProvinceView::tile_for(&health, held, Some(4), breaker),
                health,
                sequence_held: held,
                breaker,
            };
        Overview {
            generated_at: 1_800_000_000,
            gateway: GatewayView { address: "gw:8443".into(), sequence: Some(4), error: None },
            trust: Some(TrustSummary {
                sequence: 4,
                issued_at: 1_799_990_000,
                next_update: 1_800_500_000,
                stale: false,
                source: "gateway".into(),
                hubs: 2,
                rules: 3,
                revoked: 1,
            }),
            provinces: vec![
                province("340000", "Anhui", Health::Serving, Some(4), Some(Breaker::Closed)),
                province("370000", "Shandong", Health::Serving, Some(3), Some(Breaker::Closed)),
                province(
                    "440000",
                    "Guangdong",
                    Health::Unreachable("Unavailable: refused".into()),
                    None,
                    Some(Breaker::Open),
                ),
                province("990100", "Elsewhere", Health::NoEndpoint, None, None),
            ],
            keys: vec![KeyRow {
                province: "340000".into(),
                kid: "00112233aabbccdd".into(),
                status: "active".into(),
                not_before: 0,
                not_after: 1_800_000_000 + 10 * DAY,
                days_left: 10,
            }],
            certs: vec![CertRow {
                what: "province-ca 340000".into(),
                serial: "8f1a".into(),
                not_after: 1_800_000_000 + 400 * DAY,
                days_left: 400,
                revoked: false,
            }],
            traffic: Traffic {
                window_seconds: 3600,
                lookups: vec![LookupCount {
                    from: "370000".into(),
                    province: "340000".into(),
                    outcome: "ok".into(),
                    count: 12,
                }],
                violations: vec![ViolationCount {
                    province: "440000".into(),
                    reason: "bad_signature".into(),
                    count: 2,
                }],
                error: None,
            },
            sunset: Some(SunsetView {
                effective_at: 1_799_999_000,
                in_force: true,
                reason: "emergency over".into(),
                receipts: vec![
                    ReceiptRow {
                        province: "340000".into(),
                        state: ReceiptState::Verified { time: 1_799_999_100, deleted: 7 },
                    },
                    ReceiptRow { province: "370000".into(), state: ReceiptState::Missing },
                    ReceiptRow {
                        province: "440000".into(),
                        state: ReceiptState::Invalid { error: "bad signature".into() },
                    },
                ],
                error: None,
            }),
        }
    }

    fn rank(hub_id: &str, name: &str, subjects: u64, flags: Vec<huren_client::HubFlag>) -> huren_client::HubRank {
        huren_client::HubRank {
            hub_id: hub_id.into(),
            name: name.into(),
            distinct_subjects: subjects,
            checks: subjects + 3,
            active_hours: 5,
            flags,
        }
    }

    fn hubs_sample() -> HubsView {
        use huren_client::HubFlag;
        let province =
            |code: &str, name: &str, state: HubsState| ProvinceHubs { province: code.into(), name: name.into(), state };
        HubsView {
            generated_at: 1_800_000_000,
            since: 1_800_000_000 - 7 * DAY,
            factor: 3.0,
            min_subjects: 20,
            sequence: Some(4),
            error: None,
            provinces: vec![
                province(
                    "340000",
                    "Anhui",
                    HubsState::Ranked {
                        hubs: vec![
                            rank("jinan-west", "Jinan West <railway> station", 120, vec![]),
                            rank(
                                "sd-moved",
                                "",
                                40,
                                vec![
                                    HubFlag::AboveBaseline { hour: 1_800_000_000, subjects: 30, median: 2 },
                                    HubFlag::OutsideRegisteredProvince {
                                        checked_in: "370000".into(),
                                        registered: "440000".into(),
                                    },
                                ],
                            ),
                        ],
                        disclosures_dropped: 0,
                    },
                ),
                province(
                    "370000",
                    "Shandong",
                    HubsState::Ranked { hubs: vec![rank("qd-port", "", 3, vec![])], disclosures_dropped: 12 },
                ),
                province("440000", "Guangdong", HubsState::Failed { error: "Unavailable: tcp connect error".into() }),
            ],
        }
    }

    #[test]
    fn the_hubs_page_ranks_hubs_with_their_flags_in_words_and_says_what_was_not_collected() {
        let html = hubs(&hubs_sample()).into_string();
        assert!(!html.contains("<script"), "no JavaScript");
        assert!(html.contains(r#"aria-current="page">Hubs<"#), "{html}");
        assert!(html.contains("the last 7 days") && html.contains("more than 3 times") && html.contains("at least 20"));
        let row = |hub: &str| {
            let start = html.find(&format!(r#"data-hub="{hub}""#)).unwrap_or_else(|| panic!("{hub} listed: {html}"));
            html[start..start + html[start..].find("</tr>").unwrap()].to_owned()
        };
        let jinan = row("jinan-west");
        assert!(jinan.contains(r#"data-flagged="no""#) && jinan.contains(">none<"), "{jinan}");
        assert!(jinan.contains("Jinan West &lt;railway&gt; station"), "registered names are escaped: {jinan}");
        assert!(jinan.contains(r#"<td class="n">1</td>"#) && jinan.contains(">120<") && jinan.contains(">123<"));
        let moved = row("sd-moved");
        assert!(moved.contains(r#"data-flagged="yes""#) && moved.contains(r#"<td class="n">2</td>"#), "{moved}");
        assert!(
            moved.contains("30 subjects in the hour from 2027-01-15T08:00:00Z (median 2)<br>checked in 370000 but registered in 440000"),
            "{moved}"
        );
        assert!(html.contains("2 hubs checked travellers of 340000; <span class=\"warn\">1 flagged</span>"), "{html}");
        assert!(
            html.contains("WARNING: the node could not record 12 checks in disclosure logs (see its metrics)"),
            "{html}"
        );
        assert_eq!(html.matches("WARNING").count(), 1, "only where checks were dropped");
        assert!(html.contains("Not collected: Unavailable: tcp connect error"), "{html}");
    }

    #[test]
    fn the_main_page_counts_flagged_hubs_per_province_and_links_to_them() {
        let html = overview(&sample(), &hubs_sample()).into_string();
        assert!(html.contains("Hubs over the last 7 days"), "{html}");
        assert!(html.contains(r#"<span class="warn">1 of 2 hubs flagged</span>"#), "{html}");
        assert!(
            html.contains(r#"<span class="ok">0 of 1 hubs flagged</span>, <span class="warn">12 checks not recorded"#)
        );
        assert!(html.contains("not collected: Unavailable"), "{html}");
        assert!(html.contains(r#"<a href="/hubs">"#));

        // A coordinator's console asks no node: one line says why.
        let mut v = hubs_sample();
        for p in &mut v.provinces {
            p.state = HubsState::NotAsked { reason: "not asked: auditor identities only".into() };
        }
        v.generated_at = v.since + 36 * 3600;
        let html = overview(&sample(), &v).into_string();
        assert!(html.contains("Hubs over the last 36 hours"), "{html}");
        assert_eq!(html.matches("not asked").count(), 1, "{html}");
        assert!(!html.contains("hubs flagged"));
    }

    #[test]
    fn the_main_page_shows_tiles_sequence_expiry_traffic_and_receipts_without_javascript() {
        let html = overview(&sample(), &hubs_sample()).into_string();
        assert!(!html.contains("<script"), "no JavaScript");
        assert!(html.contains(r#"data-province="340000" data-state="ok""#), "{html}");
        assert!(html.contains(r#"data-province="370000" data-state="warn""#), "behind on the list");
        assert!(html.contains(r#"data-province="440000" data-state="down""#), "unreachable");
        assert!(html.contains(r#"data-province="990100" data-state="down""#), "no endpoint, off the grid");
        assert!(
            html.contains("grid-row:5;grid-column:5\"><div class=\"tile ok\" data-province=\"340000\""),
            "Anhui where it belongs on the map: {html}"
        );
        assert!(
            html.contains(r#"data-absent="410000""#) && !html.contains(r#"data-absent="340000""#),
            "Henan shown as not a member"
        );
        assert!(html.contains("sequence 4"));
        assert!(html.contains("10 days left"));
        assert!(html.contains("breaker open"));
        assert!(html.contains(">12<") && html.contains("bad_signature"));
        assert!(html.contains("over the last hour"));
        assert!(html.contains("<b>1</b> receipts collected and verified, <b>1</b> missing"), "{html}");
        assert!(html.contains("invalid"));
    }

    #[test]
    fn detail_pages_render_every_row_and_escape_text() {
        let mut o = sample();
        o.sunset.as_mut().unwrap().reason = "<script>alert(1)</script>".into();
        let s = sunset(&o).into_string();
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;"), "coordinator text is escaped");
        let e = expiry(&o).into_string();
        assert!(e.contains("00112233aabbccdd") && e.contains("400 days"));
        let t = traffic(&o).into_string();
        assert!(t.contains("370000") && t.contains("bad_signature"));
        o.traffic.window_seconds = 0;
        assert!(traffic(&o).into_string().contains("since the gateway started"));
        let a = audit(
            o.generated_at,
            Some(4),
            &[
                ProvinceStats {
                    province: "340000".into(),
                    stats: Ok(huren_client::Stats {
                        entries: 3,
                        non_green: vec![huren_client::StatsRow {
                            status: "RED".into(),
                            rule_id: "NHC-CC".into(),
                            authority: "spiffe://huren.gov/province/340000/authority/hefei-cdc".into(),
                            count: 2,
                            distinct_subjects: 2,
                        }],
                        ..Default::default()
                    }),
                    tree_size: 3,
                },
                ProvinceStats { province: "370000".into(), stats: Err("unreachable".into()), tree_size: 0 },
            ],
        )
        .into_string();
        assert!(a.contains("NHC-CC") && a.contains("hefei-cdc") && a.contains("Log not verified: unreachable"));
    }
}
