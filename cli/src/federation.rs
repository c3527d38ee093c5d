//! A whole federation in one process on loopback: national PKI, province nodes and a
//! gateway, each a real mTLS server on `127.0.0.1:0`. `huren demo` tells its story on
//! one; the end-to-end tests use it to get real servers with generated certificates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use huren_gateway::{Gateway, GatewaySettings};
use huren_node::{KeyRing, Node, NodeSettings, RedisStore, Store};
use huren_pki::attest::AttestationKey;
use huren_pki::ca::Validity;
use huren_pki::endpoint::HostName;
use huren_pki::registry::{PkiDir, RegistryRule};
use huren_pki::{Identity, ProvinceCode, Role, TrustList};
use huren_proto::pb::status_admin_client::StatusAdminClient;
use huren_proto::pb::trust_registry_client::TrustRegistryClient;
use huren_runtime::live::LiveTrust;
use huren_runtime::tls::{self, ExpectedPeer, Revocations, TlsIdentity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use huren_client::HubClient;

/// The three provinces of the demo: Anhui, Shandong, Guangdong.
pub const DEMO_PROVINCES: [(&str, &str); 3] = [("340000", "Anhui"), ("370000", "Shandong"), ("440000", "Guangdong")];

/// Gateway name used by the federation.
pub const GATEWAY_NAME: &str = "national-1";

/// The names the federation's servers carry besides their identities: every server
/// listens on loopback, reached as `localhost` or `127.0.0.1`.
pub const LOOPBACK_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

fn loopback_names() -> Vec<HostName> {
    LOOPBACK_NAMES.iter().filter_map(|n| n.parse().ok()).collect()
}

struct Running {
    addr: SocketAddr,
    trust: LiveTrust,
    /// Purge reports (nodes) or the receipt count (gateway).
    events: Events,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

enum Events {
    Node {
        purges: tokio::sync::watch::Receiver<huren_node::retention::PurgeReport>,
        keys: tokio::sync::watch::Receiver<Vec<huren_pki::attest::Kid>>,
    },
    Gateway(tokio::sync::watch::Receiver<usize>),
}

impl Running {
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.map_err(|e| anyhow!("server task failed: {e}"))?.map_err(|e| anyhow!(e))
    }
}

fn spawn<F>(serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> (oneshot::Sender<()>, JoinHandle<Result<(), String>>)
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    (stop, tokio::spawn(serve(stopped)))
}

/// How the servers of a federation are set up.
#[derive(Debug, Clone, Default)]
pub struct FederationOptions {
    pub node: NodeSettings,
    pub gateway: GatewaySettings,
    /// Keep the nodes' status stores in Redis instead of redb files.
    pub node_redis: Option<NodeRedis>,
    /// Keep the nodes' status stores in fjall folders instead of redb files (when not in Redis).
    pub node_fjall: bool,
}

/// Redis for the nodes' status stores: each province's keys under `<prefix><code>:`.
#[derive(Debug, Clone)]
pub struct NodeRedis {
    pub url: String,
    pub prefix: String,
}

impl NodeRedis {
    /// The key prefix of one province's store.
    pub fn prefix_of(&self, code: &ProvinceCode) -> String {
        format!("{}{code}:", self.prefix)
    }
}

/// A running federation.
pub struct Federation {
    pub pki: PkiDir,
    pub trust_domain: String,
    options: FederationOptions,
    dir: PathBuf,
    nodes: BTreeMap<ProvinceCode, Running>,
    gateway: Option<Running>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Federation {
    /// Creates a PKI under `dir`, admits `provinces` with `rules` in the registry, signs
    /// the first trust list and starts a gateway and one node per province (each node
    /// following the gateway's trust list).
    pub async fn start(dir: &Path, provinces: &[(&str, &str)], rules: Vec<RegistryRule>) -> Result<Self> {
        Self::start_with(dir, provinces, rules, FederationOptions::default()).await
    }

    /// As [`Federation::start`], with server settings.
    pub async fn start_with(
        dir: &Path,
        provinces: &[(&str, &str)],
        rules: Vec<RegistryRule>,
        options: FederationOptions,
    ) -> Result<Self> {
        let trust_domain = huren_pki::DEFAULT_TRUST_DOMAIN.to_owned();
        let pki = PkiDir::init(&dir.join("pki"), &trust_domain, Validity::days(365))?;
        for rule in rules {
            pki.put_rule(rule)?;
        }
        let mut listeners = BTreeMap::new();
        for (code, name) in provinces {
            let code: ProvinceCode = code.parse()?;
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let endpoint = format!("https://{}", listener.local_addr()?);
            pki.add_province(&code, name, &[endpoint], Validity::days(365))?;
            listeners.insert(code, listener);
        }
        pki.sign_trust_list()?;
        let mut federation =
            Self { pki, trust_domain, options, dir: dir.to_owned(), nodes: BTreeMap::new(), gateway: None };
        federation.start_gateway_on(TcpListener::bind("127.0.0.1:0").await?).await?;
        for (code, listener) in listeners {
            federation.start_node_on(&code, listener).await?;
        }
        Ok(federation)
    }

    /// Folder holding everything of this federation.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The coordinator's last signed trust list.
    pub fn trust_list(&self) -> Result<TrustList> {
        Ok(TrustList::load(&self.pki.trust_list_path(), &self.pki.root_cert_der()?)?)
    }

    /// Issues (or re-issues) a certificate and loads it as a TLS identity.
    pub fn identity(&self, kind: &str, arg: &str) -> Result<TlsIdentity> {
        let issued = self.pki.issue(kind, arg, Validity::days(30))?;
        Ok(TlsIdentity::load(&issued.cert, &issued.key, &self.pki.root_cert_path(), &self.trust_domain)?)
    }

    /// Issues (or re-issues) a server certificate (node, gateway) that also names the
    /// loopback hosts it serves on ([`LOOPBACK_NAMES`]), so stock TLS clients verify it
    /// with an ordinary hostname check, and loads it as a TLS identity.
    pub fn server_identity(&self, kind: &str, arg: &str) -> Result<TlsIdentity> {
        let names = loopback_names();
        let issued = self.pki.issue_named(kind, arg, Some(&names), Validity::days(30))?;
        Ok(TlsIdentity::load(&issued.cert, &issued.key, &self.pki.root_cert_path(), &self.trust_domain)?)
    }

    /// A province's attestation key as held in the PKI directory.
    pub fn attestation_key(&self, code: &ProvinceCode) -> Result<AttestationKey> {
        let path = self.pki.active_attestation_key(code)?;
        Ok(AttestationKey::from_pkcs8_pem(&std::fs::read_to_string(&path)?)?)
    }

    fn node_dir(&self, code: &ProvinceCode) -> PathBuf {
        self.dir.join("nodes").join(code.as_str())
    }

    /// The Redis key prefix of a province node's store, when the nodes keep it in Redis.
    pub fn node_redis_prefix(&self, code: &ProvinceCode) -> Option<String> {
        self.options.node_redis.as_ref().map(|r| r.prefix_of(code))
    }

    /// The redb file of a province node.
    pub fn node_store_path(&self, code: &ProvinceCode) -> PathBuf {
        self.node_dir(code).join("status.redb")
    }

    fn gateway_dir(&self) -> PathBuf {
        self.dir.join("gateway")
    }

    async fn start_node_on(&mut self, code: &ProvinceCode, listener: TcpListener) -> Result<()> {
        let tls = self.server_identity("node", code.as_str())?;
        let keys = KeyRing::load(&self.pki.province_dir(code))?;
        let dir = self.node_dir(code);
        let trust =
            LiveTrust::open(tls.root.to_vec(), Some(dir.join("trust-list.bin")), Some(&self.pki.trust_list_path()))?;
        let store: std::sync::Arc<dyn huren_node::NodeStore> = match &self.options.node_redis {
            Some(redis) => std::sync::Arc::new(RedisStore::open(&redis.url, &redis.prefix_of(code))?),
            None if self.options.node_fjall => {
                std::sync::Arc::new(huren_node::FjallStore::open(&self.node_dir(code).join("status.fjall"))?)
            }
            None => std::sync::Arc::new(Store::open(&self.node_store_path(code))?),
        };
        let node = Node::new(tls, keys, trust.clone(), store, self.options.node.clone())?
            .following(Some(self.gateway_addr().to_string()));
        let events = Events::Node { purges: node.purge_reports(), keys: node.held_keys() };
        let addr = listener.local_addr()?;
        let (stop, task) = spawn(|stopped| async move {
            node.serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
        });
        self.nodes.insert(code.clone(), Running { addr, trust, events, stop: Some(stop), task });
        Ok(())
    }

    async fn start_gateway_on(&mut self, listener: TcpListener) -> Result<()> {
        let tls = self.server_identity("gateway", GATEWAY_NAME)?;
        let trust = LiveTrust::open(
            tls.root.to_vec(),
            Some(self.gateway_dir().join("trust-list.bin")),
            Some(&self.pki.trust_list_path()),
        )?;
        let mut settings = self.options.gateway.clone();
        if settings.receipts_dir.is_none() {
            settings.receipts_dir = Some(self.gateway_dir().join("receipts"));
        }
        let gateway = Gateway::new(tls, trust.clone(), settings)?;
        let events = Events::Gateway(gateway.receipts());
        let addr = listener.local_addr()?;
        let (stop, task) = spawn(|stopped| async move {
            gateway
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| e.to_string())
        });
        self.gateway = Some(Running { addr, trust, events, stop: Some(stop), task });
        Ok(())
    }

    /// Stops the gateway gracefully.
    pub async fn stop_gateway(&mut self) -> Result<SocketAddr> {
        let running = self.gateway.take().ok_or_else(|| anyhow!("no gateway running"))?;
        let addr = running.addr;
        running.stop().await?;
        Ok(addr)
    }

    /// Starts the gateway again on `addr`, from its persisted trust list (or the
    /// coordinator's file if that is newer).
    pub async fn restart_gateway(&mut self, addr: SocketAddr) -> Result<()> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("rebinding {addr}"))?;
        self.start_gateway_on(listener).await
    }

    /// The gateway's live trust list.
    pub fn gateway_trust(&self) -> Result<LiveTrust> {
        self.gateway.as_ref().map(|g| g.trust.clone()).ok_or_else(|| anyhow!("no gateway running"))
    }

    /// A node's purge reports (retention runs and the sunset), as they happen.
    pub fn node_purges(
        &self,
        code: &ProvinceCode,
    ) -> Result<tokio::sync::watch::Receiver<huren_node::retention::PurgeReport>> {
        match self.nodes.get(code).map(|n| &n.events) {
            Some(Events::Node { purges, .. }) => Ok(purges.clone()),
            _ => Err(anyhow!("no node for province {code}")),
        }
    }

    /// The attestation key ids a node holds, now and as its key folder is rescanned.
    pub fn node_keys(&self, code: &ProvinceCode) -> Result<tokio::sync::watch::Receiver<Vec<huren_pki::attest::Kid>>> {
        match self.nodes.get(code).map(|n| &n.events) {
            Some(Events::Node { keys, .. }) => Ok(keys.clone()),
            _ => Err(anyhow!("no node for province {code}")),
        }
    }

    /// The number of deletion receipts the gateway holds, as it changes.
    pub fn gateway_receipts(&self) -> Result<tokio::sync::watch::Receiver<usize>> {
        match self.gateway.as_ref().map(|g| &g.events) {
            Some(Events::Gateway(r)) => Ok(r.clone()),
            _ => Err(anyhow!("no gateway running")),
        }
    }

    /// A node's data folder.
    pub fn node_data_dir(&self, code: &ProvinceCode) -> PathBuf {
        self.node_dir(code)
    }

    /// A node's live trust list.
    pub fn node_trust(&self, code: &ProvinceCode) -> Result<LiveTrust> {
        self.nodes.get(code).map(|n| n.trust.clone()).ok_or_else(|| anyhow!("no node for province {code}"))
    }

    /// Signs the registry's next trust list and uploads it to the gateway as a coordinator.
    pub async fn publish(&self) -> Result<u64> {
        self.pki.sign_trust_list()?;
        let signed = self.trust_list()?.signed().clone();
        let coordinator = self.identity("coordinator", "national")?;
        let config = tls::client_config(&coordinator, ExpectedPeer::AnyGateway, Revocations::default())?;
        let channel = tls::channel(&self.gateway_addr().to_string(), config, std::time::Duration::from_secs(3))?;
        let response = TrustRegistryClient::new(channel).upload(signed).await?;
        Ok(response.into_inner().sequence)
    }

    /// Waits (event-driven) until every running server holds trust list `sequence` or newer.
    pub async fn until_everyone_has(&self, sequence: u64) -> Result<()> {
        let mut all: Vec<LiveTrust> = self.nodes.values().map(|n| n.trust.clone()).collect();
        all.extend(self.gateway.as_ref().map(|g| g.trust.clone()));
        for live in all {
            live.subscribe().wait_for(|t| t.sequence() >= sequence).await?;
        }
        Ok(())
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.as_ref().map(|g| g.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn node_addr(&self, code: &ProvinceCode) -> Result<SocketAddr> {
        self.nodes.get(code).map(|n| n.addr).ok_or_else(|| anyhow!("no node for province {code}"))
    }

    /// Stops a node gracefully (its store is closed when this returns).
    pub async fn stop_node(&mut self, code: &ProvinceCode) -> Result<SocketAddr> {
        let running = self.nodes.remove(code).ok_or_else(|| anyhow!("no node for province {code}"))?;
        let addr = running.addr;
        running.stop().await?;
        Ok(addr)
    }

    /// Starts a node again on the address it had, over the same store file.
    pub async fn restart_node(&mut self, code: &ProvinceCode, addr: SocketAddr) -> Result<()> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("rebinding {addr}"))?;
        self.start_node_on(code, listener).await
    }

    /// A StatusAdmin client for `code`'s node, presenting `identity`.
    pub fn admin_client_as(&self, code: &ProvinceCode, identity: &TlsIdentity) -> Result<StatusAdminClient<Channel>> {
        let expected = ExpectedPeer::Exactly(Identity::new(&self.trust_domain, Role::Node(code.clone())));
        let config = tls::client_config(identity, expected, Revocations::default())?;
        let channel = tls::channel(&self.node_addr(code)?.to_string(), config, std::time::Duration::from_secs(3))?;
        Ok(StatusAdminClient::new(channel))
    }

    /// A StatusAdmin client for `code`'s node as its own admin identity.
    pub fn admin_client(&self, code: &ProvinceCode) -> Result<StatusAdminClient<Channel>> {
        self.admin_client_as(code, &self.identity("admin", code.as_str())?)
    }

    /// A `StatusAdmin` client of the authority `<code>/<name>` (e.g. `370000/jinan-cdc`),
    /// connected to its own province's node.
    pub fn authority_client(&self, authority: &str) -> Result<StatusAdminClient<Channel>> {
        let code = authority.parse::<huren_pki::AuthorityRef>()?.province;
        self.admin_client_as(&code, &self.identity("authority", authority)?)
    }

    /// Registers hub `name` for `purposes`, publishes the trust list and waits until
    /// every server holds it.
    pub async fn register_hub(&self, name: &str, purposes: &[&str]) -> Result<()> {
        let purposes: Vec<String> = purposes.iter().map(|p| p.to_string()).collect();
        self.pki.register_hub(name, &purposes)?;
        let sequence = self.publish().await?;
        self.until_everyone_has(sequence).await
    }

    /// As [`Federation::register_hub`], the hub checking travellers in `province`.
    pub async fn register_hub_in(&self, name: &str, purposes: &[&str], province: &ProvinceCode) -> Result<()> {
        let purposes: Vec<String> = purposes.iter().map(|p| p.to_string()).collect();
        self.pki.register_hub(name, &purposes)?;
        self.pki.set_hub_province(name, Some(province))?;
        let sequence = self.publish().await?;
        self.until_everyone_has(sequence).await
    }

    /// A hub client named `name`, registered for every default purpose, connected to the gateway.
    pub async fn hub(&self, name: &str) -> Result<HubClient> {
        self.hub_for(name, &huren_pki::policy::DEFAULT_PURPOSES).await
    }

    /// A hub client named `name`, registered for `purposes`, connected to the gateway.
    pub async fn hub_for(&self, name: &str, purposes: &[&str]) -> Result<HubClient> {
        self.register_hub(name, purposes).await?;
        Ok(HubClient::connect(&self.gateway_addr().to_string(), &self.identity("hub", name)?)?)
    }

    /// Stops every server gracefully.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(g) = self.gateway.take() {
            g.stop().await?;
        }
        for (_, n) in std::mem::take(&mut self.nodes) {
            n.stop().await?;
        }
        Ok(())
    }
}
