//! The network settings of one [`crate::Client`], shared by its REST calls
//! and every websocket dial: how to reach the host (direct or through a
//! proxy, [`proxy`]) and whom to trust (TLS). Knows URLs and sockets, no
//! Coder types.

pub mod proxy;
pub(crate) mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use self::proxy::ProxyChoice;
use crate::error::Error;

/// What a client's connections are made with. Cheap to clone.
#[derive(Clone)]
pub(crate) struct NetConfig {
    /// The rustls config of every TLS connection (REST and websocket):
    /// the trusted roots, HTTP/1.1 as the only ALPN protocol.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Which proxy each connection (REST and websocket) goes through.
    pub(crate) proxy: ProxyChoice,
}

impl std::fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConfig")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Default for NetConfig {
    /// The system's trust (and `SSL_CERT_FILE` / `SSL_CERT_DIR`) and the
    /// environment's proxy settings.
    fn default() -> Self {
        NetConfig {
            tls: tls::default_client_config(),
            proxy: ProxyChoice::from_env(),
        }
    }
}

impl NetConfig {
    /// A reqwest client builder whose TLS is this config's (the same roots
    /// as the websocket dial) and whose proxy decision is this config's
    /// (reqwest's own reading of the environment off), keeping redirects on
    /// one origin.
    pub(crate) fn http_client_builder(&self) -> reqwest::ClientBuilder {
        tls::install_crypto_provider();
        let builder = reqwest::Client::builder()
            .redirect(crate::http::same_origin_redirect_policy())
            .tls_backend_preconfigured((*self.tls).clone())
            .no_proxy();
        match self.proxy.reqwest_proxy() {
            Some(p) => builder.proxy(p),
            None => builder,
        }
    }
}

/// A TCP connection to `url`'s host and port, direct or through a proxy
/// tunnel as the config decides, Nagle off (small DRPC messages must not
/// wait), within `timeout`.
pub(crate) async fn connect_tcp(net: &NetConfig, url: &url::Url, timeout: Duration) -> Result<TcpStream, Error> {
    proxy::connect_tcp(&net.proxy, url, timeout).await
}
