// SPDX-License-Identifier: GPL-2.0

//! Asynchronous sends driven from tokio: the sender's descriptor in an
//! `AsyncFd`, a registered buffer cut into pieces that go in flight and
//! come back with their completions.
//!
//! ```text
//! cargo run -p mdwrite --example tokio_async [CALLS]
//! ```
//!
//! It sends CALLS calls (default 64) of 4 packets each to a UDP receiver on
//! 127.0.0.1 in the same runtime, at most 8 calls in flight (one buffer
//! piece each), and checks that the receiver got every byte in order. With
//! the module loaded (and root) it uses the module; otherwise the fallback.

use std::{io, time::Duration};

use mdwrite::{AsyncEntry, Completion, DestConfig, RegisteredBuffer, Sender, WriteOptions};
use tokio::{
    io::{unix::AsyncFd, Interest},
    net::UdpSocket,
};

/// Payload bytes per packet.
const PAYLOAD: usize = 1000;
/// Packets per call.
const PACKETS: usize = 4;
/// Buffer pieces, so calls in flight at most.
const PIECES: usize = 8;

/// The bytes of call `k`: its number in every byte, so that order shows.
fn fill(piece: &mut [u8], k: usize) {
    piece.fill(k as u8);
}

/// Waits until the sender's descriptor is readable and takes every ready
/// completion; returns them.
async fn completions(fd: &mut AsyncFd<Sender>) -> io::Result<Vec<Completion>> {
    loop {
        let mut guard = fd.readable_mut().await?;
        let mut done = Vec::new();
        let n = guard.get_inner_mut().try_completions(&mut done)?;
        if n == 0 {
            // Nothing more: wait for the next readiness edge.
            guard.clear_ready();
            continue;
        }
        return Ok(done);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let calls: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("CALLS: {e}")))?,
        None => 64,
    };
    let sender = Sender::open()?;
    println!("backend: {}", sender.backend());
    let bytes = run(sender, calls).await?;
    println!("{calls} calls, {bytes} bytes received in order");
    Ok(())
}

/// Sends `calls` calls through `sender` to a receiver of its own and
/// checks what arrived; returns the bytes received.
pub async fn run(mut sender: Sender, calls: usize) -> io::Result<usize> {
    let receiver = UdpSocket::bind("127.0.0.1:0").await?;
    let dest = DestConfig::route(receiver.local_addr()?, None)?;
    let dest = dest.clone().with_packet_size(dest.packet_size_for(PAYLOAD));
    let dest = sender.add_destination(&dest)?;

    // One buffer, one piece per call in flight.
    let buf = sender.register_buffer(PIECES * PACKETS * PAYLOAD)?;
    let mut free: Vec<RegisteredBuffer> = buf.into_chunks(PACKETS * PAYLOAD);
    // SAFETY: a sender's descriptor is open, and the same one, for the
    // sender's whole life (see `impl AsFd for Sender`), and the `AsyncFd`
    // owns the sender.
    let mut fd = unsafe { AsyncFd::register_with_interest(sender, Interest::READABLE) }
        .map_err(io::Error::from)?;

    let recv = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut d = vec![0u8; 2048];
        while got.len() < calls * PACKETS * PAYLOAD {
            let n = tokio::time::timeout(Duration::from_secs(10), receiver.recv(&mut d))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "receiver timed out"))??;
            got.extend_from_slice(&d[..n]);
        }
        Ok::<_, io::Error>(got)
    });

    let entry = [AsyncEntry::new(dest, 0, 0..PACKETS * PAYLOAD)];
    let mut in_flight = 0;
    for k in 0..calls {
        if free.is_empty() {
            for c in completions(&mut fd).await? {
                in_flight -= 1;
                if let Some((e, i)) = c.error {
                    return Err(io::Error::other(format!(
                        "call {} entry {i}: {e}",
                        c.cookie
                    )));
                }
                free.extend(c.buffers);
            }
        }
        let mut piece = free.pop().expect("a piece is free after a completion");
        fill(&mut piece, k);
        fd.get_mut()
            .send_async(vec![piece], &entry, &WriteOptions::default(), k as u64)?;
        in_flight += 1;
        // The receiver runs on this thread too: let it drain its socket.
        tokio::task::yield_now().await;
    }
    while in_flight > 0 {
        in_flight -= completions(&mut fd).await?.len();
    }

    let got = recv.await.map_err(io::Error::other)??;
    for (k, call) in got.chunks(PACKETS * PAYLOAD).enumerate() {
        if call.iter().any(|&b| b != k as u8) {
            return Err(io::Error::other(format!("call {k}: wrong bytes")));
        }
    }
    Ok(got.len())
}
