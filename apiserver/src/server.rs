//! `ferrokube apiserver`: credentials, the store (embedded or remote), the registry and the
//! HTTPS listener, wired together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use store::server::{RunningStore, StoreConfig};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::auth::{CertificateUser, TokenAuth, User};
use crate::handlers::{router, AppState};
use crate::pki::Pki;
use crate::registry::Registry;
use crate::storage::{EtcdStorage, Storage};

/// The namespaces kube-apiserver keeps in existence.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How the apiserver is started.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Credentials, the kubeconfig and (embedded mode) the store's data live here.
    pub data_dir: PathBuf,
    /// The HTTPS address.
    pub listen: SocketAddr,
    /// Remote etcd v3 endpoints; empty = start an embedded single-member store.
    pub store_endpoints: Vec<String>,
}

/// A running apiserver.
pub struct ApiServer {
    /// The HTTPS address actually bound.
    pub addr: SocketAddr,
    /// `DIR/kubeconfig` (bearer token).
    pub kubeconfig: PathBuf,
    /// `DIR/kubeconfig-cert` (client certificate).
    pub kubeconfig_cert: PathBuf,
    shutdown: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
    store: Option<RunningStore>,
}

/// Connects and waits until the store answers a linearizable read (a fresh member needs an
/// election first).
async fn connect_store(endpoints: &[String]) -> anyhow::Result<EtcdStorage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = match EtcdStorage::connect(endpoints).await {
            Ok(s) => match s.current_revision().await {
                Ok(_) => return Ok(s),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("the store at {endpoints:?} did not become ready in 30 s: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl ApiServer {
    /// Starts everything; returns once the apiserver is serving.
    pub async fn start(config: ApiServerConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let pki = Pki::ensure(&config.data_dir)?;
        let auth = Arc::new(TokenAuth::load(&pki.token_file)?);
        let (store, endpoints) = if config.store_endpoints.is_empty() {
            let store_config =
                StoreConfig::single("apiserver", config.data_dir.join("store"), "127.0.0.1:0".parse()?);
            let store = RunningStore::start(store_config).await.context("starting the embedded store")?;
            let endpoint = format!("http://{}", store.client_addrs()[0]);
            (Some(store), vec![endpoint])
        } else {
            (None, config.store_endpoints.clone())
        };
        let storage = connect_store(&endpoints).await?;
        let registry = Arc::new(Registry::new(crate::storage::layered(storage))?);
        for ns in SYSTEM_NAMESPACES {
            registry.ensure_namespace(ns).await.map_err(|e| anyhow::anyhow!("creating namespace {ns}: {e}"))?;
        }
        let app = router(AppState { registry, auth: Some(auth) });

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let kubeconfig = pki.write_kubeconfig(&config.data_dir, &format!("https://{addr}"))?;
        let kubeconfig_cert = pki.write_cert_kubeconfig(&config.data_dir, &format!("https://{addr}"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));
        let (shutdown, mut stop) = watch::channel(false);
        let serving = tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                // Watch events are small writes: without this, Nagle's algorithm and delayed
                // ACKs hold a lone event back for up to 40 ms (Go's servers disable it too).
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    // The verifier accepted the chain, so the certificate's subject is the
                    // user for every request on this connection.
                    let cert_user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| User::from_certificate(leaf))
                        .map(CertificateUser);
                    let app = app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        if let Some(u) = &cert_user {
                            req.extensions_mut().insert(u.clone());
                        }
                        req
                    });
                    let service = TowerToHyperService::new(app);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        Ok(Self { addr, kubeconfig, kubeconfig_cert, shutdown, serving, store })
    }

    /// Stops accepting, closes connections and stops the embedded store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.serving.await;
        if let Some(store) = self.store {
            store.shutdown().await;
        }
    }
}
