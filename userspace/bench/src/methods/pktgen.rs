// SPDX-License-Identifier: GPL-2.0

//! pktgen on the same device: the kernel's own ceiling. A fresh skb per
//! packet (`clone_skb 0`), or each skb sent `burst` times with
//! `xmit_more`. Destinations are a contiguous range of addresses, one
//! packet each in turn.
//!
//! pktgen measures its run with `ktime_get` (the same clock as the other
//! methods' CLOCK_MONOTONIC) and that figure is used: timing from
//! userspace around `start` would add the idle time of the writer's
//! 100 ms polling sleeps, which `-icount sleep=off` turns into clock jumps.

use std::{fs, io};

use super::{Method, Outcome};
use crate::workload::{
    dest_addr, dest_mac, mac_string, Pool, Workload, DST_PORT, SRC_ADDR, SRC_PORT,
};

const DIR: &str = "/proc/net/pktgen";

/// The pktgen method.
pub struct Pktgen {
    ifname: String,
    burst: u32,
}

impl Pktgen {
    /// pktgen on `ifname`, each skb sent `burst` times.
    pub fn new(ifname: &str, burst: u32) -> Self {
        Self {
            ifname: ifname.to_owned(),
            burst,
        }
    }

    fn dev(&self, cmd: &str) -> io::Result<()> {
        write(&format!("{DIR}/{}", self.ifname), cmd)
    }
}

/// Writes one pktgen command (newline-terminated: pgctrl drops the last
/// byte).
fn write(path: &str, cmd: &str) -> io::Result<()> {
    fs::write(path, format!("{cmd}\n"))
        .map_err(|e| io::Error::new(e.kind(), format!("pktgen {path} '{cmd}': {e}")))
}

/// The elapsed microseconds in a pktgen device file's `Result: OK: N(...`.
fn result_usec(text: &str) -> io::Result<u64> {
    let bad = || io::Error::other(format!("no pktgen result in: {text}"));
    let r = text.split("Result: ").nth(1).ok_or_else(bad)?;
    let r = r.strip_prefix("OK: ").ok_or_else(bad)?;
    let n: String = r.chars().take_while(char::is_ascii_digit).collect();
    n.parse().map_err(|_| bad())
}

impl Method for Pktgen {
    fn prepare(&mut self, wl: &Workload, _pool: &Pool) -> io::Result<()> {
        let thread = format!("{DIR}/kpktgend_0");
        write(&thread, "rem_device_all")?;
        write(&thread, &format!("add_device {}", self.ifname))?;
        self.dev("clone_skb 0")?;
        self.dev(&format!("burst {}", self.burst))?;
        self.dev(&format!("pkt_size {}", 14 + wl.ip_size()))?;
        self.dev("delay 0")?;
        self.dev(&format!("dst_min {}", dest_addr(0)))?;
        self.dev(&format!("dst_max {}", dest_addr(wl.dests - 1)))?;
        self.dev(&format!("dst_mac {}", mac_string(dest_mac(0))))?;
        self.dev(&format!("src_min {SRC_ADDR}"))?;
        self.dev(&format!("src_max {SRC_ADDR}"))?;
        self.dev(&format!("udp_src_min {SRC_PORT}"))?;
        self.dev(&format!("udp_src_max {SRC_PORT}"))?;
        self.dev(&format!("udp_dst_min {DST_PORT}"))?;
        self.dev(&format!("udp_dst_max {DST_PORT}"))?;
        self.dev("flag UDPCSUM")?;
        Ok(())
    }

    /// pktgen stops after the burst that reaches the count. A burst is
    /// cut short when the device stops its queue (virtio-net does), and
    /// the bursts after it are shifted: the last one overshoots by up to
    /// `burst - 1` packets (exactly the count rounded up to whole bursts
    /// when none was cut).
    fn packet_slack(&self) -> u64 {
        u64::from(self.burst).saturating_sub(1)
    }

    fn send(&mut self, wl: &Workload, _pool: &Pool) -> io::Result<Outcome> {
        self.dev(&format!("count {}", wl.packets()))?;
        write(&format!("{DIR}/pgctrl"), "start")?;
        let text = fs::read_to_string(format!("{DIR}/{}", self.ifname))?;
        let sofar = text
            .split("sofar: ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Outcome {
            packets: sofar,
            syscalls: 1,
            pinned_pages: None,
            elapsed_ns: Some(result_usec(&text)? * 1000),
            note: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::result_usec;

    #[test]
    fn parses_result_line() {
        let t = "Current:\n     pkts-sofar: 11456  errors: 0\nResult: OK: 12826(c12826+d0) usec, 11456 (1514byte,0frags)\n";
        assert_eq!(result_usec(t).unwrap(), 12826);
        assert!(result_usec("Result: Idle\n").is_err());
    }
}
