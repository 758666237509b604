// SPDX-License-Identifier: GPL-2.0

//! The `tokio_async` example as a test: asynchronous sends driven by
//! tokio's `AsyncFd` over the sender's descriptor, on the fallback.

#[path = "../examples/tokio_async.rs"]
#[allow(dead_code)]
mod example;

#[tokio::test(flavor = "current_thread")]
async fn tokio_drives_asynchronous_sends() {
    let sender = mdwrite::Sender::open_fallback().unwrap();
    // More calls than pieces: every piece goes round many times, each
    // time back through a completion that readiness announced.
    let bytes = example::run(sender, 300).await.unwrap();
    assert_eq!(bytes, 300 * 4 * 1000);
}
