//! First-start credentials in the data dir: a cluster CA, a serving certificate for
//! 127.0.0.1/localhost signed by it, an admin bearer token in a token file, an admin client
//! certificate (CN=admin, O=system:masters) signed by the CA, and two admin kubeconfigs (token
//! and certificate). Later starts reuse the files (the kubeconfigs are rewritten: the port may
//! change).

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;

/// Paths and contents of the credentials in a data dir.
#[derive(Debug, Clone)]
pub struct Pki {
    /// `DIR/pki/ca.crt`, PEM.
    pub ca_cert_pem: String,
    /// `DIR/pki/apiserver.crt`, PEM.
    pub serving_cert_pem: String,
    /// `DIR/pki/apiserver.key`, PEM (mode 0600).
    pub serving_key_pem: String,
    /// `DIR/tokens.csv` (mode 0600).
    pub token_file: PathBuf,
    /// The admin's bearer token.
    pub admin_token: String,
    /// `DIR/pki/admin.crt`, PEM: the admin's client certificate.
    pub admin_cert_pem: String,
    /// `DIR/pki/admin.key`, PEM (mode 0600).
    pub admin_key_pem: String,
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The CA's parameters; the same values rebuild its issuer from `ca.key` on later starts.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "ferrokube-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(ca)
}

/// A client certificate for `user` in `group` (subject CN and O, kube-apiserver's
/// `--client-ca-file` convention) signed by `issuer`: (certificate PEM, key PEM). rcgen
/// writes one value per attribute type, so one group.
pub fn client_certificate(user: &str, group: &str, issuer: &Issuer<'_, KeyPair>) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    params.distinguished_name.push(DnType::OrganizationName, group);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `admin.crt`/`admin.key`, signed by the CA in `pki_dir` (data dirs made before client
/// certificates existed get theirs on their next start).
fn generate_admin_cert(pki_dir: &Path) -> anyhow::Result<()> {
    let ca_key = std::fs::read_to_string(pki_dir.join("ca.key")).context("reading pki/ca.key")?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca_key).context("parsing pki/ca.key")?);
    let (cert, key) = client_certificate("admin", "system:masters", &issuer)?;
    write_private(&pki_dir.join("admin.key"), &key)?;
    std::fs::write(pki_dir.join("admin.crt"), cert)?;
    Ok(())
}

fn generate(pki_dir: &Path) -> anyhow::Result<()> {
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write_private(&pki_dir.join("ca.key"), &ca_key.serialize_pem())?;
    std::fs::write(pki_dir.join("ca.crt"), ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut serving =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])?;
    serving.distinguished_name.push(DnType::CommonName, "ferrokube-apiserver");
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Strict X.509 verifiers (OpenSSL 3 with VERIFY_X509_STRICT) require the AKI.
    serving.use_authority_key_identifier_extension = true;
    let cert = serving.signed_by(&key, &issuer)?;
    write_private(&pki_dir.join("apiserver.key"), &key.serialize_pem())?;
    std::fs::write(pki_dir.join("apiserver.crt"), cert.pem())?;
    Ok(())
}

impl Pki {
    /// Loads the credentials in `data_dir`, creating whatever is missing.
    pub fn ensure(data_dir: &Path) -> anyhow::Result<Self> {
        let pki_dir = data_dir.join("pki");
        std::fs::create_dir_all(&pki_dir).with_context(|| format!("creating {}", pki_dir.display()))?;
        let have = ["ca.crt", "apiserver.crt", "apiserver.key"].iter().all(|f| pki_dir.join(f).exists());
        if !have {
            generate(&pki_dir).context("creating the cluster CA and serving certificate")?;
        }
        if !pki_dir.join("admin.crt").exists() || !pki_dir.join("admin.key").exists() {
            generate_admin_cert(&pki_dir).context("creating the admin client certificate")?;
        }
        let token_file = data_dir.join("tokens.csv");
        if !token_file.exists() {
            write_private(&token_file, &format!("{},admin,admin,\"system:masters\"\n", random_token()))?;
        }
        let tokens = std::fs::read_to_string(&token_file)?;
        let admin_token = tokens
            .lines()
            .find(|l| l.split(',').nth(1) == Some("admin"))
            .and_then(|l| l.split(',').next())
            .context("tokens.csv has no admin line")?
            .to_string();
        let read = |f: &str| std::fs::read_to_string(pki_dir.join(f)).with_context(|| format!("reading pki/{f}"));
        Ok(Self {
            ca_cert_pem: read("ca.crt")?,
            serving_cert_pem: read("apiserver.crt")?,
            serving_key_pem: read("apiserver.key")?,
            token_file,
            admin_token,
            admin_cert_pem: read("admin.crt")?,
            admin_key_pem: read("admin.key")?,
        })
    }

    /// Writes `DIR/kubeconfig` for the admin with the bearer token (JSON, which kubectl and
    /// client libraries read as YAML) and returns its path.
    pub fn write_kubeconfig(&self, data_dir: &Path, server: &str) -> anyhow::Result<PathBuf> {
        self.write_kubeconfig_for(&data_dir.join("kubeconfig"), server, json!({"token": self.admin_token}))
    }

    /// Writes `DIR/kubeconfig-cert` for the admin with the client certificate and key, and
    /// returns its path.
    pub fn write_cert_kubeconfig(&self, data_dir: &Path, server: &str) -> anyhow::Result<PathBuf> {
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let user = json!({
            "client-certificate-data": b64(&self.admin_cert_pem),
            "client-key-data": b64(&self.admin_key_pem),
        });
        self.write_kubeconfig_for(&data_dir.join("kubeconfig-cert"), server, user)
    }

    fn write_kubeconfig_for(&self, path: &Path, server: &str, user: serde_json::Value) -> anyhow::Result<PathBuf> {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_cert_pem);
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "ferrokube", "cluster": {"server": server, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": user}],
            "contexts": [{"name": "ferrokube", "context": {"cluster": "ferrokube", "user": "admin", "namespace": "default"}}],
            "current-context": "ferrokube",
            "preferences": {},
        });
        write_private(path, &serde_json::to_string_pretty(&config)?)?;
        Ok(path.to_path_buf())
    }

    /// Checks client certificates against the cluster CA; clients without one pass (they
    /// authenticate with a token or get 401).
    pub fn client_verifier(&self) -> anyhow::Result<std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_cert_pem.as_bytes()) {
            roots.add(ca.context("parsing pki/ca.crt")?).context("pki/ca.crt as a client CA")?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .context("building the client certificate verifier")
    }

    /// The rustls server configuration (ring provider, h2 and http/1.1). Client certificates
    /// are requested, not required (bearer-token clients send none); one that is sent must
    /// chain to the cluster CA, or the handshake fails (kube-apiserver would answer 401).
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(self.serving_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("parsing pki/apiserver.crt")?;
        let key = PrivateKeyDer::from_pem_slice(self.serving_key_pem.as_bytes()).context("parsing pki/apiserver.key")?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.client_verifier()?)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn admin_certificate_chains_to_the_cluster_ca_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::ensure(dir.path()).unwrap();
        let admin = User::from_certificate(&der(&pki.admin_cert_pem)).unwrap();
        assert_eq!((admin.name.as_str(), admin.groups.as_slice()), ("admin", &["system:masters".to_string()][..]));
        let verifier = pki.client_verifier().unwrap();
        assert!(!verifier.client_auth_mandatory(), "token clients send no certificate");
        assert!(verifier.verify_client_cert(&der(&pki.admin_cert_pem), &[], UnixTime::now()).is_ok());

        // Same subject, another CA with the same name: refused.
        let mut other = ca_params().unwrap();
        other.distinguished_name.push(DnType::OrganizationName, "elsewhere");
        let (foreign, _) = client_certificate("admin", "system:masters", &Issuer::new(other, KeyPair::generate().unwrap())).unwrap();
        assert!(verifier.verify_client_cert(&der(&foreign), &[], UnixTime::now()).is_err());
        // The serving certificate is not for clients.
        assert!(verifier.verify_client_cert(&der(&pki.serving_cert_pem), &[], UnixTime::now()).is_err());

        // The certificate kubeconfig carries the certificate and key, the token one the token.
        let kc = pki.write_cert_kubeconfig(dir.path(), "https://127.0.0.1:1").unwrap();
        let kc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(kc).unwrap()).unwrap();
        let user = &kc["users"][0]["user"];
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(user["client-certificate-data"].as_str(), Some(b64(&pki.admin_cert_pem).as_str()));
        assert_eq!(user["client-key-data"].as_str(), Some(b64(&pki.admin_key_pem).as_str()));
        assert!(user.get("token").is_none());

        // A data dir from before client certificates gets one from the same CA on its next start.
        std::fs::remove_file(dir.path().join("pki/admin.crt")).unwrap();
        let again = Pki::ensure(dir.path()).unwrap();
        assert_eq!(again.ca_cert_pem, pki.ca_cert_pem);
        assert_ne!(again.admin_cert_pem, pki.admin_cert_pem);
        assert!(verifier.verify_client_cert(&der(&again.admin_cert_pem), &[], UnixTime::now()).is_ok());
        // And later starts keep it.
        assert_eq!(Pki::ensure(dir.path()).unwrap().admin_cert_pem, again.admin_cert_pem);
    }
}
