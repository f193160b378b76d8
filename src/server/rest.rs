//! The REST endpoints of the embedded server (being written).

use super::ServerState;

/// State behind the REST endpoints.
#[derive(Debug, Default)]
pub struct RestState {}

pub(crate) fn routes() -> axum::Router<ServerState> {
    axum::Router::new()
}
