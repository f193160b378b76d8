//! A TCP proxy in front of the embedded coderd that turns the agent RPC
//! connection hostile a while after its upgrade, to watch an agent (the demo
//! agent, Go's agent) cope: REST requests pass through untouched.
//!
//! ```text
//! cargo run --example hostile_proxy -- --mode blackhole --after 2s
//! # prints CODER_AGENT_URL / CODER_AGENT_TOKEN for the agent; then, e.g.:
//! CODER_AGENT_URL=... CODER_AGENT_TOKEN=... cargo run --example agent -- --keepalive 2s --keepalive-timeout 1s
//! ```
//!
//! Modes (each starts `--after` the websocket upgrade, default 2s):
//! * `blackhole`: stop forwarding both ways, keep both sockets open (a
//!   black-holed path behind a load balancer);
//! * `reset`: close the agent's socket without a websocket Close;
//! * `garbage`: send a websocket binary message that is not yamux;
//! * `goaway`: send a yamux GoAway (protocol error, code 1);
//! * `text`: send a websocket text message.
//!
//! Server-to-agent bytes are forwarded whole websocket frames at a time, so
//! anything injected lands on a frame boundary.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use coder_agentsdk::server::EmbeddedServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Blackhole,
    Reset,
    Garbage,
    GoAway,
    Text,
}

const USAGE: &str = "usage: hostile_proxy --mode blackhole|reset|garbage|goaway|text [--after 2s] [--listen ADDR]";

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    s.strip_suffix('s')?.parse::<f64>().ok().map(Duration::from_secs_f64)
}

#[tokio::main]
async fn main() -> ExitCode {
    let (mut mode, mut after, mut listen) = (
        None,
        Duration::from_secs(2),
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--mode" => {
                mode = match value.as_str() {
                    "blackhole" => Some(Mode::Blackhole),
                    "reset" => Some(Mode::Reset),
                    "garbage" => Some(Mode::Garbage),
                    "goaway" => Some(Mode::GoAway),
                    "text" => Some(Mode::Text),
                    _ => None,
                }
            }
            "--after" => match parse_duration(&value) {
                Some(d) => after = d,
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--listen" => match value.parse() {
                Ok(a) => listen = a,
                Err(_) => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(mode) = mode else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let server = match EmbeddedServer::start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the embedded coderd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("bound");
    println!("CODER_AGENT_URL=http://{addr} CODER_AGENT_TOKEN={}", server.token());
    println!("mode {mode:?}, {after:?} after each RPC upgrade");
    let target = server.addr();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            accepted = listener.accept() => {
                let Ok((agent, _)) = accepted else { continue };
                tokio::spawn(proxy(agent, target, mode, after));
            }
        }
    }
}

/// The unmasked websocket frame a server sends: FIN + `opcode`, `payload`.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Length of the complete websocket frame at the start of `buf`, if all of it is there.
fn ws_frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let total = header + if masked { 4 } else { 0 } + len;
    (buf.len() >= total).then_some(total)
}

async fn proxy(mut agent: TcpStream, target: SocketAddr, mode: Mode, after: Duration) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    // The request head decides whether this is the RPC websocket.
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match agent.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    if server.write_all(&head).await.is_err() {
        return;
    }
    let rpc = String::from_utf8_lossy(&head).contains("/workspaceagents/me/rpc");
    if !rpc {
        let _ = tokio::io::copy_bidirectional(&mut agent, &mut server).await;
        return;
    }
    let (mut agent_rd, mut agent_wr) = agent.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut agent_rd, &mut server_wr).await;
    });
    // Server to agent: the HTTP response head as it comes, then whole frames.
    let mut buf = Vec::new();
    let mut upgraded = false;
    let hostile_at = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(hostile_at);
    loop {
        tokio::select! {
            n = server_rd.read(&mut chunk) => {
                let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                if !upgraded {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let rest = buf.split_off(end + 4);
                    if agent_wr.write_all(&buf).await.is_err() { break }
                    buf = rest;
                    upgraded = true;
                    hostile_at.as_mut().reset(tokio::time::Instant::now() + after);
                }
                while let Some(len) = ws_frame_len(&buf) {
                    let rest = buf.split_off(len);
                    if agent_wr.write_all(&buf).await.is_err() { return }
                    buf = rest;
                }
            }
            _ = &mut hostile_at, if upgraded => {
                eprintln!("turning hostile: {mode:?}");
                match mode {
                    Mode::Blackhole => {
                        upstream.abort();
                        // Keep both sockets open and silent.
                        let _keep = (agent_wr, server_rd);
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Mode::Reset => upstream.abort(),
                    Mode::Garbage => {
                        let _ = agent_wr.write_all(&ws_frame(2, b"this is not a yamux frame")).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Mode::GoAway => {
                        let go_away = [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                        let _ = agent_wr.write_all(&ws_frame(2, &go_away)).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Mode::Text => {
                        let _ = agent_wr.write_all(&ws_frame(1, b"hello")).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
                return;
            }
        }
    }
}
