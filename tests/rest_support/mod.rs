//! Helpers shared by the REST, identity and reinit tests: tracing setup,
//! a hang guard, throwaway HTTP servers on 127.0.0.1:0 and a fake cloud
//! metadata service.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use tokio::sync::watch;

/// Guards against hangs; a test that needs this long has failed anyway.
pub const GUARD: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Serves `app` on a free loopback port until the test ends.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A server answering every request with one canned response.
pub async fn canned(status: u16, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> SocketAddr {
    let body: Vec<u8> = body.into();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
            if let Some(ct) = content_type {
                r = r.header("content-type", ct);
            }
            r.body(Body::from(body)).unwrap()
        }
    });
    serve(app).await
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// One request the fake metadata service received.
#[derive(Clone, Debug)]
pub struct MetaRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
}

/// How the fake metadata service answers.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The identity below.
    Ok,
    /// Never answers.
    Hang,
    /// Answers this status for the next `n` requests, then `Ok`.
    FailTimes(u16, usize),
    /// Waits until the gate opens, then answers.
    Gated,
    /// Azure only: answers this body instead of the attested document.
    AzureBody(&'static str),
}

pub const IMDS_TOKEN: &str = "imds-token-AQAEAbcdef==";
pub const AWS_SIGNATURE: &str =
    "aws-signature-MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwGggCSABIIB\n";
pub const AWS_DOCUMENT: &str = "{\n  \"instanceId\" : \"i-secret-document-0123\",\n  \"region\" : \"us-east-1\"\n}";
pub const AZURE_SIGNATURE: &str = "azure-signature-MIIKmgYJKoZIhvcNAQcCoIIKizCCCocCAQExDzANBgl";
pub const GOOGLE_JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJnb29nbGUtc2VjcmV0LWp3dCI6dHJ1ZX0.c2lnbmF0dXJl";

/// A fake AWS/Azure/Google metadata service (all three on one port).
#[derive(Clone)]
pub struct FakeMetadata {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<MetaRequest>>>,
    pub mode: Arc<Mutex<Mode>>,
    pub gate: watch::Sender<bool>,
}

impl FakeMetadata {
    pub async fn start() -> FakeMetadata {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let gate = watch::channel(false).0;
        let (r, m, g) = (requests.clone(), mode.clone(), gate.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let (requests, mode, gate) = (r.clone(), m.clone(), g.clone());
            async move {
                requests.lock().unwrap().push(MetaRequest {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or("").to_owned(),
                    headers: headers.clone(),
                });
                let current = mode.lock().unwrap().clone();
                match current {
                    Mode::Hang => std::future::pending::<()>().await,
                    Mode::FailTimes(status, n) => {
                        *mode.lock().unwrap() = if n > 1 {
                            Mode::FailTimes(status, n - 1)
                        } else {
                            Mode::Ok
                        };
                        return Response::builder()
                            .status(status)
                            .body(Body::from("metadata service is unwell"))
                            .unwrap();
                    }
                    Mode::Gated => {
                        let mut rx = gate.subscribe();
                        let _ = rx.wait_for(|open| *open).await;
                    }
                    Mode::AzureBody(body) if uri.path() == "/metadata/attested/document" => {
                        return Response::new(Body::from(body));
                    }
                    _ => {}
                }
                let body = match (method.as_str(), uri.path()) {
                    ("PUT", "/latest/api/token") => IMDS_TOKEN.to_owned(),
                    ("GET", "/latest/dynamic/instance-identity/signature") => AWS_SIGNATURE.to_owned(),
                    ("GET", "/latest/dynamic/instance-identity/document") => AWS_DOCUMENT.to_owned(),
                    ("GET", "/metadata/attested/document") => {
                        format!(r#"{{"encoding":"pkcs7","signature":"{AZURE_SIGNATURE}","extra":{{"ignored":true}}}}"#)
                    }
                    ("GET", p) if p.starts_with("/computeMetadata/v1/instance/service-accounts/") => {
                        GOOGLE_JWT.to_owned()
                    }
                    _ => return Response::builder().status(404).body(Body::from("not found")).unwrap(),
                };
                Response::new(Body::from(body))
            }
        });
        let addr = serve(app).await;
        FakeMetadata {
            addr,
            requests,
            mode,
            gate,
        }
    }

    pub fn url(&self) -> String {
        url(self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self) -> Vec<MetaRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        while self.requests.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Captures everything tracing writes (every level) into a string.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
