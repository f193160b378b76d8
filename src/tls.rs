//! One rustls crypto provider for the whole process.
//!
//! tokio-tungstenite and reqwest (both with rustls but without a default
//! provider) panic on the first TLS handshake unless a process-wide provider
//! is installed; we install ring's once, before any connection is made.

use std::sync::Once;

/// Installs ring as rustls' process default, unless one is already set.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another library (or the application) may have installed one first: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
