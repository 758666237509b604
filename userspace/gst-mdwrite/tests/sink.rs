// SPDX-License-Identifier: GPL-2.0

//! `mdwritesink` in live pipelines on 127.0.0.1 with the fallback backend:
//! clients added and removed while playing, statistics, RTP rewriting and
//! errors while playing.

use std::{
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use gst::prelude::*;

/// One RTP packet as a receiver saw it.
#[derive(Clone, Debug)]
struct Packet {
    seq: u16,
    ssrc: u32,
    payload: Vec<u8>,
}

/// A UDP receiver on 127.0.0.1 collecting RTP packets until dropped.
struct Receiver {
    port: u16,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Receiver {
    fn new() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&packets), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    assert!(n >= 12, "a datagram shorter than an RTP header");
                    p.lock().unwrap().push(Packet {
                        seq: u16::from_be_bytes([buf[2], buf[3]]),
                        ssrc: u32::from_be_bytes(buf[8..12].try_into().unwrap()),
                        payload: buf[12..n].to_vec(),
                    });
                }
            }
        });
        Self {
            port,
            packets,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.packets.lock().unwrap().len()
    }

    /// Stops receiving (after what is queued has been read) and returns
    /// the packets.
    fn finish(mut self) -> Vec<Packet> {
        thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.packets.lock().unwrap())
    }
}

/// Asserts that `packets` have consecutive sequence numbers (no gap, no
/// reordering) under one SSRC.
fn assert_contiguous(name: &str, packets: &[Packet]) {
    assert!(!packets.is_empty(), "{name}: nothing received");
    for w in packets.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{name}: a gap or reordering after sequence number {}",
            w[0].seq
        );
        assert_eq!(w[1].ssrc, w[0].ssrc, "{name}: the SSRC changed");
    }
}

fn init() {
    gst::init().expect("gst init");
    gstmdwrite::plugin_register_static().expect("register the plugin");
}

/// A live RTP pipeline (a test pattern encoded with x264, muxed to
/// MPEG-TS, payloaded) into `mdwritesink` named `sink`.
fn live_pipeline(sink_props: &str) -> gst::Pipeline {
    let desc = format!(
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=25/1 ! \
         x264enc tune=zerolatency speed-preset=ultrafast bitrate=300 key-int-max=25 ! \
         mpegtsmux ! rtpmp2tpay ! mdwritesink name=sink backend=fallback {sink_props}"
    );
    gst::parse::launch(&desc)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}

/// Runs the main loop's bus for `d`, failing on an error message.
fn run_for(pipeline: &gst::Pipeline, d: Duration) {
    let bus = pipeline.bus().unwrap();
    let end = std::time::Instant::now() + d;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(e) = msg.view() {
                panic!("pipeline error: {} ({:?})", e.error(), e.debug());
            }
        }
    }
}

fn stats(sink: &gst::Element, port: u16) -> gst::Structure {
    sink.emit_by_name::<gst::Structure>("get-stats", &[&"127.0.0.1", &i32::from(port)])
}

#[test]
fn clients_added_and_removed_while_playing_without_a_gap() {
    init();
    let (a, b, c) = (Receiver::new(), Receiver::new(), Receiver::new());
    let pipeline = live_pipeline(&format!("clients=127.0.0.1:{}", a.port));
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).expect("playing");
    run_for(&pipeline, Duration::from_millis(1000));
    assert!(a.count() > 0, "the first client got nothing in 1 s");

    sink.emit_by_name::<()>("add", &[&"127.0.0.1", &i32::from(b.port)]);
    run_for(&pipeline, Duration::from_millis(1000));
    assert!(b.count() > 0, "the added client got nothing");
    sink.emit_by_name::<()>("add", &[&"127.0.0.1", &i32::from(c.port)]);
    run_for(&pipeline, Duration::from_millis(700));
    // Replacing the list: a and c stay, b leaves.
    sink.set_property(
        "clients",
        format!("127.0.0.1:{},127.0.0.1:{}", a.port, c.port),
    );
    assert_eq!(
        sink.property::<String>("clients"),
        format!("127.0.0.1:{},127.0.0.1:{}", a.port, c.port)
    );
    thread::sleep(Duration::from_millis(100));
    let b_at_removal = b.count();
    run_for(&pipeline, Duration::from_millis(700));
    let a_stats = stats(&sink, a.port);
    sink.emit_by_name::<()>("remove", &[&"127.0.0.1", &i32::from(a.port)]);
    run_for(&pipeline, Duration::from_millis(500));
    pipeline.set_state(gst::State::Null).expect("null");

    assert_eq!(
        b.count(),
        b_at_removal,
        "the removed client still got packets"
    );
    let (pa, pb, pc) = (a.finish(), b.finish(), c.finish());
    assert_contiguous("a", &pa);
    assert_contiguous("b", &pb);
    assert_contiguous("c", &pc);
    // c joined after b and outlived a's removal: it saw a's last packets,
    // and b's window lies inside a's.
    assert!(pb[0].seq > pa[0].seq && pc[0].seq > pb[0].seq);
    let a_sent = a_stats.get::<u64>("packets-sent").unwrap();
    assert!(a_sent > 0 && a_sent as usize <= pa.len());
    assert_eq!(a_stats.get::<u64>("errors").unwrap(), 0);
    assert!(a_stats.get::<u64>("bytes-sent").unwrap() >= a_sent * 188);
    // Unknown clients have no counters.
    assert!(!stats(&sink, 1).has_field("packets-sent"));
}

#[test]
fn rtp_rewrite_gives_each_client_its_own_ssrc_and_sequence() {
    init();
    let (a, b) = (Receiver::new(), Receiver::new());
    let pipeline = live_pipeline(&format!(
        "rtp-rewrite=true clients=127.0.0.1:{},127.0.0.1:{}",
        a.port, b.port
    ));
    pipeline.set_state(gst::State::Playing).expect("playing");
    run_for(&pipeline, Duration::from_millis(1200));
    pipeline.set_state(gst::State::Null).expect("null");
    let (pa, pb) = (a.finish(), b.finish());
    assert_contiguous("a", &pa);
    assert_contiguous("b", &pb);
    assert_ne!(pa[0].ssrc, pb[0].ssrc, "the same SSRC for both clients");
    assert_eq!(pa.len(), pb.len());
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(x.payload, y.payload, "the clients got different payloads");
        assert_eq!(x.payload.len() % 188, 0, "not whole TS packets");
    }
}

#[test]
fn a_bad_clients_string_while_playing_is_an_element_error() {
    init();
    let a = Receiver::new();
    let pipeline = live_pipeline(&format!("clients=127.0.0.1:{}", a.port));
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).expect("playing");
    run_for(&pipeline, Duration::from_millis(500));
    sink.set_property("clients", "127.0.0.1:5000,nonsense");
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert_eq!(msg.src().unwrap().name(), "sink");
    assert!(
        e.debug()
            .unwrap_or_default()
            .contains("bad client \"nonsense\""),
        "{:?}",
        e.debug()
    );
    pipeline.set_state(gst::State::Null).expect("null");
    // The clients stayed as they were.
    assert_eq!(
        sink.property::<String>("clients"),
        format!("127.0.0.1:{}", a.port)
    );
    a.finish();
}
