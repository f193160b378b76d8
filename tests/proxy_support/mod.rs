//! An HTTP proxy for tests, on loopback: `CONNECT host:port` tunnels and
//! absolute-form requests (`GET http://host/...`), as a corporate proxy
//! serves them. It alone knows where its fake host names live, so a call
//! that reaches the server through a fake name went through it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Authorities of `CONNECT` requests, in order.
    pub tunnels: Vec<String>,
    /// Request lines of absolute-form (forwarded) requests.
    pub forwarded: Vec<String>,
    /// Requests refused with 407.
    pub refused: usize,
    /// `Proxy-Authorization` values received.
    pub auth: Vec<String>,
}

pub struct TestProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    /// Starts a proxy mapping each `(host name, address)`; with
    /// `credentials` (the `Proxy-Authorization` value it wants), it answers
    /// 407 to anything else.
    pub async fn start(hosts: &[(&str, SocketAddr)], credentials: Option<String>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let hosts: Arc<HashMap<String, SocketAddr>> =
            Arc::new(hosts.iter().map(|(h, a)| (h.to_string(), *a)).collect());
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(serve(conn, hosts.clone(), credentials.clone(), seen.clone()));
                }
            }
        });
        TestProxy { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut conn: TcpStream,
    hosts: Arc<HashMap<String, SocketAddr>>,
    credentials: Option<String>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        match conn.read(&mut byte).await {
            Ok(1) if head.len() < 64 * 1024 => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or_default().to_owned();
    let auth = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    if let Some(a) = &auth {
        seen.lock().unwrap().auth.push(a.clone());
    }
    if credentials.is_some() && auth != credentials {
        seen.lock().unwrap().refused += 1;
        let _ = conn
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    }
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (authority, connect) = if method == "CONNECT" {
        (target.to_owned(), true)
    } else {
        let rest = target.strip_prefix("http://").unwrap_or_default();
        (rest.split('/').next().unwrap_or_default().to_owned(), false)
    };
    let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(&authority);
    let Some(&to) = hosts.get(host) else {
        let _ = conn
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        return;
    };
    if connect {
        seen.lock().unwrap().tunnels.push(authority.clone());
        if conn
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else {
        seen.lock().unwrap().forwarded.push(request_line.clone());
        if upstream.write_all(&head).await.is_err() {
            return;
        }
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
}
