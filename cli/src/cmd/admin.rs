//! `huren admin`: the province admin (or authority) client — publish statuses and issue
//! tokens at the province's own node. Who acts is the certificate's identity.

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use huren_pki::{unix_now, Identity, Role};
use huren_proto::pb;
use huren_runtime::tls::{self, ExpectedPeer, Revocations};
use pb::status_admin_client::StatusAdminClient;
use tonic::transport::Channel;

use crate::cmd::TlsArgs;
use crate::connect::Peer;
use crate::usage;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set a subject's status at the province node.
    #[command(
        after_help = "Examples:\n  huren admin status --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem \\\n    --ca admin-340000/ca.pem ah-0001 GREEN\n  huren admin status --node 127.0.0.1:7443 --cert hefei-cdc/cert.pem --key hefei-cdc/key.pem \\\n    --ca hefei-cdc/ca.pem ah-0002 RED --rule NHC-CC-2022-9 --valid-for 1209600"
    )]
    Status {
        #[command(flatten)]
        target: AdminTarget,
        /// Province-internal pseudonymous subject reference (never an ID number).
        subject_ref: String,
        /// GREEN, YELLOW or RED.
        status: String,
        /// Registered rule that assigns a non-green status.
        #[arg(long, default_value = "")]
        rule: String,
        /// Optional check: the authority the caller's certificate must be (<code>/<name>).
        /// Who applies a status is the certificate's identity, never this text.
        #[arg(long, default_value = "")]
        authority: String,
        /// Validity in seconds from now (0 = node default).
        #[arg(long, default_value_t = 0)]
        valid_for: i64,
    },
    /// Issue a fresh token and QR for a subject.
    #[command(
        after_help = "Example:\n  huren admin token --node 127.0.0.1:7443 --cert admin-340000/cert.pem --key admin-340000/key.pem \\\n    --ca admin-340000/ca.pem --purpose transit.highway ah-0001"
    )]
    Token {
        #[command(flatten)]
        target: AdminTarget,
        /// Province-internal pseudonymous subject reference (never an ID number).
        subject_ref: String,
        /// Token lifetime in seconds (0 = node default).
        #[arg(long, default_value_t = 0)]
        lifetime: u32,
        /// Print one JSON object ({"token", "expires_at", "qr"}) instead of text.
        #[arg(long)]
        json: bool,
        /// Purpose bound into the QR's embedded attestation, one of the trust list's field
        /// policy (transit.rail, transit.highway, transit.air, transit.general, venue.entry,
        /// or one the coordinators added); default transit.general. Online lookups name
        /// their own purpose; this one decides which fields the QR carries offline.
        #[arg(long, default_value = "")]
        purpose: String,
    },
}

#[derive(Debug, Args)]
pub struct AdminTarget {
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The province node, host:port.
    #[arg(long)]
    pub node: String,
}

/// Runs `huren admin …`.
pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Status { target, subject_ref, status, rule, authority, valid_for } => {
            let status = status_name(&status)?;
            let valid_until = if valid_for > 0 { unix_now() + valid_for } else { 0 };
            let (mut client, peer) = client(&target)?;
            let result = client
                .upsert_status(pb::UpsertStatusRequest {
                    subject_ref,
                    status: status as i32,
                    rule_id: rule,
                    authority,
                    valid_until,
                    test_recency: 0,
                })
                .await
                .map_err(refused);
            let response = peer.explained(result).await?.into_inner();
            println!("status recorded (version {})", response.version);
        }
        AdminCommand::Token { target, subject_ref, lifetime, json, purpose } => {
            let (mut client, peer) = client(&target)?;
            let result = client
                .issue_token(pb::IssueTokenRequest { subject_ref, lifetime_seconds: lifetime, purpose })
                .await
                .map_err(refused);
            let response = peer.explained(result).await?.into_inner();
            let token = huren_pki::qr::token_to_text(&response.token);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"token": token, "expires_at": response.expires_at, "qr": response.qr})
                );
            } else {
                println!("token:      {token}");
                println!("expires_at: {}", response.expires_at);
                println!("qr:         {}", response.qr);
            }
        }
    }
    Ok(())
}

/// A `StatusAdmin` client for the caller's own province node.
fn client(target: &AdminTarget) -> Result<(StatusAdminClient<Channel>, Peer)> {
    let identity = target.tls.load()?;
    let province = identity
        .identity
        .role
        .province()
        .cloned()
        .ok_or_else(|| usage(format!("{} is not a province admin or authority identity", identity.identity)))?;
    let expected = ExpectedPeer::Exactly(Identity::new(&target.tls.trust_domain, Role::Node(province)));
    let config = tls::client_config(&identity, expected.clone(), Revocations::default())?;
    let channel = tls::channel(&target.node, config, Duration::from_secs(3)).map_err(usage)?;
    Ok((StatusAdminClient::new(channel), Peer { addr: target.node.clone(), identity, expected }))
}

fn status_name(s: &str) -> Result<pb::HealthStatus> {
    pb::HealthStatus::from_str_name(&format!("HEALTH_STATUS_{}", s.to_ascii_uppercase()))
        .filter(|s| *s != pb::HealthStatus::Unspecified)
        .ok_or_else(|| usage(format!("status {s:?} must be GREEN, YELLOW or RED")))
}

fn refused(s: tonic::Status) -> anyhow::Error {
    crate::connect::refused("node", s)
}
