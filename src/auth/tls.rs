//! TLS on the listener (`[http.tls]`), which also proves who machine
//! callers are: rustls with the ring provider,
//! TLS 1.2 and 1.3 only. The certificate and key files are re-read when
//! they change (a renewal by cert-manager or certbot needs no restart),
//! checked at most once a second, on a handshake; a pair that cannot be
//! loaded is logged and counted and the previous one stays in use.
//! With `client_ca`, clients may present a certificate signed by it: a
//! machine caller is then signed in as its certificate's common name.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::{ClientCert, Role};
use keywatch_core::config::{invalid, ConfigError};
use keywatch_core::metrics::Metrics;

/// `[http.tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server's certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of the CAs whose client certificates are accepted; a
    /// client that presents none signs in another way. Unset: no client
    /// certificates are asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// The role of a caller signed in by a client certificate.
    #[serde(default = "default_client_cert_role")]
    pub client_cert_role: Role,
}

/// Machine callers read (scrapers, exporters) far more often than they act.
fn default_client_cert_role() -> Role {
    Role::Viewer
}

impl TlsConfig {
    /// Loads the files once: a missing or mismatched certificate fails at
    /// start (and in `check-config`), naming the key and the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        load_pair(&self.cert, &self.key, &provider()).map_err(|(key, reason)| {
            let file = if key == "cert" { &self.cert } else { &self.key };
            invalid(&format!("http.tls.{key}"), file.display(), reason)
        })?;
        if let Some(ca) = &self.client_ca {
            roots(ca).map_err(|reason| invalid("http.tls.client_ca", ca.display(), reason))?;
        }
        Ok(())
    }
}

/// rustls' ring provider: no C toolchain or cmake beyond ring's own, where
/// aws-lc-rs would add both to every build. rustls 0.23.48 deprecates it
/// for lacking post-quantum key exchange, which this API can do without:
/// recorded traffic would reveal findings, not keys.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The acceptor for `cfg`; the configuration is validated already.
pub fn acceptor(cfg: &TlsConfig, metrics: Arc<Metrics>) -> anyhow::Result<TlsAcceptor> {
    let provider = provider();
    let (key, versions) = load_pair(&cfg.cert, &cfg.key, &provider)
        .map_err(|(k, reason)| anyhow::anyhow!("http.tls.{k}: {reason}"))?;
    for result in ["ok", "error"] {
        metrics.http_tls_reloads.with_label_values(&[result]);
    }
    let resolver = Arc::new(Reloading {
        cert: cfg.cert.clone(),
        key: cfg.key.clone(),
        provider: provider.clone(),
        metrics,
        current: Mutex::new(Current {
            key: Arc::new(key),
            versions,
            checked: Instant::now(),
        }),
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let roots = roots(ca).map_err(|r| anyhow::anyhow!("http.tls.client_ca: {r}"))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The common name of a connection's verified client certificate (the
/// whole subject when it has none).
pub fn client_cert(conn: &rustls::ServerConnection) -> Option<ClientCert> {
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    use x509_cert::der::Decode;
    let leaf = conn.peer_certificates()?.first()?;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = &cert.tbs_certificate.subject;
    let cn = x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    let common_name = subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == cn)
        .find_map(|atv| {
            Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    PrintableStringRef::try_from(&atv.value).map(|s| s.as_str().to_owned())
                })
                .ok()
        });
    Some(ClientCert(
        common_name.unwrap_or_else(|| subject.to_string()),
    ))
}

/// How often a handshake may look at the files: a renewal is picked up
/// within a second, and a flood of handshakes costs one `stat` a second.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Serves the pair in the files, re-read when they change.
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    versions: Versions,
    checked: Instant,
}

/// The files' modification times and sizes, when they were loaded.
type Versions = [(Option<SystemTime>, u64); 2];

fn versions(cert: &Path, key: &Path) -> Versions {
    [cert, key].map(|p| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    })
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= CHECK_EVERY {
            current.checked = Instant::now();
            if versions(&self.cert, &self.key) != current.versions {
                match load_pair(&self.cert, &self.key, &self.provider) {
                    Ok((key, versions)) => {
                        current.key = Arc::new(key);
                        current.versions = versions;
                        self.metrics
                            .http_tls_reloads
                            .with_label_values(&["ok"])
                            .inc();
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    }
                    Err((k, reason)) => {
                        // Not retried until the files change again.
                        current.versions = versions(&self.cert, &self.key);
                        self.metrics
                            .http_tls_reloads
                            .with_label_values(&["error"])
                            .inc();
                        tracing::warn!(
                            "http.tls.{k}: {reason}; the previous certificate stays in use"
                        );
                    }
                }
            }
        }
        Some(current.key.clone())
    }
}

/// The certificate chain and key in the files, checked to match; errors
/// name the key (`cert` or `key`) to blame.
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Versions), (&'static str, String)> {
    // The versions first: a file replaced while it is read is read again
    // on the next check.
    let versions = versions(cert, key);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ("cert", format!("cannot read a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(("cert", "no CERTIFICATE block in the file".to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ("key", format!("cannot read a PEM private key: {e}")))?;
    let pair = CertifiedKey::from_der(chain, private, provider)
        .map_err(|e| ("key", format!("does not fit the certificate: {e}")))?;
    Ok((pair, versions))
}

/// The CA certificates in a PEM file.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read PEM certificates: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err("no usable CA certificate in the file".to_owned());
    }
    Ok(roots)
}
