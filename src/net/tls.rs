//! TLS for both directions, on rustls with ring:
//!
//! * the client's trust: the system's root certificates read as Go's
//!   `crypto/x509` reads them (`SSL_CERT_FILE`, `SSL_CERT_DIR`), plus any
//!   extra roots, in one `rustls::ClientConfig` that REST (reqwest) and every
//!   websocket dial share;
//! * the handshake of a `wss://` dial over an already connected TCP stream;
//! * finding the rustls error inside a failed dial, so that a certificate
//!   problem becomes one typed error instead of nested I/O errors;
//! * the server side: a `rustls::ServerConfig` from a certificate chain and key.

use std::io;
use std::sync::{Arc, Once, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
#[cfg(feature = "server")]
use rustls::{pki_types::PrivateKeyDer, ServerConfig};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

/// The one ALPN protocol we offer and accept: HTTP/1.1. The websocket
/// upgrade is an HTTP/1.1 request, and reqwest is built without HTTP/2.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Installs ring as rustls' process default, unless one is already set.
///
/// tokio-rustls, reqwest and rustls' own config builders (all without a
/// default provider here) need a process-wide provider; we install ring's
/// once, before any TLS config is built.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another library (or the application) may have installed one first: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The system's root certificates, read once per process (as Go reads its
/// system pool once): later changes to `SSL_CERT_FILE` do not apply.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let certs = load_system_certificates();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs);
        tracing::debug!(added, ignored, "system root certificates loaded");
        roots
    })
}

/// Go's `loadSystemRoots` on Linux and the BSDs: the certificates of
/// `SSL_CERT_FILE` if set, else of the first default bundle file found; plus
/// those of every directory in `SSL_CERT_DIR` (colon-separated) if set, else
/// of the default directories. So `SSL_CERT_FILE=ca.pem` adds a private CA
/// while the directory `/etc/ssl/certs` still supplies the public ones.
#[cfg(all(unix, not(target_os = "macos")))]
fn load_system_certificates() -> Vec<CertificateDer<'static>> {
    use std::path::PathBuf;
    let env_path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let file = match env_path("SSL_CERT_FILE") {
        Some(file) => Some(PathBuf::from(file)),
        // probe() also looks at the environment, which is unset here.
        None => openssl_probe::probe().cert_file,
    };
    let dirs: Vec<PathBuf> = match env_path("SSL_CERT_DIR") {
        Some(dirs) => std::env::split_paths(&dirs)
            .filter(|d| !d.as_os_str().is_empty())
            .collect(),
        None => openssl_probe::candidate_cert_dirs().map(PathBuf::from).collect(),
    };
    let mut certs = Vec::new();
    let mut load = |file: Option<&std::path::Path>, dir: Option<&std::path::Path>| {
        let result = rustls_native_certs::load_certs_from_paths(file, dir);
        for e in &result.errors {
            // Go skips unreadable locations too; the handshake then says
            // which certificate was not trusted.
            tracing::debug!(error = %e, "root certificate location skipped");
        }
        certs.extend(result.certs);
    };
    load(file.as_deref(), None);
    for dir in &dirs {
        load(None, Some(dir));
    }
    // A directory usually holds the bundle file and a link per certificate.
    certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    certs.dedup();
    certs
}

/// Elsewhere (macOS, Windows) the platform's store, as rustls-native-certs
/// reads it; there `SSL_CERT_FILE` / `SSL_CERT_DIR`, when set, replace it.
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn load_system_certificates() -> Vec<CertificateDer<'static>> {
    let result = rustls_native_certs::load_native_certs();
    for e in &result.errors {
        tracing::debug!(error = %e, "root certificate location skipped");
    }
    result.certs
}

/// The default client config: the system's roots, HTTP/1.1. Built once.
pub(crate) fn default_client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| client_config_with_roots(system_roots().clone()))
        .clone()
}

/// The system's roots plus `extra`.
pub(crate) fn client_config_with_extra_roots(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = system_roots().clone();
    for (i, cert) in extra.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("root certificate {}: {e}", i + 1))?;
    }
    Ok(client_config_with_roots(roots))
}

fn client_config_with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    install_crypto_provider();
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Arc::new(config)
}

/// The caller's config with our ALPN (HTTP/1.1 only: a server picking h2
/// would break both the websocket upgrade and reqwest without HTTP/2).
pub(crate) fn http1_only(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    if config.alpn_protocols == [ALPN_HTTP1] {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Arc::new(config)
}

/// Every certificate in `pem` (other PEM sections are skipped); an error
/// when there is none or one is malformed.
pub(crate) fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_owned());
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
#[cfg(feature = "server")]
pub(crate) fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("reading a PEM private key: {e}"))
}

/// The server name a certificate must be valid for: the URL's host.
pub(crate) fn server_name(host: url::Host<&str>) -> io::Result<ServerName<'static>> {
    match host {
        url::Host::Domain(d) => ServerName::try_from(d.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{d}: {e}"))),
        url::Host::Ipv4(ip) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(ip).into())),
        url::Host::Ipv6(ip) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(ip).into())),
    }
}

/// The client side of a TLS connection over the connected `tcp`.
pub(crate) type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS handshake as a client of `name`. A rustls failure (say, an
/// untrusted certificate) comes back inside the `io::Error`; see
/// [`find_rustls_error`].
pub(crate) async fn connect(
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> io::Result<ClientStream> {
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
}

/// The rustls error somewhere in `e`'s source chain. An `io::Error` does
/// not list the error it wraps as its source (it skips to that error's
/// source), so each one is opened by hand.
pub(crate) fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| find_rustls_error(inner))
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// A server config that presents `cert_chain` (leaf first) with `key`,
/// HTTP/1.1 only.
#[cfg(feature = "server")]
pub(crate) fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    install_crypto_provider();
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_certificates_is_refused() {
        let err = certificates_from_pem(b"not a pem at all").unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn rustls_error_is_found_inside_nested_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, inner.clone());
        let outer = io::Error::other(io);
        assert_eq!(find_rustls_error(&outer), Some(&inner));
        assert_eq!(find_rustls_error(&io::Error::other("plain")), None);
    }

    #[test]
    fn callers_config_is_narrowed_to_http1() {
        let mut config = (*default_client_config()).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = http1_only(Arc::new(config));
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
