// SPDX-License-Identifier: GPL-2.0

//! `mdwrite-bench`: deterministic cost per packet of mdwrite and of every
//! stock Linux UDP send path, run inside a QEMU guest whose clock counts
//! executed instructions (`-icount shift=0,sleep=off`, see
//! Documentation/benchmarks.md).
//!
//! Each method sends the same workload from the same buffer in the same
//! boot; only its send section is timed with CLOCK_MONOTONIC (= guest
//! instructions). A row counts only if the device's `tx_packets` grew by
//! exactly the workload's packets and the method itself reports them all.

mod busy;
mod methods;
mod pace;
mod relay;
mod report;
mod workload;

use std::{
    fs,
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Parser, Subcommand};

use report::Row;
use workload::{dest_addr, dest_mac, mac_string, Pool, Workload};

#[derive(Parser)]
#[command(
    version,
    about = "Guest instructions per packet of mdwrite and the stock UDP send paths"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Times the same busy loop twice: identical figures mean the clock
    /// counts instructions.
    Calibrate,
    /// Prints `ip -batch` lines adding a permanent neighbour entry for each
    /// of the first DESTS destinations on IFNAME.
    Neigh {
        /// The benchmark device.
        ifname: String,
        /// Number of destinations.
        dests: usize,
    },
    /// Runs every method over every workload and appends rows to a CSV.
    Run(RunArgs),
    /// Sends one workload with one method TIMES times (for a profile of
    /// where its instructions go, e.g. under `perf record`).
    Repeat {
        /// The benchmark device.
        #[arg(long, default_value = "dummy0")]
        ifname: String,
        /// The method.
        #[arg(long)]
        method: String,
        /// Destinations.
        #[arg(long, default_value_t = 64)]
        dests: usize,
        /// KiB per destination per call.
        #[arg(long, default_value_t = 256)]
        kib: usize,
        /// Full packets per destination per call instead of `--kib` (the
        /// live regime: one call per interval, a few packets each).
        #[arg(long)]
        packets: Option<usize>,
        /// Payload (`1472`, `1316+rtp`).
        #[arg(long, default_value = "1472")]
        payload: String,
        /// Every destination gets the same payload (the same memory).
        #[arg(long)]
        fanout: bool,
        /// How many times.
        #[arg(long, default_value_t = 100)]
        times: u32,
    },
    /// Copies standard input to standard output with Rust symbols (v0 or
    /// legacy mangling, as in a profile of the module) demangled, without
    /// their hashes.
    Demangle,
    /// How smooth paced calls leave: mixed-bitrate streams through a veth
    /// pair, time-stamped on the receiving side (issue 14).
    Pace(pace::PaceArgs),
    /// What relaying one stream to N destinations costs per packet:
    /// `mdwrite relay` next to a recvmmsg + sendmmsg relay (issue 15).
    Relay(relay::RelayBenchArgs),
    /// Runs a command and prints the whole guest's busy time over it
    /// (instructions under `-icount`): `busy -- CMD [ARGS...]`.
    Busy {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// The recvmmsg + sendmmsg relay written the usual way (`relay` runs
    /// it in the relay's network namespace).
    RelayStock(relay::StockArgs),
    /// Prints the Markdown tables of a CSV.
    Report {
        /// The CSV written by `run`.
        csv: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The benchmark device.
    #[arg(long, default_value = "dummy0")]
    ifname: String,
    /// Name of this table in the CSV (e.g. the device's offload setting).
    #[arg(long)]
    table: String,
    /// Payload sizes; `1316+rtp` adds a 12-byte RTP header per packet.
    #[arg(long, value_delimiter = ',', default_value = "1472,1316+rtp")]
    payloads: Vec<String>,
    /// Destination counts.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,512")]
    dests: Vec<usize>,
    /// KiB per destination per call, for every destination count.
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    kib: Vec<usize>,
    /// Extra workloads DESTSxKIB (e.g. the headline 64x256), first payload
    /// only.
    #[arg(long, value_delimiter = ',', default_value = "64x256")]
    extra: Vec<String>,
    /// The live regime: full packets per destination per call (e.g.
    /// `1,2,4,8,16`) instead of `--kib` and `--extra`. The rows' KiB column
    /// then holds the packets per destination; name such a table `live...`
    /// so the report labels and checks it as one.
    #[arg(long, value_delimiter = ',')]
    packets: Vec<usize>,
    /// Fan-out: every destination gets the same payload (the same memory).
    #[arg(long)]
    fanout: bool,
    /// Methods, in column order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mdwrite,mdwrite-regbuf,mdwrite-keep,sendto,sendmmsg,gso,gso-zerocopy,io_uring-sendzc,af_packet-ring,pktgen,pktgen-burst32"
    )]
    methods: Vec<String>,
    /// The CSV to append to (created with a header line if missing).
    #[arg(long)]
    csv: PathBuf,
}

/// CLOCK_MONOTONIC in ns: guest instructions under `-icount shift=0`.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The device's transmitted-packet counter.
fn tx_packets(ifname: &str) -> io::Result<u64> {
    let s = fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/tx_packets"))?;
    s.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn calibrate() {
    for _ in 0..2 {
        let t0 = now_ns();
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let t1 = now_ns();
        println!("10M-iteration loop: {} ns", t1 - t0);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // How the emulator counts a copy: the kernel copies user data with
        // `rep movsb` when the CPU has ERMS/FSRM.
        let len = 1usize << 20;
        let src = vec![1u8; len];
        // Written first, so the copy does not fault its pages in.
        let mut dst = vec![2u8; len];
        let t0 = now_ns();
        // SAFETY: copies `len` bytes between two distinct live buffers of
        // that length; the direction flag is clear per the ABI.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") src.as_ptr() => _,
                inout("rdi") dst.as_mut_ptr() => _,
                options(nostack, preserves_flags)
            );
        }
        let t1 = now_ns();
        assert_eq!(dst, src);
        println!("rep movsb of 1 MiB: {} ns", t1 - t0);
    }
}

fn parse_payload(s: &str) -> Result<(usize, bool), String> {
    let (n, rtp) = match s.strip_suffix("+rtp") {
        Some(n) => (n, true),
        None => (s, false),
    };
    let n: usize = n.parse().map_err(|_| format!("bad payload '{s}'"))?;
    if n == 0 || n + 28 + if rtp { 12 } else { 0 } > 1500 {
        return Err(format!("payload '{s}' does not fit a 1500-byte MTU"));
    }
    Ok((n, rtp))
}

/// The workloads of `args`, in run order.
fn workloads(args: &RunArgs) -> Result<Vec<Workload>, String> {
    let mut v = Vec::new();
    for (i, p) in args.payloads.iter().enumerate() {
        let (payload, rtp) = parse_payload(p)?;
        let mut add = |dests, bytes: usize| {
            v.push(Workload {
                dests,
                bytes,
                payload,
                rtp,
                fanout: args.fanout,
            })
        };
        if !args.packets.is_empty() {
            for &k in &args.packets {
                if k == 0 {
                    return Err("--packets: 0 packets per destination".into());
                }
                for &n in &args.dests {
                    add(n, k * payload);
                }
            }
            continue;
        }
        for &kib in &args.kib {
            for &n in &args.dests {
                add(n, kib << 10);
            }
        }
        if i == 0 {
            for e in args.extra.iter().filter(|e| !e.is_empty()) {
                let (n, kib) = e.split_once('x').ok_or(format!("bad workload '{e}'"))?;
                let n = n.parse().map_err(|_| format!("bad workload '{e}'"))?;
                let kib: usize = kib.parse().map_err(|_| format!("bad workload '{e}'"))?;
                add(n, kib << 10);
            }
        }
    }
    Ok(v)
}

/// How many timed sends a row makes: the median is reported. A timer
/// interrupt landing in a small call (8 packets) reads hundreds of
/// instructions per packet; a few sends outvote it. Large workloads, where
/// a tick is noise already, are timed once (they take long).
fn timed_sends(packets: u64) -> usize {
    match packets {
        0..=1024 => 5,
        1025..=8192 => 3,
        _ => 1,
    }
}

/// The send of median instructions per packet of `sends` (instructions,
/// packets), the upper one of an even count; `None` for none.
fn median(sends: &mut [(u64, u64)]) -> Option<(u64, u64)> {
    // Compared as fractions: (a / p) < (b / q) when a * q < b * p.
    sends.sort_unstable_by(|&(a, p), &(b, q)| {
        (u128::from(a) * u128::from(q)).cmp(&(u128::from(b) * u128::from(p)))
    });
    sends.get(sends.len() / 2).copied()
}

/// Waits, untimed, until `ifname` has counted `target` transmitted
/// packets or two seconds have passed; returns its count then. Packets a
/// qdisc still holds when a send returns (a device whose queue stopped)
/// leave later: they count for the send that made them, not against the
/// next.
fn tx_reaches(ifname: &str, target: u64) -> io::Result<u64> {
    let mut now = tx_packets(ifname)?;
    for _ in 0..2000 {
        if now >= target {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        now = tx_packets(ifname)?;
    }
    Ok(now)
}

fn measure(ifname: &str, name: &str, wl: &Workload, pool: &Pool) -> io::Result<Row> {
    let mut m = methods::make(name, ifname)?;
    m.prepare(wl, pool)?;
    let want = m.expected_packets(wl);
    let most = want + m.packet_slack();
    // Warm-up: the same send once, not timed. Sockets, routes, slab
    // caches and the code path are warm, and kernel work left over by the
    // previous row (freeing its buffers costs the next large send about 60
    // instructions per packet, whatever the method) is done.
    let warm = tx_packets(ifname)?;
    let out = m.send(wl, pool)?;
    tx_reaches(ifname, warm + out.packets.clamp(want, most))?;
    let mut row = Row::new(wl, name);
    row.packets = want;
    // Each timed send's instructions and packets.
    let mut times: Vec<(u64, u64)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for _ in 0..timed_sends(want) {
        let tx0 = tx_packets(ifname)?;
        let t0 = now_ns();
        let out = m.send(wl, pool)?;
        let t1 = now_ns();
        // What the method says it sent, if that is what it may send.
        let sent = out.packets.clamp(want, most);
        let tx1 = tx_reaches(ifname, tx0 + sent)?;
        let after = m.after()?;
        times.push((out.elapsed_ns.unwrap_or(t1 - t0), sent));
        // Every send's figures are the same but for the time.
        row.syscalls = out.syscalls;
        row.pinned_pages = out.pinned_pages;
        for note in [out.note, after] {
            if !note.is_empty() && !notes.contains(&note) {
                notes.push(note);
            }
        }
        if tx1 - tx0 != sent || out.packets != sent {
            let expected = match most > want {
                true => format!("{want} to {most}"),
                false => want.to_string(),
            };
            notes.push(format!(
                "sent {} packets (device counted {}), expected {expected}",
                out.packets,
                tx1 - tx0
            ));
            row.status = "failed".into();
            break;
        }
    }
    if let Some((ns, packets)) = median(&mut times) {
        row.instructions = ns;
        if packets != row.packets {
            // Every packet of such a method (pktgen) is full-size.
            row.bytes = row.bytes * packets / row.packets.max(1);
            row.packets = packets;
        }
    }
    row.note = notes.join("; ");
    Ok(row)
}

fn run(args: &RunArgs) -> io::Result<bool> {
    let wls = workloads(args).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    for m in &args.methods {
        if !methods::METHODS.contains(&m.as_str()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown method '{m}'"),
            ));
        }
    }
    raise_nofile()?;
    let new = !args.csv.exists();
    let mut csv = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.csv)?;
    if new {
        writeln!(csv, "{}", Row::CSV_HEADER)?;
    }
    let mut all_ok = true;
    for (i, wl) in wls.iter().enumerate() {
        let pool = Pool::new(wl.pool_size())?;
        for name in &args.methods {
            let mut row = match measure(&args.ifname, name, wl, &pool) {
                Ok(r) => r,
                Err(e) => {
                    let mut r = Row::new(wl, name);
                    r.status = "failed".into();
                    r.note = e.to_string();
                    r
                }
            };
            row.table.clone_from(&args.table);
            if !args.packets.is_empty() {
                // Live tables count packets per destination, not KiB.
                row.kib = wl.packets_per_dest() as u64;
            }
            all_ok &= row.status == "ok";
            eprintln!(
                "[bench] {} {}/{} {} {}x{}KiB {:<16} {}",
                args.table,
                i + 1,
                wls.len(),
                wl.payload_name(),
                wl.dests,
                wl.bytes >> 10,
                name,
                row.summary()
            );
            writeln!(csv, "{}", row.to_csv())?;
            csv.flush()?;
        }
    }
    Ok(all_ok)
}

#[allow(clippy::too_many_arguments)]
fn repeat(
    ifname: &str,
    method: &str,
    dests: usize,
    bytes: Bytes,
    payload: &str,
    fanout: bool,
    times: u32,
) -> io::Result<bool> {
    let (payload, rtp) =
        parse_payload(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let wl = Workload {
        dests,
        bytes: match bytes {
            Bytes::Kib(kib) => kib << 10,
            Bytes::Packets(k) => k * payload,
        },
        payload,
        rtp,
        fanout,
    };
    raise_nofile()?;
    let pool = Pool::new(wl.pool_size())?;
    let mut m = methods::make(method, ifname)?;
    m.prepare(&wl, &pool)?;
    let t0 = now_ns();
    for _ in 0..times {
        m.send(&wl, &pool)?;
    }
    let t1 = now_ns();
    eprintln!(
        "{method}: {times} x {} packets, {} instructions/packet",
        wl.packets(),
        (t1 - t0) / (u64::from(times) * wl.packets()).max(1)
    );
    Ok(true)
}

/// Payload bytes per destination per call, as `repeat` is told them.
enum Bytes {
    Kib(usize),
    Packets(usize),
}

fn demangle() -> io::Result<bool> {
    let mut out = io::stdout().lock();
    for line in io::stdin().lines() {
        let line = line?;
        let words: Vec<String> = line
            .split(' ')
            .map(|w| match rustc_demangle::try_demangle(w) {
                Ok(d) => format!("{d:#}"),
                Err(_) => w.to_owned(),
            })
            .collect();
        writeln!(out, "{}", words.join(" "))?;
    }
    Ok(true)
}

/// Room for one socket per destination.
fn raise_nofile() -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: 8192,
        rlim_max: 8192,
    };
    // SAFETY: a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Calibrate => {
            calibrate();
            Ok(true)
        }
        Cmd::Neigh { ifname, dests } => {
            for d in 0..dests {
                println!(
                    "neigh replace {} lladdr {} dev {ifname} nud permanent",
                    dest_addr(d),
                    mac_string(dest_mac(d))
                );
            }
            Ok(true)
        }
        Cmd::Run(args) => run(&args),
        Cmd::Pace(args) => pace::pace(&args),
        Cmd::Relay(args) => relay::relay_bench(&args),
        Cmd::RelayStock(args) => relay::stock(&args),
        Cmd::Busy { cmd } => busy::busy(&cmd),
        Cmd::Demangle => demangle(),
        Cmd::Repeat {
            ifname,
            method,
            dests,
            kib,
            packets,
            payload,
            fanout,
            times,
        } => repeat(
            &ifname,
            &method,
            dests,
            packets.map_or(Bytes::Kib(kib), Bytes::Packets),
            &payload,
            fanout,
            times,
        ),
        Cmd::Report { csv } => fs::read_to_string(&csv).and_then(|text| {
            print!("{}", report::markdown(&text)?);
            Ok(true)
        }),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("mdwrite-bench: some rows failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mdwrite-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_in_one_of_five_sends_is_outvoted() {
        // Four quiet sends and one a timer interrupt landed in.
        let mut v = [9_000, 9_100, 41_000, 8_950, 9_050].map(|ns| (ns, 10));
        assert_eq!(median(&mut v), Some((9_050, 10)));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn the_median_send_is_per_packet() {
        // pktgen's sends may differ in packets: 100 per packet is the
        // middle one, whatever its total.
        let mut v = [(1_100, 10), (1_200, 12), (900, 10)];
        assert_eq!(median(&mut v), Some((1_200, 12)));
    }

    #[test]
    fn small_rows_are_timed_several_times_large_ones_once() {
        assert_eq!(timed_sends(8), 5);
        assert_eq!(timed_sends(1024), 5);
        assert_eq!(timed_sends(8192), 3);
        assert_eq!(timed_sends(11_456), 1);
    }
}
