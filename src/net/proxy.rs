//! Which proxy a connection goes through, and the `CONNECT` tunnel through it.
//!
//! The rules are Go's (`golang.org/x/net/http/httpproxy`, which `net/http`'s
//! `ProxyFromEnvironment` uses), so an agent behaves the same whether it is
//! written in Go or with this crate:
//!
//! * `HTTPS_PROXY` serves `https://` (and `wss://`) URLs, `HTTP_PROXY` serves
//!   `http://` (and `ws://`); the upper-case variable wins when both spellings
//!   are set and not empty. A value without a scheme (`proxy:3128`) means
//!   `http://proxy:3128`.
//! * When `REQUEST_METHOD` is set (the process is a CGI handler, whose
//!   `HTTP_PROXY` may come from a request header), `HTTP_PROXY` is refused.
//! * `localhost` and loopback addresses are never proxied.
//! * `NO_PROXY` is a comma-separated list: `*` (nothing is proxied), IP
//!   addresses (`10.1.2.3`, `[::1]:8080`), CIDR blocks (`10.0.0.0/8`), domains
//!   (`example.com` matches it and its subdomains, `.example.com` and
//!   `*.example.com` only its subdomains), each optionally with a port.
//!
//! [`ProxyChoice`] is the decision a client makes for every URL it opens:
//! from the environment (read once), one fixed proxy for everything, or none.
//! This module knows no Coder types; the client hands the same decision to
//! reqwest (REST) and to the websocket dial (RPC).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

use crate::error::{redact_url, Error};

/// The most a proxy's answer to `CONNECT` (status line and headers) may take.
const MAX_CONNECT_ANSWER: usize = 16 * 1024;

/// The proxy settings of a process, as Go's `httpproxy.Config` holds them:
/// the raw variable values, parsed by [`ProxyRules::new`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTP_PROXY` (or `http_proxy`).
    pub http_proxy: String,
    /// `HTTPS_PROXY` (or `https_proxy`).
    pub https_proxy: String,
    /// `NO_PROXY` (or `no_proxy`).
    pub no_proxy: String,
    /// Whether the process runs as a CGI handler (`REQUEST_METHOD` is set).
    pub cgi: bool,
}

impl ProxyEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (a map in tests): for each
    /// setting the upper-case name first, then the lower-case one; an empty
    /// value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let any = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.is_empty()))
                .unwrap_or_default()
        };
        ProxyEnv {
            http_proxy: any(["HTTP_PROXY", "http_proxy"]),
            https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]),
            cgi: lookup("REQUEST_METHOD").is_some_and(|v| !v.is_empty()),
        }
    }
}

impl fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Proxy values may carry a password.
        let shown = |v: &str| parse_proxy(v).map(|u| redact_url(&u)).unwrap_or_default();
        f.debug_struct("ProxyEnv")
            .field("http_proxy", &shown(&self.http_proxy))
            .field("https_proxy", &shown(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .field("cgi", &self.cgi)
            .finish()
    }
}

/// [`ProxyEnv`] parsed once into the decision for any URL (Go's
/// `Config.ProxyFunc`).
#[derive(Clone, Default)]
pub struct ProxyRules {
    http: Option<Url>,
    https: Option<Url>,
    cgi: bool,
    /// `*` in `NO_PROXY`: nothing is proxied.
    none: bool,
    ips: Vec<IpRule>,
    domains: Vec<DomainRule>,
}

/// A `NO_PROXY` entry that is an address or a block of addresses.
#[derive(Clone, Debug)]
enum IpRule {
    Exact { ip: IpAddr, port: Option<String> },
    Cidr { net: IpAddr, prefix: u8 },
}

/// A `NO_PROXY` entry that is a domain, kept with a leading dot.
#[derive(Clone, Debug)]
struct DomainRule {
    suffix: String,
    port: Option<String>,
    /// `example.com` (not `.example.com`) also matches `example.com` itself.
    exact_too: bool,
}

impl ProxyRules {
    /// Parses the settings. Unusable values are ignored, as Go does: a
    /// proxy URL that does not parse means no proxy, a malformed `NO_PROXY`
    /// entry is skipped.
    pub fn new(env: &ProxyEnv) -> Self {
        let mut rules = ProxyRules {
            http: parse_proxy(&env.http_proxy),
            https: parse_proxy(&env.https_proxy),
            cgi: env.cgi,
            ..ProxyRules::default()
        };
        for entry in env.no_proxy.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                rules.none = true;
                rules.ips.clear();
                rules.domains.clear();
                break;
            }
            if let Some(cidr) = parse_cidr(&entry) {
                rules.ips.push(cidr);
                continue;
            }
            let (host, port) = match split_host_port(&entry) {
                Some((host, port)) => {
                    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                    (host.to_owned(), Some(port.to_owned()).filter(|p| !p.is_empty()))
                }
                None => (entry.clone(), None),
            };
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                rules.ips.push(IpRule::Exact { ip, port });
                continue;
            }
            let host = host.strip_prefix('*').filter(|h| h.starts_with('.')).unwrap_or(&host);
            let (exact_too, bare) = match host.strip_prefix('.') {
                Some(bare) => (false, bare),
                None => (true, host),
            };
            rules.domains.push(DomainRule {
                suffix: format!(".{}", to_ascii_domain(bare)),
                port,
                exact_too,
            });
        }
        rules
    }

    /// The proxy for `url`, or `None` to connect directly. `ws`/`wss` URLs
    /// are decided as `http`/`https` ones (the websocket handshake is an
    /// HTTP request). The error is Go's CGI refusal of `HTTP_PROXY`.
    pub fn proxy_for(&self, url: &Url) -> Result<Option<&Url>, Error> {
        let proxy = match url.scheme() {
            "https" | "wss" => self.https.as_ref(),
            "http" | "ws" => {
                if self.http.is_some() && self.cgi {
                    return Err(Error::Proxy {
                        proxy: "HTTP_PROXY".to_owned(),
                        status: None,
                        reason: "refusing to use HTTP_PROXY value in CGI environment \
                                 (REQUEST_METHOD is set); see golang.org/s/cgihttpproxy"
                            .to_owned(),
                    });
                }
                self.http.as_ref()
            }
            _ => None,
        };
        let Some(proxy) = proxy else { return Ok(None) };
        let Some((host, port)) = host_and_port(url) else {
            return Ok(Some(proxy));
        };
        Ok(self.use_proxy(&host, &port).then_some(proxy))
    }

    /// Go's `useProxy`: false for localhost, loopback and `NO_PROXY` matches.
    fn use_proxy(&self, host: &str, port: &str) -> bool {
        if host == "localhost" {
            return false;
        }
        let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        if self.none {
            return false;
        }
        let host = host.trim().to_ascii_lowercase();
        if let Some(ip) = ip {
            if self.ips.iter().any(|rule| rule.matches(ip, port)) {
                return false;
            }
        }
        !self.domains.iter().any(|rule| rule.matches(&host, port))
    }
}

impl fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyRules")
            .field("http", &self.http.as_ref().map(redact_url))
            .field("https", &self.https.as_ref().map(redact_url))
            .field("cgi", &self.cgi)
            .field("no_proxy_all", &self.none)
            .field("no_proxy_ips", &self.ips)
            .field("no_proxy_domains", &self.domains)
            .finish()
    }
}

impl IpRule {
    fn matches(&self, ip: IpAddr, port: &str) -> bool {
        match self {
            IpRule::Exact {
                ip: want,
                port: want_port,
            } => want.to_canonical() == ip && want_port.as_deref().is_none_or(|p| p == port),
            IpRule::Cidr { net, prefix } => cidr_contains(*net, *prefix, ip),
        }
    }
}

impl DomainRule {
    fn matches(&self, host: &str, port: &str) -> bool {
        let named = host.ends_with(&self.suffix) || (self.exact_too && host == &self.suffix[1..]);
        named && self.port.as_deref().is_none_or(|p| p == port)
    }
}

/// Go's `parseProxy`: a full URL, or `host[:port]` meaning `http://host[:port]`.
/// An explicit `scheme://` other than http, https or socks5 is kept as given
/// (and refused when used).
fn parse_proxy(value: &str) -> Option<Url> {
    if value.is_empty() {
        return None;
    }
    match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https" | "socks5") => Some(url),
        Ok(url) if value.contains("://") => Some(url),
        _ => Url::parse(&format!("http://{value}")).ok(),
    }
}

/// `a.b.c.d/n` or `ipv6/n`.
fn parse_cidr(entry: &str) -> Option<IpRule> {
    let (addr, prefix) = entry.split_once('/')?;
    let net: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(IpRule::Cidr { net, prefix })
}

fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Go's `net.SplitHostPort` for a `NO_PROXY` entry: `host:port` or
/// `[v6]:port`; `None` when there is no port part (or too many colons).
fn split_host_port(entry: &str) -> Option<(&str, &str)> {
    if entry.starts_with('[') {
        let end = entry.find(']')?;
        let port = entry[end + 1..].strip_prefix(':')?;
        return Some((&entry[..=end], port));
    }
    let (host, port) = entry.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

/// A domain in its ASCII (punycode) form, as URL hosts are.
fn to_ascii_domain(domain: &str) -> String {
    if domain.is_ascii() {
        return domain.to_owned();
    }
    match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) => ascii,
        _ => domain.to_owned(),
    }
}

/// The host (IPv6 without brackets) and port (the scheme's default when
/// absent) of a URL, as Go's `canonicalAddr` gives them.
fn host_and_port(url: &Url) -> Option<(String, String)> {
    let host = match url.host()? {
        url::Host::Domain(d) => d.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    let port = url.port().or_else(|| default_port(url.scheme())).map(|p| p.to_string());
    Some((host, port.unwrap_or_default()))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "socks5" => Some(1080),
        _ => None,
    }
}

/// How a client picks the proxy for each connection.
#[derive(Clone, Debug)]
pub enum ProxyChoice {
    /// Go's `http.ProxyFromEnvironment`: [`ProxyRules`] from the variables
    /// read when the client was built.
    Environment(ProxyRules),
    /// Every connection through this proxy, loopback included (Go's
    /// `http.ProxyURL`).
    Fixed(FixedProxy),
    /// Every connection direct.
    Direct,
}

/// A proxy URL given explicitly; its credentials never show in `Debug`.
#[derive(Clone)]
pub struct FixedProxy(Url);

impl fmt::Debug for FixedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl ProxyChoice {
    /// The choice Go's default transport makes: from the environment.
    pub fn from_env() -> Self {
        ProxyChoice::Environment(ProxyRules::new(&ProxyEnv::from_env()))
    }

    /// One proxy for everything. `proxy` is parsed as an environment value
    /// is (`host:port` means `http://host:port`).
    pub fn fixed(proxy: &str) -> Result<Self, Error> {
        parse_proxy(proxy)
            .filter(|u| u.has_host())
            .map(|u| ProxyChoice::Fixed(FixedProxy(u)))
            .ok_or_else(|| Error::Config("the proxy URL does not parse".to_owned()))
    }

    /// The proxy for `url`, or `None` to connect directly.
    pub fn proxy_for(&self, url: &Url) -> Result<Option<Url>, Error> {
        match self {
            ProxyChoice::Environment(rules) => Ok(rules.proxy_for(url)?.cloned()),
            ProxyChoice::Fixed(FixedProxy(proxy)) => Ok(Some(proxy.clone())),
            ProxyChoice::Direct => Ok(None),
        }
    }

    /// The same decision as a reqwest proxy, for a reqwest client builder
    /// on which `.no_proxy()` has been called first (so reqwest reads no
    /// environment of its own). Credentials travel in the URL; reqwest
    /// sends them as `Proxy-Authorization: Basic`. URLs refused by Go's
    /// CGI rule connect directly here: reqwest cannot fail one request
    /// from a proxy decision, and direct is the side that leaks nothing
    /// to a proxy named by a request header.
    pub fn reqwest_proxy(&self) -> Option<reqwest::Proxy> {
        if matches!(self, ProxyChoice::Direct) {
            return None;
        }
        let choice = self.clone();
        Some(reqwest::Proxy::custom(move |url| match choice.proxy_for(url) {
            Ok(proxy) => proxy,
            Err(e) => {
                tracing::debug!(error = %e, "connecting directly");
                None
            }
        }))
    }
}

/// A TCP connection to `url`'s host and port (the scheme's default port when
/// absent), direct or through an HTTP `CONNECT` tunnel as `choice` decides,
/// within `timeout`. What is returned is ready for the protocol `url` names
/// (a TLS handshake first for `https`/`wss`); Nagle is off.
pub async fn connect_tcp(choice: &ProxyChoice, url: &Url, timeout: Duration) -> Result<TcpStream, Error> {
    let proxy = choice.proxy_for(url)?;
    let shown = redact_url(url);
    let attempt = async {
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(Error::InvalidUrl(format!("{shown}: no host"))),
        };
        let port = url
            .port_or_known_default()
            .or_else(|| default_port(url.scheme()))
            .ok_or_else(|| Error::InvalidUrl(format!("{shown}: no port")))?;
        let tcp = match &proxy {
            None => connect_direct(&host, port).await?,
            Some(proxy) => tunnel(proxy, &host, port).await?,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Ok(tcp)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout(match &proxy {
            None => format!("connecting to {shown} took over {timeout:?}"),
            Some(p) => format!(
                "connecting to {shown} through proxy {} took over {timeout:?}",
                redact_url(p)
            ),
        })),
    }
}

async fn connect_direct(host: &str, port: u16) -> Result<TcpStream, Error> {
    let connected = match host.parse::<IpAddr>() {
        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
        Err(_) => TcpStream::connect((host, port)).await,
    };
    connected.map_err(|e| Error::WebSocket(format!("connect to {host}:{port}: {e}")))
}

/// Opens a `CONNECT host:port` tunnel through an `http://` proxy.
async fn tunnel(proxy: &Url, host: &str, port: u16) -> Result<TcpStream, Error> {
    let shown = redact_url(proxy);
    let failed = |status: Option<u16>, reason: String| Error::Proxy {
        proxy: shown.clone(),
        status,
        reason,
    };
    match proxy.scheme() {
        "http" => {}
        // Go speaks TLS to https:// proxies and SOCKS5 to socks5:// ones;
        // this crate's websocket dial does neither yet (REST through
        // reqwest does https:// proxies).
        other => {
            return Err(failed(
                None,
                format!("{other}:// proxies are not supported for the RPC websocket; use an http:// proxy"),
            ))
        }
    }
    let proxy_host = match proxy.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => return Err(failed(None, "the proxy URL has no host".to_owned())),
    };
    let proxy_port = proxy.port_or_known_default().unwrap_or(80);
    let mut tcp = connect_direct(&proxy_host, proxy_port)
        .await
        .map_err(|e| failed(None, e.to_string()))?;

    let authority = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = basic_credentials(proxy) {
        head.push_str("Proxy-Authorization: Basic ");
        head.push_str(&credentials);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| failed(None, format!("send CONNECT: {e}")))?;

    // Read byte by byte up to the blank line: the proxy says nothing after
    // its answer until we speak, and nothing read past it may be lost.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_CONNECT_ANSWER {
            return Err(failed(
                None,
                format!("answer to CONNECT over {MAX_CONNECT_ANSWER} bytes"),
            ));
        }
        let byte = tcp
            .read_u8()
            .await
            .map_err(|e| failed(None, format!("read answer to CONNECT: {e}")))?;
        answer.push(byte);
    }
    let status_line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line).trim_end().to_owned();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let reason = parts.next().unwrap_or_default();
    let status = match code.parse::<u16>() {
        Ok(code) if version.starts_with("HTTP/1.") && (100..1000).contains(&code) => code,
        _ => return Err(failed(None, format!("malformed answer to CONNECT: {status_line:?}"))),
    };
    // Go's transport accepts exactly 200 for a tunnel.
    if status != 200 {
        let reason = if reason.is_empty() {
            format!("CONNECT answered {status}")
        } else {
            format!("CONNECT answered {status} {reason}")
        };
        return Err(failed(Some(status), reason));
    }
    Ok(tcp)
}

/// `base64(user:password)` from the proxy URL, percent-decoded, or `None`
/// when it names no user.
fn basic_credentials(proxy: &Url) -> Option<String> {
    if proxy.username().is_empty() && proxy.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let pair = format!(
        "{}:{}",
        decode(proxy.username()),
        decode(proxy.password().unwrap_or(""))
    );
    Some(base64::engine::general_purpose::STANDARD.encode(pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(http: &str, https: &str, no: &str) -> ProxyEnv {
        ProxyEnv {
            http_proxy: http.to_owned(),
            https_proxy: https.to_owned(),
            no_proxy: no.to_owned(),
            cgi: false,
        }
    }

    fn decide(env: &ProxyEnv, url: &str) -> Result<Option<String>, Error> {
        let url = Url::parse(url).unwrap();
        Ok(ProxyRules::new(env)
            .proxy_for(&url)?
            .map(|u| u.as_str().trim_end_matches('/').to_owned()))
    }

    /// Our cases modelled on the table of Go's `TestProxyForURL`
    /// (golang.org/x/net/http/httpproxy/proxy_test.go): settings, request
    /// URL, expected proxy ("" = direct). The IPv6-zone case of Go's table
    /// is left out: the url crate refuses such a URL before any decision.
    const PROXY_FOR_URL: &[(&str, &str, &str, &str, &str)] = &[
        // (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, request, proxy)
        ("127.0.0.1:8080", "", "", "http://example.com", "http://127.0.0.1:8080"),
        (
            "cache.corp.example.com:1234",
            "",
            "",
            "http://example.com",
            "http://cache.corp.example.com:1234",
        ),
        (
            "cache.corp.example.com",
            "",
            "",
            "http://example.com",
            "http://cache.corp.example.com",
        ),
        ("localhost", "", "", "http://example.com", "http://localhost"),
        (
            "https://cache.corp.example.com",
            "",
            "",
            "http://example.com",
            "https://cache.corp.example.com",
        ),
        (
            "http://127.0.0.1:8080",
            "",
            "",
            "http://example.com",
            "http://127.0.0.1:8080",
        ),
        (
            "https://127.0.0.1:8080",
            "",
            "",
            "http://example.com",
            "https://127.0.0.1:8080",
        ),
        ("socks5://127.0.0.1", "", "", "http://example.com", "socks5://127.0.0.1"),
        ("foo://host", "", "", "http://example.com", "foo://host"),
        (
            "http.proxy.tld",
            "secure.proxy.tld",
            "",
            "http://insecure.tld/",
            "http://http.proxy.tld",
        ),
        (
            "http.proxy.tld",
            "secure.proxy.tld",
            "",
            "https://secure.tld/",
            "http://secure.proxy.tld",
        ),
        (
            "http.proxy.tld",
            "https://secure.proxy.tld",
            "",
            "https://secure.tld/",
            "https://secure.proxy.tld",
        ),
        ("http.proxy.tld", "", "", "https://secure.tld/", ""),
        ("http.proxy.tld", "", "", "ftp://insecure.tld/", ""),
        ("", "", "", "http://example.com", ""),
        ("proxy", "", "example.com", "http://example.com/", ""),
        ("proxy", "", ".example.com", "http://example.com/", "http://proxy"),
        ("proxy", "", "ample.com", "http://example.com/", "http://proxy"),
        ("proxy", "", "example.com", "http://foo.example.com/", ""),
        ("proxy", "", ".foo.com", "http://example.com/", "http://proxy"),
        ("proxy", "", ".示例.com", "http://www.示例.com", ""),
        ("proxy", "", "xn--fsq092h.com", "http://www.示例.com", ""),
        ("proxy", "", "示例.com", "http://www.xn--fsq092h.com", ""),
        // The websocket schemes follow their HTTP counterparts.
        (
            "http.proxy.tld",
            "secure.proxy.tld",
            "",
            "ws://insecure.tld/",
            "http://http.proxy.tld",
        ),
        (
            "http.proxy.tld",
            "secure.proxy.tld",
            "",
            "wss://secure.tld/",
            "http://secure.proxy.tld",
        ),
        ("http.proxy.tld", "", "", "wss://secure.tld/", ""),
    ];

    #[test]
    fn proxy_for_url_follows_go_table() {
        for &(http, https, no, request, want) in PROXY_FOR_URL {
            let got = decide(&env(http, https, no), request).unwrap().unwrap_or_default();
            assert_eq!(
                got, want,
                "HTTP_PROXY={http:?} HTTPS_PROXY={https:?} NO_PROXY={no:?} {request}"
            );
        }
    }

    #[test]
    fn cgi_refuses_http_proxy_but_keeps_https_proxy() {
        let mut e = env("http://10.1.2.3:8080", "https://secure.proxy.tld", "");
        e.cgi = true;
        let err = decide(&e, "http://example.com").unwrap_err();
        assert!(matches!(err, Error::Proxy { status: None, .. }), "{err:?}");
        assert!(err.to_string().contains("CGI"), "{err}");
        assert!(decide(&e, "ws://example.com").is_err());
        assert_eq!(
            decide(&e, "https://secure.tld/").unwrap().as_deref(),
            Some("https://secure.proxy.tld")
        );
    }

    /// Go's `noProxy` string and `UseProxyTests` table (same file):
    /// host, whether a request to it on port 80 is proxied.
    const NO_PROXY: &str = "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, \
                            10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64";
    const USE_PROXY: &[(&str, bool)] = &[
        ("localhost", false),
        ("127.0.0.1", false),
        ("127.0.0.2", false),
        ("[::1]", false),
        ("[::2]", true),
        ("192.168.1.1", false),
        ("192.168.1.2", true),
        ("192.168.1.3", false),
        ("192.168.1.4", true),
        ("10.0.0.2", false),
        ("[2001:db8::52:0:1]", false),
        ("[2001:db8::52:0:2]", true),
        ("[2001:db8::52:0:3]", false),
        ("[2002:db8:a::123]", false),
        ("[fe80::424b:c8be:1643:a1b6]", true),
        ("barbaz.net", true),
        ("www.barbaz.net", false),
        ("foobar.com", false),
        ("www.foobar.com", false),
        ("foofoobar.com", true),
        ("baz.com", true),
        ("localhost.net", true),
        ("local.localhost", true),
        ("barbarbaz.net", true),
        ("wildcard.io", true),
        ("nested.wildcard.io", false),
        ("awildcard.io", true),
    ];

    #[test]
    fn no_proxy_matches_hosts_domains_ports_and_cidrs_as_go() {
        let e = env("http://proxy.example.org", "", NO_PROXY);
        for &(host, proxied) in USE_PROXY {
            let got = decide(&e, &format!("http://{host}:80/")).unwrap().is_some();
            assert_eq!(got, proxied, "{host}");
        }
    }

    #[test]
    fn no_proxy_star_proxies_nothing() {
        let e = env("http://proxy.example.org", "", "*");
        for &(host, _) in USE_PROXY {
            assert_eq!(decide(&e, &format!("http://{host}:80/")).unwrap(), None, "{host}");
        }
    }

    #[test]
    fn malformed_no_proxy_entry_is_ignored() {
        let e = env("http://proxy.example.org", "", ":1");
        assert!(decide(&e, "http://example.com:80/").unwrap().is_some());
    }

    #[test]
    fn no_proxy_port_is_compared_with_the_default_port_when_the_url_has_none() {
        let e = env("proxy", "proxy", "example.com:443");
        assert_eq!(decide(&e, "https://example.com/").unwrap(), None);
        assert!(decide(&e, "http://example.com/").unwrap().is_some());
    }

    #[test]
    fn upper_case_variables_win_and_empty_ones_count_as_unset() {
        let vars = [
            ("HTTP_PROXY", "upper"),
            ("http_proxy", "lower"),
            ("HTTPS_PROXY", ""),
            ("https_proxy", "lower-s"),
            ("no_proxy", "np"),
        ];
        let e = ProxyEnv::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()));
        assert_eq!(e, env("upper", "lower-s", "np"));
        assert!(!e.cgi);
        let cgi = ProxyEnv::from_lookup(|n| (n == "REQUEST_METHOD").then(|| "PUT".to_owned()));
        assert!(cgi.cgi);
    }

    #[test]
    fn loopback_is_never_proxied_from_the_environment_but_is_by_a_fixed_proxy() {
        let from_env = ProxyChoice::Environment(ProxyRules::new(&env("proxy:3128", "proxy:3128", "")));
        let fixed = ProxyChoice::fixed("proxy:3128").unwrap();
        for url in ["http://127.0.0.1:3000/", "ws://localhost/", "wss://[::1]:8443/"] {
            let url = Url::parse(url).unwrap();
            assert_eq!(from_env.proxy_for(&url).unwrap(), None, "{url}");
            assert_eq!(
                fixed.proxy_for(&url).unwrap().map(String::from).as_deref(),
                Some("http://proxy:3128/")
            );
            assert_eq!(ProxyChoice::Direct.proxy_for(&url).unwrap(), None);
        }
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let e = env("http://user:s3cret@proxy:3128", "user:s3cret@proxy:3129", "");
        let rules = ProxyRules::new(&e);
        let fixed = ProxyChoice::fixed("http://user:s3cret@proxy:3128").unwrap();
        for shown in [format!("{e:?}"), format!("{rules:?}"), format!("{fixed:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("proxy:3128"), "{shown}");
        }
    }

    #[test]
    fn basic_credentials_are_percent_decoded() {
        let url = Url::parse("http://Aladdin:open%20sesame@proxy:3128").unwrap();
        assert_eq!(basic_credentials(&url).unwrap(), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_credentials(&Url::parse("http://proxy:3128").unwrap()), None);
    }
}
