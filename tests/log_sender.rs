//! The log sender: Go's logs_internal_test cases against a test double of
//! the client (with tokio's paused clock), plus the real connection to the
//! embedded server.

use std::future::Future;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use coder_agentsdk::agent::{
    Log, LogDest, LogLevel, LogSender, LogSenderError, CONVERSION_FAILED_OUTPUT, FLUSH_INTERVAL, MAX_BYTES_PER_BATCH,
    MAX_BYTES_QUEUED, OVERHEAD_PER_LOG,
};
use coder_agentsdk::drpc::RpcError;
use coder_agentsdk::proto::agent;
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// A `BatchCreateLogs` double: records each request with the (virtual) time
/// it arrived, and answers as configured.
struct FakeDest {
    tx: mpsc::UnboundedSender<(Instant, agent::BatchCreateLogsRequest)>,
    answer: Mutex<Answer>,
}

#[derive(Clone)]
enum Answer {
    Ok,
    LimitExceeded,
    Fail(&'static str),
}

impl FakeDest {
    fn new(answer: Answer) -> (Self, mpsc::UnboundedReceiver<(Instant, agent::BatchCreateLogsRequest)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            FakeDest {
                tx,
                answer: Mutex::new(answer),
            },
            rx,
        )
    }
}

impl LogDest for FakeDest {
    fn upload_logs(
        &self,
        request: agent::BatchCreateLogsRequest,
    ) -> impl Future<Output = Result<agent::BatchCreateLogsResponse, RpcError>> + Send {
        let _ = self.tx.send((Instant::now(), request));
        let result = match self.answer.lock().unwrap().clone() {
            Answer::Ok => Ok(agent::BatchCreateLogsResponse::default()),
            Answer::LimitExceeded => Ok(agent::BatchCreateLogsResponse {
                log_limit_exceeded: true,
            }),
            Answer::Fail(text) => Err(RpcError::remote(text)),
        };
        std::future::ready(result)
    }
}

fn log(level: LogLevel, output: &str) -> Log {
    Log::new(level, output)
}

fn spawn_loop(sender: &LogSender, dest: std::sync::Arc<FakeDest>) -> tokio::task::JoinHandle<LogSenderError> {
    let sender = sender.clone();
    tokio::spawn(async move {
        match sender.send_loop(&*dest).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    })
}

#[tokio::test(start_paused = true)]
async fn two_sources_are_flushed_together() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let dest = std::sync::Arc::new(dest);
    let (src1, src2) = (Uuid::new_v4(), Uuid::new_v4());
    let hello = log(LogLevel::Info, "hello");
    sender.enqueue(src1, [hello.clone(), log(LogLevel::Warn, "world")]);
    sender.enqueue(src2, [log(LogLevel::Error, "goodbye")]);
    sender.flush(src1);
    sender.flush(src2);
    let task = spawn_loop(&sender, dest.clone());

    let (t1, first) = rx.recv().await.unwrap();
    let (t2, second) = rx.recv().await.unwrap();
    assert_eq!(first.log_source_id, src1.as_bytes().to_vec());
    assert_eq!(second.log_source_id, src2.as_bytes().to_vec());
    assert_eq!(t1, t2, "both sources go out without waiting");
    let outputs: Vec<_> = first.logs.iter().map(|l| (l.output.as_str(), l.level)).collect();
    assert_eq!(outputs, [("hello", 3), ("world", 4)]);
    assert_eq!(second.logs[0].level, agent::log::Level::Error as i32);
    let ts = first.logs[0].created_at.unwrap();
    assert_eq!(ts.seconds, hello.created_at.timestamp());
    assert_eq!(ts.nanos as u32, hello.created_at.timestamp_subsec_nanos());
    sender.wait_until_empty().await;
    assert!(sender.is_empty());
    assert_eq!(sender.queued_bytes(), 0);

    // A later log to a fully sent source is a new queue, sent at once.
    sender.enqueue(src1, [log(LogLevel::Debug, "again")]);
    let (t3, third) = rx.recv().await.unwrap();
    assert_eq!(third.logs[0].output, "again");
    assert_eq!(t3, t2);

    // Enqueue still works after the loop stops, and the next loop sends it.
    task.abort();
    let _ = task.await;
    sender.enqueue(src2, [log(LogLevel::Trace, "after")]);
    assert_eq!(sender.queued_logs(), 1);
    let task = spawn_loop(&sender, dest);
    let (_, fourth) = rx.recv().await.unwrap();
    assert_eq!(fourth.logs[0].output, "after");
    assert_eq!(fourth.logs[0].level, agent::log::Level::Trace as i32);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn sixty_thousand_one_byte_logs_go_in_two_requests() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let src = Uuid::new_v4();
    sender.enqueue(src, (0..60_000).map(|_| log(LogLevel::Info, "a")));
    sender.flush(src);
    let task = spawn_loop(&sender, std::sync::Arc::new(dest));
    let (t1, first) = rx.recv().await.unwrap();
    let (t2, second) = rx.recv().await.unwrap();
    sender.wait_until_empty().await;
    task.abort();

    assert_eq!(first.logs.len(), MAX_BYTES_PER_BATCH / (1 + OVERHEAD_PER_LOG));
    assert_eq!(first.logs.len() + second.logs.len(), 60_000);
    for req in [&first, &second] {
        assert!(req.encoded_len() < MAX_BYTES_PER_BATCH, "{} bytes", req.encoded_len());
    }
    // The rest of a partly sent source waits for the flush interval (virtual time).
    assert!(t2.duration_since(t1) >= FLUSH_INTERVAL);
    assert!(rx.try_recv().is_err(), "exactly two requests");
}

#[tokio::test(start_paused = true)]
async fn flush_sends_the_rest_of_a_partly_sent_source_at_once() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let src = Uuid::new_v4();
    sender.enqueue(src, (0..50_000).map(|_| log(LogLevel::Info, "a")));
    let task = spawn_loop(&sender, std::sync::Arc::new(dest));
    let (t1, _) = rx.recv().await.unwrap();
    sender.flush(src);
    let (t2, _) = rx.recv().await.unwrap();
    task.abort();
    assert_eq!(t1, t2);
}

#[tokio::test(start_paused = true)]
async fn four_quarter_mebibyte_logs_fill_the_queue_and_a_second_source_still_queues_one() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let (src1, src2) = (Uuid::new_v4(), Uuid::new_v4());
    let big = "a".repeat(262_144);
    sender.enqueue(src1, (0..4).map(|_| log(LogLevel::Info, &big)));
    assert_eq!(sender.queued_bytes(), MAX_BYTES_QUEUED);
    // Not over the limit yet (the check is strict), so this one is queued...
    sender.enqueue(src2, [log(LogLevel::Info, "b")]);
    assert_eq!(sender.queued_logs(), 5);
    // ...and now the queue is over, so this is dropped.
    sender.enqueue(src2, [log(LogLevel::Info, "c")]);
    assert_eq!(sender.queued_logs(), 5);
    assert_eq!(sender.queued_bytes(), MAX_BYTES_QUEUED + 1);

    sender.flush(src1);
    sender.flush(src2);
    let task = spawn_loop(&sender, std::sync::Arc::new(dest));
    let mut reqs = Vec::new();
    for _ in 0..3 {
        reqs.push(rx.recv().await.unwrap().1);
    }
    sender.wait_until_empty().await;
    task.abort();
    let shape: Vec<_> = reqs
        .iter()
        .map(|r| (Uuid::from_slice(&r.log_source_id).unwrap(), r.logs.len()))
        .collect();
    // Source 1 is split in two by the overhead; source 2, never sent, goes before its rest.
    assert_eq!(shape, [(src1, 3), (src2, 1), (src1, 1)]);
    assert!(rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_log_too_large_for_a_batch_is_dropped() {
    let sender = LogSender::new();
    let src = Uuid::new_v4();
    sender.enqueue(src, [log(LogLevel::Info, &"a".repeat(MAX_BYTES_PER_BATCH - 1))]);
    assert!(sender.is_empty());
    // The largest log that fits a batch with its overhead is kept.
    sender.enqueue(
        src,
        [log(LogLevel::Info, &"a".repeat(MAX_BYTES_PER_BATCH - OVERHEAD_PER_LOG))],
    );
    assert_eq!(sender.queued_logs(), 1);
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let task = spawn_loop(&sender, std::sync::Arc::new(dest));
    let (_, req) = rx.recv().await.unwrap();
    assert_eq!(req.logs.len(), 1);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn log_limit_exceeded_drops_everything_and_stops_for_good() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::LimitExceeded);
    let dest = std::sync::Arc::new(dest);
    let (src1, src2) = (Uuid::new_v4(), Uuid::new_v4());
    sender.enqueue(src1, [log(LogLevel::Info, "one")]);
    sender.enqueue(src2, [log(LogLevel::Info, "two")]);
    let err = spawn_loop(&sender, dest.clone()).await.unwrap();
    assert!(matches!(err, LogSenderError::LogLimitExceeded), "{err:?}");
    assert_eq!(err.to_string(), "Log limit exceeded");
    assert!(sender.log_limit_exceeded());
    // The queues were dropped, so waiting returns at once.
    sender.wait_until_empty().await;
    assert_eq!(sender.queued_logs(), 0);
    // Later logs are ignored.
    sender.enqueue(src1, [log(LogLevel::Info, "three")]);
    assert!(sender.is_empty());
    // A new loop returns the error at once, without calling the server.
    let err = spawn_loop(&sender, dest).await.unwrap();
    assert!(matches!(err, LogSenderError::LogLimitExceeded));
    assert!(rx.recv().await.is_some());
    assert!(rx.try_recv().is_err(), "one request only");
}

#[tokio::test(start_paused = true)]
async fn a_send_error_is_returned_and_the_logs_stay_queued() {
    let sender = LogSender::new();
    let (failing, _rx) = FakeDest::new(Answer::Fail("connection reset"));
    let src = Uuid::new_v4();
    sender.enqueue(src, [log(LogLevel::Info, "kept"), log(LogLevel::Warn, "also kept")]);
    let err = spawn_loop(&sender, std::sync::Arc::new(failing)).await.unwrap();
    match &err {
        LogSenderError::Upload(RpcError::Remote { message, .. }) => assert_eq!(message, "connection reset"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.to_string(), "failed to upload logs: connection reset");
    assert_eq!(sender.queued_logs(), 2);

    let (good, mut rx) = FakeDest::new(Answer::Ok);
    let task = spawn_loop(&sender, std::sync::Arc::new(good));
    let (_, req) = rx.recv().await.unwrap();
    let outputs: Vec<_> = req.logs.iter().map(|l| l.output.as_str()).collect();
    assert_eq!(outputs, ["kept", "also kept"]);
    sender.wait_until_empty().await;
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn wait_until_empty_does_not_return_while_logs_are_queued() {
    let sender = LogSender::new();
    sender.enqueue(Uuid::new_v4(), [log(LogLevel::Info, "stuck")]);
    let waited = tokio::time::timeout(Duration::from_secs(5), sender.wait_until_empty()).await;
    assert!(waited.is_err());
    // With nothing queued it returns at once.
    LogSender::new().wait_until_empty().await;
}

#[tokio::test(start_paused = true)]
async fn output_is_cleaned_and_unknown_levels_become_an_error_log() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let src = Uuid::new_v4();
    sender.enqueue(
        src,
        [
            Log::from_bytes(LogLevel::Info, b"Hello, world!\xc3\x28"),
            log(LogLevel::Info, "nul\0byte"),
            Log::from_bytes(LogLevel::Info, b"run\xff\xfe\xfdof bad\0"),
            log(LogLevel::Other("fatal".into()), "boom"),
            log(LogLevel::Info, ""),
        ],
    );
    let task = spawn_loop(&sender, std::sync::Arc::new(dest));
    let (_, req) = rx.recv().await.unwrap();
    task.abort();
    let outputs: Vec<_> = req.logs.iter().map(|l| l.output.as_str()).collect();
    assert_eq!(
        outputs,
        [
            "Hello, world!❌(",
            "nul❌byte",
            "run❌of bad❌",
            CONVERSION_FAILED_OUTPUT,
            ""
        ]
    );
    assert_eq!(req.logs[3].level, agent::log::Level::Error as i32);
}

#[test]
fn the_line_writer_splits_lines_and_keeps_partial_ones() {
    let sender = LogSender::new();
    let src = Uuid::new_v4();
    let mut w = sender.writer(src, LogLevel::Warn);
    Write::write_all(&mut w, b"first\r\nsec").unwrap();
    Write::write_all(&mut w, b"ond\n\nthird\r\r\n\xffpart").unwrap();
    Write::flush(&mut w).unwrap();
    assert_eq!(sender.queued_logs(), 4, "a partial line waits for close");
    w.close();
    assert_eq!(sender.queued_logs(), 5);
    assert!(Write::write_all(&mut w, b"late").is_err());
    w.close();
    assert_eq!(sender.queued_logs(), 5);

    // Dropping a writer sends its partial line too; an empty one sends nothing.
    let mut w2 = sender.writer(src, LogLevel::Info);
    Write::write_all(&mut w2, b"dropped partial").unwrap();
    drop(w2);
    drop(sender.writer(src, LogLevel::Info));
    assert_eq!(sender.queued_logs(), 6);
}

#[tokio::test(start_paused = true)]
async fn the_line_writer_output_reaches_the_server_and_shutdown_sends_the_partial_line() {
    let sender = LogSender::new();
    let (dest, mut rx) = FakeDest::new(Answer::Ok);
    let logger = sender.script_logger(Uuid::new_v4());
    let mut w = logger.writer(LogLevel::Debug);
    AsyncWriteExt::write_all(&mut w, b"one\r\ntwo\nthree\r\r\n\n")
        .await
        .unwrap();
    AsyncWriteExt::write_all(&mut w, b"\xc3\x28 tail").await.unwrap();
    AsyncWriteExt::shutdown(&mut w).await.unwrap();
    logger.send([log(LogLevel::Info, "via logger")]);
    logger.flush();
    let task = spawn_loop(&sender, std::sync::Arc::new(dest));
    let (_, req) = rx.recv().await.unwrap();
    task.abort();
    assert_eq!(req.log_source_id, logger.source_id().as_bytes().to_vec());
    let lines: Vec<_> = req.logs.iter().map(|l| (l.output.as_str(), l.level)).collect();
    assert_eq!(
        lines,
        [
            ("one", 2),
            ("two", 2),
            ("three\r", 2),
            ("", 2),
            ("❌( tail", 2),
            ("via logger", 3)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn enqueue_with_no_logs_and_flush_of_unknown_source_do_nothing() {
    let sender = LogSender::new();
    sender.enqueue(Uuid::new_v4(), std::iter::empty());
    sender.flush(Uuid::new_v4());
    assert!(sender.is_empty());
    assert!(!sender.log_limit_exceeded());
}

mod embedded {
    //! The same sender over the real connection: websocket → yamux → DRPC.

    use super::*;
    use coder_agentsdk::server::{EmbeddedServer, Fault, Recorded};
    use coder_agentsdk::Client;

    const GUARD: Duration = Duration::from_secs(20);

    async fn connect() -> (EmbeddedServer, coder_agentsdk::rpc::agent::Agent28) {
        let server = EmbeddedServer::start().await.unwrap();
        let client = Client::builder(server.url().as_str())
            .token(server.token())
            .build()
            .unwrap();
        let (agent, _tailnet) = client.connect_rpc28().await.unwrap();
        (server, agent)
    }

    fn recorded_logs(server: &EmbeddedServer) -> Vec<(Uuid, Vec<String>)> {
        server
            .api()
            .recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::Logs { source, logs } => Some((
                    Uuid::from_slice(&source).unwrap(),
                    logs.into_iter().map(|l| l.output).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn logs_reach_the_embedded_server() {
        tokio::time::timeout(GUARD, async {
            let (server, agent) = connect().await;
            let sender = LogSender::new();
            let (src1, src2) = (Uuid::new_v4(), Uuid::new_v4());
            sender.enqueue(src1, [log(LogLevel::Info, "hello"), log(LogLevel::Info, "world")]);
            sender.enqueue(src2, [log(LogLevel::Error, "bad\0news")]);
            let loop_sender = sender.clone();
            let task = tokio::spawn(async move { loop_sender.send_loop(&agent).await });
            sender.wait_until_empty().await;
            task.abort();
            assert_eq!(
                recorded_logs(&server),
                [
                    (src1, vec!["hello".to_owned(), "world".to_owned()]),
                    (src2, vec!["bad❌news".to_owned()])
                ]
            );
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn the_embedded_server_limit_and_faults_come_back_typed() {
        tokio::time::timeout(GUARD, async {
            let (server, agent) = connect().await;
            let sender = LogSender::new();
            let src = Uuid::new_v4();
            sender.enqueue(src, [log(LogLevel::Info, "kept")]);

            server.api().set_fault(
                "BatchCreateLogs",
                Some(Fault::Error {
                    code: 0,
                    message: "database is down".into(),
                }),
            );
            let err = sender.send_loop(&agent).await.unwrap_err();
            assert_eq!(err.to_string(), "failed to upload logs: database is down");
            assert_eq!(sender.queued_logs(), 1);

            server.api().set_fault("BatchCreateLogs", None);
            let loop_sender = sender.clone();
            let loop_agent = agent.clone();
            let task = tokio::spawn(async move { loop_sender.send_loop(&loop_agent).await });
            sender.wait_until_empty().await;
            task.abort();
            assert_eq!(recorded_logs(&server), [(src, vec!["kept".to_owned()])]);

            server.api().set_log_limit_exceeded(true);
            sender.enqueue(src, [log(LogLevel::Info, "too many")]);
            let err = sender.send_loop(&agent).await.unwrap_err();
            assert!(matches!(err, LogSenderError::LogLimitExceeded));
            assert!(sender.is_empty());
        })
        .await
        .unwrap();
    }
}
