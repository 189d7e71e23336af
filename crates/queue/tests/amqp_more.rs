//! Retries, dead letters and reconnection on the real broker.

use depot_core::queue::{Message, MessageConsumer, MessagePublisher, QueueHealth};
use depot_queue::LapinQueue;
use std::time::{Duration, Instant};
use tokio::time::timeout;

fn url() -> String {
    std::env::var("DEPOT_TEST_AMQP_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn queue() -> LapinQueue {
    let prefix = format!("depot-test-{}.", uuid::Uuid::new_v4().simple());
    LapinQueue::connect(&url(), prefix)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {} is unreachable: {e}", url()))
}

#[tokio::test]
async fn retry_later_comes_back_after_the_delay_with_the_attempt_counted() {
    let q = queue().await;
    q.publish("jobs", Message::new("again")).await.unwrap();
    let mut sub = q.subscribe("jobs", 2).await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.attempt(), 1);
    let started = Instant::now();
    d.retry_later(Duration::from_millis(300)).await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(d.attempt(), 2);
    assert_eq!(d.message().body, b"again");
    d.ack().await.unwrap();
    q.delete_queue("jobs").await.unwrap();
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered() {
    let q = queue().await;
    q.publish("jobs", Message::new("poison")).await.unwrap();
    let mut sub = q.subscribe("jobs", 2).await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    d.nack(false).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.dead_letters("jobs").await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q.dead_letters("jobs").await.unwrap(), 1);
    q.delete_queue("jobs").await.unwrap();
}

#[tokio::test]
async fn publishing_reconnects_after_the_connection_is_lost() {
    let q = queue().await;
    q.publish("jobs", Message::new("before")).await.unwrap();
    // The broker closes our connection (as on a broker restart).
    q.close().await;
    q.check().await.expect("check reconnects");
    q.publish("jobs", Message::new("after")).await.unwrap();
    let mut sub = q.subscribe("jobs", 5).await.unwrap();
    for expected in [&b"before"[..], b"after"] {
        let d = timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.message().body, expected);
        d.ack().await.unwrap();
    }
    q.delete_queue("jobs").await.unwrap();
}
