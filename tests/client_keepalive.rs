//! The client's yamux keepalive against an honest peer (the embedded
//! server, whose yamux answers pings): pings flow, answers are taken off the
//! wire without disturbing the session, and calls keep working.

use std::time::Duration;

use coder_agentsdk::rpc::prelude::*;
use coder_agentsdk::rpc::{CallExt, RpcOptions};
use coder_agentsdk::server::EmbeddedServer;
use coder_agentsdk::Client;

const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn idle_connection_with_fast_keepalive_stays_up_against_an_answering_peer() {
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::builder().start().await.unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .rpc_options(RpcOptions::default().keepalive(Duration::from_millis(20), Duration::from_millis(200)))
            .build()
            .unwrap();
        let (agent, _) = client.connect_rpc28().await.unwrap();
        // About 40 ping rounds, and several answer timeouts, of idling and calling.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            agent
                .get_manifest(Default::default())
                .with_deadline(Duration::from_secs(5))
                .await
                .unwrap();
        }
        assert_eq!(server.connections(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn default_deadline_of_a_connection_ends_a_hanging_call_and_frees_its_stream() {
    use coder_agentsdk::drpc::RpcError;
    use coder_agentsdk::rpc::agent::Agent28;
    use coder_agentsdk::server::Fault;
    tokio::time::timeout(GUARD, async {
        let server = EmbeddedServer::builder().start().await.unwrap();
        server.api().set_fault("GetManifest", Some(Fault::Hang));
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let conn = client.connect_rpc_with_role("agent").await.unwrap();
        let deadline = Duration::from_millis(200);
        let agent = Agent28::new(conn.with_default_deadline(deadline).transport());
        let err = agent.get_manifest(Default::default()).await.unwrap_err();
        assert!(
            matches!(err, RpcError::DeadlineExceeded { deadline: d } if d == deadline),
            "{err:?}"
        );
        // A per-call deadline earlier than the default wins.
        let short = Duration::from_millis(50);
        let err = agent
            .get_manifest(Default::default())
            .with_deadline(short)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::DeadlineExceeded { deadline: d } if d == short),
            "{err:?}"
        );
        // The expired calls' streams were reset: nothing open on either side,
        // and the connection still serves other calls.
        while conn.open_streams() != 0 || server.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        agent.get_service_banner(Default::default()).await.unwrap();
        // The default applies to this client only; a client without it is not cut.
        assert_eq!(conn.default_deadline(), None);
    })
    .await
    .unwrap();
}
