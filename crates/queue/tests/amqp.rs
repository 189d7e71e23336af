//! The lapin adapter against a real RabbitMQ: confirms, acks, redelivery, retries, dead letters
//! and reconnection. Uses DEPOT_TEST_AMQP_URL, or the local broker; an unreachable broker fails
//! the test (it never silently passes).

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
async fn publishes_with_confirms_and_consumes_with_acks() {
    let q = queue().await;
    q.check().await.unwrap();
    q.publish(
        "jobs",
        Message::new("one").with_header("traceparent", "00-abc-def-01"),
    )
    .await
    .unwrap();
    q.publish("jobs", Message::new("two")).await.unwrap();
    let mut sub = q.subscribe("jobs", 5).await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message().body, b"one");
    assert_eq!(d.message().headers["traceparent"], "00-abc-def-01");
    assert_eq!(d.attempt(), 1);
    d.ack().await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message().body, b"two");
    // A negative acknowledgement with requeue brings it back, marked as a redelivery.
    d.nack(true).await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message().body, b"two");
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
    q.delete_queue("jobs").await.unwrap();
    q.close().await;
}

#[tokio::test]
async fn unsettled_deliveries_return_when_the_consumer_goes_away() {
    let q = queue().await;
    q.publish("jobs", Message::new("survivor")).await.unwrap();
    {
        let other = LapinQueue::connect(&url(), q_prefix(&q)).await.unwrap();
        let mut sub = other.subscribe("jobs", 1).await.unwrap();
        let d = timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.message().body, b"survivor");
        // The consumer "crashes": its connection closes without an ack.
        std::mem::forget(d);
        other.close().await;
    }
    let mut sub = q.subscribe("jobs", 1).await.unwrap();
    let d = timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message().body, b"survivor");
    assert!(d.attempt() >= 2);
    d.ack().await.unwrap();
    q.delete_queue("jobs").await.unwrap();
    q.close().await;
}

fn q_prefix(q: &LapinQueue) -> String {
    q.prefix().to_owned()
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
