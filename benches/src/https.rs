//! A small HTTPS client for the apiserver bench: HTTP/2 over rustls, trusting the cluster CA
//! and sending the admin bearer token from the kubeconfig the apiserver wrote. Several
//! connections, each carrying many concurrent requests (watches are long streams).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// HTTP/2 connections to one apiserver, with its credentials.
#[derive(Clone)]
pub struct ApiClient {
    conns: Vec<SendRequest<Full<Bytes>>>,
    server: String,
    token: String,
}

/// Server URL, CA (PEM) and token from an admin kubeconfig as ferrokube writes it.
pub fn read_kubeconfig(path: &Path) -> Result<(String, Vec<u8>, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // ferrokube writes its kubeconfig as JSON (valid YAML), so no YAML parser is needed.
    let v: serde_json::Value = serde_json::from_str(&text).context("the kubeconfig is not JSON")?;
    let cluster = &v["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().context("kubeconfig: no server")?.to_string();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().context("kubeconfig: no certificate-authority-data")?)
        .context("kubeconfig: certificate-authority-data is not base64")?;
    let token = v["users"][0]["user"]["token"].as_str().context("kubeconfig: no token")?.to_string();
    Ok((server, ca, token))
}

impl ApiClient {
    /// Opens `conns` HTTP/2 connections to `server` (`https://127.0.0.1:PORT`).
    pub async fn connect(server: &str, ca_pem: &[u8], token: &str, conns: usize) -> Result<Self> {
        let authority = server.strip_prefix("https://").context("the server URL is not https")?.trim_end_matches('/');
        let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.context("parsing the CA")?).context("adding the CA")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(host.to_string()).context("server name")?;
        let mut out = Vec::new();
        for _ in 0..conns.max(1) {
            let tcp = tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting {authority}"))?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name.clone(), tcp).await.context("TLS handshake")?;
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_connection_window_size(8 << 20)
                .initial_stream_window_size(1 << 20)
                .handshake(TokioIo::new(tls))
                .await
                .context("HTTP/2 handshake")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            out.push(send);
        }
        Ok(Self { conns: out, server: server.trim_end_matches('/').to_string(), token: token.to_string() })
    }

    /// Sends a request on connection `conn % conns` and returns the response head and body.
    pub async fn send(&self, conn: usize, method: Method, path: &str, content_type: Option<&str>, body: Bytes) -> Result<Response<Incoming>> {
        let mut sender = self.conns[conn % self.conns.len()].clone();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        sender.ready().await.context("connection closed")?;
        Ok(sender.send_request(req.body(Full::new(body))?).await?)
    }

    /// A whole request: status and body, failing on anything but 2xx.
    pub async fn call(&self, conn: usize, method: Method, path: &str, content_type: Option<&str>, body: Bytes) -> Result<Bytes> {
        let resp = self.send(conn, method.clone(), path, content_type, body).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        }
        Ok(body)
    }

    /// POST of a JSON object; `Ok(false)` for 409 AlreadyExists.
    pub async fn create(&self, conn: usize, path: &str, obj: &serde_json::Value) -> Result<bool> {
        let resp = self.send(conn, Method::POST, path, Some("application/json"), Bytes::from(obj.to_string())).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            s => bail!("POST {path}: {s}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
        }
    }
}

/// `metadata.resourceVersion` of one object (a watch line or a PATCH answer; not a list, whose
/// items come first), found without parsing the whole body: the bench reads millions of watch
/// events. The apiserver writes it as a string of digits, and an object has only that one.
pub fn resource_version(json: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"resourceVersion\":\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_resource_version() {
        let line = br#"{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"1234","uid":"x"}}}"#;
        assert_eq!(resource_version(line), Some(1234));
        assert_eq!(resource_version(br#"{"type":"ERROR","object":{"code":410}}"#), None);
    }
}
