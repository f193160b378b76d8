//! Serves the embedded coderd until killed, so that other agents (Coder's Go
//! agent SDK, say) can be pointed at it.
//!
//! ```text
//! cargo run --example server -- --listen 127.0.0.1:3000 --token 5f3c...
//! ```
//!
//! Options: `--listen ADDR` (default 127.0.0.1:0), `--token TOKEN` (default: a
//! random UUID, printed), `--max-version MAJOR.MINOR` (default: the newest),
//! and the limits that protect it from hostile or slow peers:
//! `--max-connections N`, `--max-streams N` (per RPC connection),
//! `--handshake-timeout SECS`, `--first-stream-timeout SECS` and
//! `--record-limit N` (reports kept per recording; older ones are dropped and
//! counted, so a long run keeps nothing per call).
//! Also `--tokens-file FILE` (more agent tokens, one per line, each a distinct
//! agent, as `examples/fleet.rs --server-process` uses), `--keep-history
//! false` (keep per-agent counters only, for long runs with many agents).
//!
//! TLS: `--tls-cert FILE --tls-key FILE` (PEM: the certificate chain, leaf
//! first, and its private key) serves `https://` and `wss://`. Or
//! `--tls-self-signed DIR`: a demo CA and a server certificate for
//! `localhost`, `127.0.0.1` and `::1` (and the listening IP), written to (or,
//! when there, read from) `DIR/ca.pem`, `DIR/server.pem` and
//! `DIR/server-key.pem`; give `DIR/ca.pem` to the agent (`--ca-file` or
//! `SSL_CERT_FILE`):
//!
//! ```text
//! cargo run --example server -- --tls-self-signed /tmp/coder-tls --listen 127.0.0.1:3443 --token t0k3n
//! CODER_AGENT_URL=https://localhost:3443 CODER_AGENT_TOKEN=t0k3n cargo run --example agent -- --ca-file /tmp/coder-tls/ca.pem
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use coder_agentsdk::drpc::ApiVersion;
use coder_agentsdk::server::EmbeddedServer;

fn usage() -> ExitCode {
    eprintln!(
        "usage: server [--listen ADDR] [--token TOKEN] [--max-version MAJOR.MINOR] [--max-connections N]
              [--max-streams N] [--handshake-timeout SECS] [--first-stream-timeout SECS] [--record-limit N]
              [--tokens-file FILE] [--keep-history true|false]
              [--tls-cert FILE --tls-key FILE | --tls-self-signed DIR]"
    );
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut builder = EmbeddedServer::builder();
    let (mut tls_cert, mut tls_key, mut self_signed) = (None, None, None);
    let mut listen_ip = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { return usage() };
        builder = match flag.as_str() {
            "--tls-cert" => {
                tls_cert = Some(value);
                builder
            }
            "--tls-key" => {
                tls_key = Some(value);
                builder
            }
            "--tls-self-signed" => {
                self_signed = Some(std::path::PathBuf::from(value));
                builder
            }
            "--listen" => match value.parse::<SocketAddr>() {
                Ok(addr) => {
                    listen_ip = Some(addr.ip());
                    builder.listen(addr)
                }
                Err(e) => {
                    eprintln!("--listen {value}: {e}");
                    return usage();
                }
            },
            "--token" => builder.token(value),
            "--max-connections" | "--max-streams" | "--record-limit" => {
                let Ok(n) = value.parse::<usize>() else {
                    eprintln!("{flag} {value}: not a number");
                    return usage();
                };
                match flag.as_str() {
                    "--max-connections" => builder.max_connections(n),
                    "--max-streams" => builder.max_streams_per_connection(n),
                    _ => builder.record_limit(n),
                }
            }
            "--handshake-timeout" | "--first-stream-timeout" => {
                let Ok(secs) = value.parse::<f64>() else {
                    eprintln!("{flag} {value}: not a number of seconds");
                    return usage();
                };
                let Ok(timeout) = std::time::Duration::try_from_secs_f64(secs) else {
                    eprintln!("{flag} {value}: not a valid duration");
                    return usage();
                };
                if flag == "--handshake-timeout" {
                    builder.handshake_timeout(timeout)
                } else {
                    builder.first_stream_timeout(timeout)
                }
            }
            "--tokens-file" => match std::fs::read_to_string(&value) {
                Ok(text) => builder.tokens(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                ),
                Err(e) => {
                    eprintln!("--tokens-file {value}: {e}");
                    return usage();
                }
            },
            "--keep-history" => match value.as_str() {
                "true" => builder.keep_history(true),
                "false" => builder.keep_history(false),
                _ => return usage(),
            },
            "--max-version" => match value.parse::<ApiVersion>() {
                Ok(v) => builder.max_version(v),
                Err(e) => {
                    eprintln!("--max-version: {e}");
                    return usage();
                }
            },
            _ => return usage(),
        };
    }
    let ca_hint = self_signed.as_ref().map(|dir| dir.join("ca.pem"));
    let pem_files = match (tls_cert, tls_key, self_signed) {
        (None, None, None) => None,
        (Some(cert), Some(key), None) => Some((cert.into(), key.into())),
        (None, None, Some(dir)) => match demo_certificates(&dir, listen_ip) {
            Ok(files) => Some(files),
            Err(e) => {
                eprintln!("--tls-self-signed {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("give --tls-cert and --tls-key together, or --tls-self-signed alone");
            return usage();
        }
    };
    if let Some((cert, key)) = pem_files {
        let read = |path: &std::path::PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        match (read(&cert), read(&key)) {
            (Ok(cert), Ok(key)) => builder = builder.tls_pem(&cert, &key),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("coderd (embedded) listening on {}", server.url());
    println!("agent token: {}", server.token());
    let ca_flag = match &ca_hint {
        Some(ca) => format!(" -- --ca-file {}", ca.display()),
        None if server.url().scheme() == "https" => " -- --ca-file CA.pem".to_owned(),
        None => String::new(),
    };
    println!(
        "try: CODER_AGENT_URL={} CODER_AGENT_TOKEN={} cargo run --example agent{ca_flag}",
        server.url(),
        server.token()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("waiting for Ctrl-C failed: {e}");
    }
    println!("stopping");
    ExitCode::SUCCESS
}

/// The demo CA and server certificate in `dir`, made on first use: returns
/// the paths of the server's certificate chain and key.
fn demo_certificates(
    dir: &std::path::Path,
    listen_ip: Option<std::net::IpAddr>,
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server-key.pem"));
    if ca_path.exists() && cert_path.exists() && key_path.exists() {
        println!("using the demo CA in {}", ca_path.display());
        return Ok((cert_path, key_path));
    }
    let fail = |e: rcgen::Error| e.to_string();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "coder-agentsdk demo CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
    let ca = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(ip) = listen_ip.filter(|ip| !ip.is_unspecified()) {
        names.push(ip.to_string());
    }
    names.dedup();
    let mut params = CertificateParams::new(names).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca).map_err(fail)?;

    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let write = |path: &std::path::Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&ca_path, ca_cert.pem())?;
    // The chain the server presents: its certificate, then the CA's.
    write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    write(&key_path, key.serialize_pem())?;
    println!(
        "wrote a demo CA to {} (trust it with --ca-file or SSL_CERT_FILE)",
        ca_path.display()
    );
    Ok((cert_path, key_path))
}
