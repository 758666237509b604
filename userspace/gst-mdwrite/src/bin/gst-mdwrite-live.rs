// SPDX-License-Identifier: GPL-2.0

//! `gst-mdwrite-live`: a live pipeline into `mdwritesink` whose clients
//! change while it plays, for tests (`tests/vm/t_gst_live.sh` runs it in
//! the VM with the module).
//!
//! ```text
//! gst-mdwrite-live BACKEND CLIENTS STEP...
//! ```
//!
//! Plays `videotestsrc is-live=true ! x264enc ! mpegtsmux ! rtpmp2tpay !
//! mdwritesink backend=BACKEND clients=CLIENTS` in real time and runs the
//! steps in order while it plays:
//!
//! - `wait=MS`: plays on for MS milliseconds;
//! - `add=HOST:PORT`, `remove=HOST:PORT`: the action signals;
//! - `clients=LIST`: sets the property;
//! - `stats=HOST:PORT`: prints `stats HOST:PORT packets-sent=N
//!   bytes-sent=N errors=N` (`stats HOST:PORT none` for no client);
//! - `expect-warning=TEXT`, `expect-error=TEXT`: waits up to 10 s for an
//!   element warning (error) from the sink whose debug text or message
//!   contains TEXT, and prints it.
//!
//! Any other error message, or a step that fails, ends it with status 1;
//! otherwise the pipeline is stopped after the last step, status 0. Once
//! stopped it prints `final HOST:PORT packets-sent=N` for every client
//! left (the counters can no longer move). The plugin is registered
//! statically (no plugin path needed for it).

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use gst::prelude::*;

fn host_port(s: &str) -> Result<(String, i32), String> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s}: not HOST:PORT"))?;
    let port = p.parse().map_err(|_| format!("{s}: bad port"))?;
    Ok((h.trim_matches(|c| c == '[' || c == ']').to_string(), port))
}

/// The error or warning text of a message: its message and debug string.
fn text(msg: &gst::MessageRef) -> Option<(bool, String)> {
    match msg.view() {
        gst::MessageView::Error(e) => Some((
            true,
            format!("{} ({})", e.error(), e.debug().unwrap_or_default()),
        )),
        gst::MessageView::Warning(w) => Some((
            false,
            format!("{} ({})", w.error(), w.debug().unwrap_or_default()),
        )),
        _ => None,
    }
}

/// Plays for `d`, failing on an error message; warnings are printed.
fn play_for(bus: &gst::Bus, d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Error, gst::MessageType::Warning],
        ) else {
            break;
        };
        match text(&msg) {
            Some((true, t)) => return Err(format!("error: {t}")),
            Some((false, t)) => println!("warning (not expected): {t}"),
            None => {}
        }
    }
    Ok(())
}

/// Waits up to 10 s for an error (`error`) or warning whose text has
/// `want`.
fn expect(bus: &gst::Bus, error: bool, want: &str) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(10);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Error, gst::MessageType::Warning],
        ) else {
            break;
        };
        let Some((is_error, t)) = text(&msg) else {
            continue;
        };
        let from_sink = msg.src().is_some_and(|s| s.name() == "sink");
        if is_error == error && from_sink && t.contains(want) {
            println!(
                "{} from the sink: {t}",
                if error { "error" } else { "warning" }
            );
            return Ok(());
        }
        if is_error {
            return Err(format!("another error: {t}"));
        }
        println!("warning (not the one expected): {t}");
    }
    Err(format!(
        "no {} containing \"{want}\" within 10 s",
        if error { "error" } else { "warning" }
    ))
}

fn run(args: &[String]) -> Result<(), String> {
    let [backend, clients, steps @ ..] = args else {
        return Err("usage: gst-mdwrite-live BACKEND CLIENTS STEP...".into());
    };
    gst::init().map_err(|e| e.to_string())?;
    gstmdwrite::plugin_register_static().map_err(|e| e.to_string())?;
    let desc = format!(
        "videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=25/1 ! \
         x264enc tune=zerolatency speed-preset=ultrafast bitrate=300 key-int-max=25 ! \
         mpegtsmux ! rtpmp2tpay ! mdwritesink name=sink backend={backend} clients={clients}"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline.by_name("sink").ok_or("no sink")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("PLAYING: {e}"))?;
        for step in steps {
            let (what, arg) = step.split_once('=').unwrap_or((step.as_str(), ""));
            println!("step {step}");
            match what {
                "wait" => {
                    let ms = arg.parse().map_err(|_| format!("{step}: bad number"))?;
                    play_for(&bus, Duration::from_millis(ms))?;
                }
                "add" | "remove" => {
                    let (h, p) = host_port(arg)?;
                    sink.emit_by_name::<()>(what, &[&h, &p]);
                }
                "clients" => sink.set_property("clients", arg),
                "stats" => {
                    let (h, p) = host_port(arg)?;
                    let s = sink.emit_by_name::<gst::Structure>("get-stats", &[&h, &p]);
                    match (
                        s.get::<u64>("packets-sent"),
                        s.get::<u64>("bytes-sent"),
                        s.get::<u64>("errors"),
                    ) {
                        (Ok(n), Ok(b), Ok(e)) => {
                            println!("stats {arg} packets-sent={n} bytes-sent={b} errors={e}")
                        }
                        _ => println!("stats {arg} none"),
                    }
                }
                "expect-warning" => expect(&bus, false, arg)?,
                "expect-error" => expect(&bus, true, arg)?,
                _ => return Err(format!("unknown step {step}")),
            }
        }
        Ok(())
    })();
    pipeline
        .set_state(gst::State::Null)
        .map_err(|e| format!("NULL: {e}"))?;
    // Stopped, the counters are final: nothing more is sent.
    let clients = sink.property::<String>("clients");
    for c in clients.split(',').filter(|c| !c.is_empty()) {
        let (h, p) = host_port(c)?;
        let s = sink.emit_by_name::<gst::Structure>("get-stats", &[&h, &p]);
        if let Ok(n) = s.get::<u64>("packets-sent") {
            println!("final {c} packets-sent={n}");
        }
    }
    result
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gst-mdwrite-live: {e}");
            ExitCode::FAILURE
        }
    }
}
