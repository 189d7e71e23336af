//! The lapin adapter against a real RabbitMQ. Uses DEPOT_TEST_AMQP_URL, or the local broker;
//! an unreachable broker fails the test (it never silently passes).

use depot_core::queue::{Message, MessageConsumer, MessagePublisher, QueueHealth};
use depot_queue::LapinQueue;
use std::time::Duration;
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
