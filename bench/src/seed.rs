//! Seeding a node for a load run: synthetic GREEN subjects and tokens for them, through
//! `StatusAdmin` with the province's admin identity; the tokens go to a file that
//! [`crate::lookup`] reads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use huren_pki::qr::token_to_text;
use huren_pki::{Identity, ProvinceCode, Role};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations};
use pb::status_admin_client::StatusAdminClient;
use tonic::transport::Channel;

use crate::error::{BenchError, Result};
use crate::workload::{loopback, TlsFiles};

/// A seeding run: `huren bench seed`.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// The province admin identity.
    pub tls: TlsFiles,
    /// The province node, `host:port` on loopback.
    pub node: String,
    /// Subjects to publish (GREEN, pseudonymous refs `<prefix><n>`).
    pub subjects: u64,
    /// Tokens to issue (round robin over the subjects).
    pub tokens: u64,
    /// Token lifetime in seconds.
    pub lifetime: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Subject reference prefix.
    pub prefix: String,
    /// Where to write the tokens, one `<province>:<token>` a line.
    pub out: PathBuf,
}

fn admin_client(options: &SeedOptions, node: &str) -> Result<(StatusAdminClient<Channel>, ProvinceCode)> {
    let identity = options.tls.load()?;
    let Role::Admin(province) = identity.identity.role.clone() else {
        return Err(BenchError::usage(format!("{} is not a province admin identity", identity.identity)));
    };
    let expected = ExpectedPeer::Exactly(Identity::new(&options.tls.trust_domain, Role::Node(province.clone())));
    let config = tls::client_config(&identity, expected, Revocations::default())?;
    let channel = tls::channel(node, config, Duration::from_secs(3)).map_err(BenchError::usage)?;
    Ok((StatusAdminClient::new(channel), province))
}

/// Runs `count` calls with at most `concurrency` in flight; `call(i)` makes call `i`.
async fn fan_out<T, F, Fut>(count: u64, concurrency: usize, call: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        if set.len() >= concurrency {
            if let Some(r) = set.join_next().await {
                out.push(r??);
            }
        }
        set.spawn(call(i));
    }
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

fn refused(rpc: &'static str) -> impl Fn(tonic::Status) -> BenchError {
    move |s| BenchError::Refused { rpc, code: s.code(), message: s.message().to_owned() }
}

/// Publishes the subjects, issues the tokens and writes them to [`SeedOptions::out`];
/// `progress` gets a line after each of the two steps.
pub async fn seed(options: &SeedOptions, progress: &mut dyn FnMut(&str)) -> Result<()> {
    if options.subjects == 0 || options.tokens == 0 || options.concurrency == 0 {
        return Err(BenchError::usage("--subjects, --tokens and --concurrency must be positive"));
    }
    let node = loopback(&options.node)?;
    let (client, province) = admin_client(options, &node)?;
    let started = Instant::now();
    let prefix = options.prefix.clone();
    fan_out(options.subjects, options.concurrency, |i| {
        let mut client = client.clone();
        let subject_ref = format!("{prefix}{i}");
        async move {
            client
                .upsert_status(pb::UpsertStatusRequest {
                    subject_ref,
                    status: pb::HealthStatus::Green as i32,
                    rule_id: String::new(),
                    authority: String::new(),
                    valid_until: 0,
                    test_recency: pb::TestRecency::None as i32,
                })
                .await
                .map_err(refused("UpsertStatus"))?;
            Ok(())
        }
    })
    .await?;
    progress(&format!("{} subjects published in {:.1} s", options.subjects, started.elapsed().as_secs_f64()));
    let started = Instant::now();
    let (subjects, lifetime) = (options.subjects, options.lifetime);
    let tokens = fan_out(options.tokens, options.concurrency, |i| {
        let mut client = client.clone();
        let subject_ref = format!("{prefix}{}", i % subjects);
        async move {
            let response = client
                .issue_token(pb::IssueTokenRequest { subject_ref, lifetime_seconds: lifetime, purpose: String::new() })
                .await
                .map_err(refused("IssueToken"))?;
            Ok(token_to_text(&response.into_inner().token))
        }
    })
    .await?;
    progress(&format!("{} tokens issued in {:.1} s", tokens.len(), started.elapsed().as_secs_f64()));
    let mut text = String::new();
    for t in &tokens {
        text.push_str(&format!("{province}:{t}\n"));
    }
    std::fs::write(&options.out, text).map_err(BenchError::io(format!("writing {}", options.out.display())))?;
    Ok(())
}
