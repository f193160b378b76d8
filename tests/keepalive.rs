//! coderd pings every agent websocket and drops agents that stop answering;
//! the embedded server does the same, and our client answers.

use std::time::Duration;

use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const GUARD: Duration = Duration::from_secs(20);

async fn server() -> EmbeddedServer {
    EmbeddedServer::builder()
        .websocket_keepalive(Some((Duration::from_millis(20), Duration::from_millis(300))))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn idle_client_answers_server_pings_and_stays_connected() {
    tokio::time::timeout(GUARD, async {
        let server = server().await;
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let (agent, _) = client.connect_rpc28().await.unwrap();
        // Many ping intervals and more than one pong timeout of idling.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(server.connections(), 1);
        agent.get_manifest(Default::default()).await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn peer_that_never_answers_pings_is_dropped() {
    tokio::time::timeout(GUARD, async {
        let server = server().await;
        let url = format!("ws://{}/api/v2/workspaceagents/me/rpc?version=2.8", server.addr());
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Coder-Session-Token", server.token().parse().unwrap());
        // Upgraded, then never read: tungstenite only answers pings while it is polled.
        let (_silent, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        while server.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while server.connections() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn only_agent_roles_are_monitored_as_in_coderd() {
    tokio::time::timeout(GUARD, async {
        let server = server().await;
        let url = format!(
            "ws://{}/api/v2/workspaceagents/me/rpc?role=logstream-kube&version=2.8",
            server.addr()
        );
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Coder-Session-Token", server.token().parse().unwrap());
        let (_silent, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        while server.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Well past the pong timeout: a non-agent role is not pinged, so not dropped.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let info = server.connection_info();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].role, "logstream-kube");
        assert_eq!(info[0].version, coder_agentsdk::drpc::ApiVersion::new(2, 8));
    })
    .await
    .unwrap();
}
