//! The network settings of one [`crate::Client`], shared by its REST calls
//! and every websocket dial: how to reach the host (TCP) and whom to trust
//! (TLS). Knows URLs and sockets, no Coder types.

pub(crate) mod tls;

use std::io;
use std::sync::Arc;

use tokio::net::TcpStream;

/// What a client's connections are made with. Cheap to clone.
#[derive(Clone)]
pub(crate) struct NetConfig {
    /// The rustls config of every TLS connection (REST and websocket):
    /// the trusted roots, HTTP/1.1 as the only ALPN protocol.
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConfig").finish_non_exhaustive()
    }
}

impl Default for NetConfig {
    /// The system's trust (and `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    fn default() -> Self {
        NetConfig {
            tls: tls::default_client_config(),
        }
    }
}

impl NetConfig {
    /// A reqwest client builder whose TLS is this config's (the same roots
    /// as the websocket dial), keeping redirects on one origin.
    pub(crate) fn http_client_builder(&self) -> reqwest::ClientBuilder {
        tls::install_crypto_provider();
        reqwest::Client::builder()
            .redirect(crate::http::same_origin_redirect_policy())
            .tls_backend_preconfigured((*self.tls).clone())
    }
}

/// A TCP connection to `url`'s host and port, Nagle off (small DRPC
/// messages must not wait), as tokio-tungstenite's own dial does.
pub(crate) async fn connect_tcp(_net: &NetConfig, url: &url::Url) -> io::Result<TcpStream> {
    let host = url
        .host_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: no port")))?;
    // url keeps IPv6 hosts in brackets, which is what "host:port" needs.
    let tcp = TcpStream::connect(format!("{host}:{port}")).await?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    Ok(tcp)
}
