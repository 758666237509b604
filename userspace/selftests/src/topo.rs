// SPDX-License-Identifier: GPL-2.0

//! The test network, shaped like the claims' system: a sender namespace,
//! a veth to a bridge in a "switch" namespace, and one veth from the bridge
//! to each receiver namespace. Removed on drop.
//!
//! Also the set-up the tests share around it: static neighbours, offloads,
//! dummy devices, netem, and a sender namespace with only a dummy device.

use std::{
    fs::File,
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    process::{Command, Output, Stdio},
};

use mdwrite::DestConfig;

/// Namespace names carry this prefix (and the process id).
const PREFIX: &str = "mdwt";

/// Runs a command; its failure is a test failure with its output.
pub(crate) fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    stdout_of(&args.join(" "), out)
}

/// What command `what` printed, or its failure with its error output.
fn stdout_of(what: &str, out: Output) -> Result<String, String> {
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One receiver host.
pub(crate) struct Receiver {
    /// Its network namespace.
    pub(crate) ns: String,
    /// Its IPv4 address.
    pub(crate) v4: Ipv4Addr,
    /// Its IPv6 address.
    pub(crate) v6: Ipv6Addr,
    /// Its MAC address.
    pub(crate) mac: [u8; 6],
}

/// The whole test network.
pub(crate) struct Topology {
    /// The sender's namespace.
    pub(crate) sender: String,
    /// The sender's device (in `sender`).
    pub(crate) sender_dev: &'static str,
    /// The switch's namespace (bridge `br0`).
    pub(crate) switch: String,
    /// The receivers, in order.
    pub(crate) receivers: Vec<Receiver>,
    names: Vec<String>,
}

/// The sender's IPv4 address.
pub(crate) const SENDER_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The sender's IPv6 address.
pub(crate) const SENDER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);

/// Runs `ip -batch`, in namespace `ns` when given, with `cmds` (one `ip`
/// command each, without the `ip`): one process for many commands, as an
/// exec costs about half a second in the debug guest. With `force`, every
/// command runs even when one fails (`ip -force`), the failure still
/// reported. Returns what the commands printed.
pub(crate) fn ip_batch(ns: Option<&str>, force: bool, cmds: &[String]) -> Result<String, String> {
    let mut args = vec!["ip"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    if force {
        args.push("-force");
    }
    args.extend(["-batch", "-"]);
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    let script = cmds.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    stdout_of(&format!("{} on\n{script}", args.join(" ")), out)
}

/// The MAC address after `link/ether` in `ip link show` output.
fn mac_in(text: &str) -> Result<[u8; 6], String> {
    let field = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .ok_or_else(|| format!("no MAC in ip output: {text}"))?;
    let mut mac = [0u8; 6];
    let mut parts = field.split(':');
    for b in &mut mac {
        let part = parts.next().ok_or_else(|| format!("bad MAC {field}"))?;
        *b = u8::from_str_radix(part, 16).map_err(|e| format!("bad MAC {field}: {e}"))?;
    }
    Ok(mac)
}

/// The ifindex at the start of `ip link show` output ("N: name: ...").
fn ifindex_in(text: &str) -> Result<u32, String> {
    text.split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("no ifindex in ip output: {text}"))
}

/// The commands giving `dev` (in the namespace the batch runs in) its
/// addresses and bringing it and `lo` up.
fn host_cmds(dev: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> Vec<String> {
    vec![
        format!("addr add {v4}/24 dev {dev}"),
        format!("addr add {v6}/64 dev {dev} nodad"),
        format!("link set {dev} up"),
        "link set lo up".into(),
    ]
}

impl Topology {
    /// Builds the network with `n` receivers: one `ip -batch` to make the
    /// namespaces, one in the switch's for the bridge and every veth pair,
    /// one in each host's for its addresses.
    pub(crate) fn new(n: usize) -> Result<Self, String> {
        let id = std::process::id();
        let sender = format!("{PREFIX}{id}-snd");
        let switch = format!("{PREFIX}{id}-sw");
        let mut topo = Topology {
            sender: sender.clone(),
            sender_dev: "s0",
            switch: switch.clone(),
            receivers: Vec::new(),
            names: Vec::new(),
        };
        let hosts: Vec<String> = (0..n).map(|i| format!("{PREFIX}{id}-r{i}")).collect();
        let all: Vec<String> = [sender.clone(), switch.clone()]
            .into_iter()
            .chain(hosts.iter().cloned())
            .collect();
        let adds: Vec<String> = all.iter().map(|ns| format!("netns add {ns}")).collect();
        let made = ip_batch(None, false, &adds);
        // Whatever was made goes on drop, also after a failure half-way.
        topo.names = all
            .into_iter()
            .filter(|ns| std::path::Path::new("/run/netns").join(ns).exists())
            .collect();
        made?;

        let mut sw = vec![
            "link add br0 type bridge".to_string(),
            "link set br0 up".into(),
        ];
        let ports = std::iter::once(("p-snd".to_string(), &sender, "s0"))
            .chain((0..n).map(|i| (format!("p-r{i}"), &hosts[i], "r0")));
        for (port, ns, dev) in ports {
            sw.push(format!(
                "link add {port} type veth peer name {dev} netns {ns}"
            ));
            sw.push(format!("link set {port} master br0 up"));
        }
        ip_batch(Some(&switch), false, &sw)?;
        ip_batch(Some(&sender), false, &host_cmds("s0", SENDER_V4, SENDER_V6))?;
        for (i, ns) in hosts.into_iter().enumerate() {
            let v4 = Ipv4Addr::new(10, 99, 0, 10 + i as u8);
            let v6 = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x10 + i as u16);
            let mut cmds = host_cmds("r0", v4, v6);
            cmds.push("link show r0".into());
            let mac = mac_in(&ip_batch(Some(&ns), false, &cmds)?)?;
            topo.receivers.push(Receiver { ns, v4, v6, mac });
        }
        Ok(topo)
    }

    /// The sender device's ifindex.
    pub(crate) fn sender_ifindex(&self) -> Result<u32, String> {
        let text = run(&[
            "ip",
            "-n",
            &self.sender,
            "-o",
            "link",
            "show",
            self.sender_dev,
        ])?;
        ifindex_in(&text)
    }

    /// Address of receiver `i` in the family of `v6`.
    pub(crate) fn addr(&self, i: usize, v6: bool) -> IpAddr {
        let r = &self.receivers[i];
        if v6 {
            IpAddr::V6(r.v6)
        } else {
            IpAddr::V4(r.v4)
        }
    }

    /// The sender's address in the family of `v6`.
    pub(crate) fn sender_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(SENDER_V6)
        } else {
            IpAddr::V4(SENDER_V4)
        }
    }

    /// The command making `addr` a permanent neighbour with MAC `mac` on
    /// the sender's device.
    fn neighbour_cmd(&self, addr: IpAddr, mac: [u8; 6]) -> String {
        let mac = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        format!(
            "neigh replace {addr} lladdr {mac} dev {} nud permanent",
            self.sender_dev
        )
    }

    /// Makes `addr` a permanent neighbour with MAC `mac` on the sender's
    /// device.
    pub(crate) fn permanent_neighbour(&self, addr: IpAddr, mac: [u8; 6]) -> Result<(), String> {
        ip_batch(Some(&self.sender), false, &[self.neighbour_cmd(addr, mac)]).map(|_| ())
    }

    /// Every receiver's IPv4 and IPv6 address as a permanent neighbour, so
    /// that the first packets of a socket sender (the library's fallback)
    /// do not wait for, or get dropped by, address resolution.
    pub(crate) fn static_neighbours(&self) -> Result<(), String> {
        let cmds: Vec<String> = self
            .receivers
            .iter()
            .flat_map(|r| {
                [
                    self.neighbour_cmd(r.v4.into(), r.mac),
                    self.neighbour_cmd(r.v6.into(), r.mac),
                ]
            })
            .collect();
        if cmds.is_empty() {
            return Ok(());
        }
        ip_batch(Some(&self.sender), false, &cmds).map(|_| ())
    }

    /// Turns offload `feature` of the sender's device off (`ethtool -K`).
    pub(crate) fn sender_offload_off(&self, feature: &str) -> Result<(), String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.sender,
            "ethtool",
            "-K",
            self.sender_dev,
            feature,
            "off",
        ])
        .map(|_| ())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let dels: Vec<String> = self
            .names
            .iter()
            .map(|ns| format!("netns del {ns}"))
            .collect();
        if !dels.is_empty() {
            let _ = ip_batch(None, true, &dels);
        }
    }
}

/// The ifindex of device `dev` in namespace `ns`.
pub(crate) fn ifindex(ns: &str, dev: &str) -> Result<u32, String> {
    ifindex_in(&run(&["ip", "-n", ns, "-o", "link", "show", dev])?)
}

/// Moves the calling thread into network namespace `ns`.
pub(crate) fn enter(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
    // SAFETY: `f` is an open namespace file; setns affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a new thread inside network namespace `ns`.
pub(crate) fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        f()
    })
}

/// Creates dummy device `dev` in namespace `ns`, up when `up` (a dummy
/// device drops what it is given); returns its ifindex.
pub(crate) fn add_dummy(ns: &str, dev: &str, up: bool) -> Result<u32, String> {
    add_link(ns, dev, "dummy", up)
}

/// Creates device `dev` of rtnl kind `kind` in namespace `ns`, up when
/// `up`; returns its ifindex.
pub(crate) fn add_link(ns: &str, dev: &str, kind: &str, up: bool) -> Result<u32, String> {
    let mut cmds = vec![format!("link add {dev} type {kind}")];
    if up {
        cmds.push(format!("link set {dev} up"));
    }
    cmds.push(format!("link show {dev}"));
    ifindex_in(&ip_batch(Some(ns), false, &cmds)?)
}

/// Puts netem with a delay of `ms` on `dev` in namespace `ns`: each packet
/// stays on the qdisc that long, so calls through it stay in flight.
pub(crate) fn netem(ns: &str, dev: &str, ms: u64) -> Result<(), String> {
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "netem",
        "delay",
        &format!("{ms}ms"),
        "limit",
        "100000",
    ])
    .map(|_| ())
}

/// A destination on a dummy device `ifindex` (whose packets go nowhere):
/// 10.98.0.1:4000 to 10.98.0.2:5000, MAC 02:00:00:00:00:01.
pub(crate) fn dummy_config(ifindex: u32) -> DestConfig {
    let mut c = DestConfig::new(
        ifindex,
        SocketAddr::new(Ipv4Addr::new(10, 98, 0, 1).into(), 4000),
        SocketAddr::new(Ipv4Addr::new(10, 98, 0, 2).into(), 5000),
    );
    c.dst_mac = Some([2, 0, 0, 0, 0, 1]);
    c
}

/// A topology without receivers and an up dummy device `d0` in the
/// sender's namespace, behind netem holding each packet `hold` ms when
/// given; this thread enters the sender's namespace. Returns a destination
/// on `d0` ([`dummy_config`]).
pub(crate) fn dummy_sender(hold: Option<u64>) -> Result<(Topology, DestConfig), String> {
    let topo = Topology::new(0)?;
    let ifindex = add_dummy(&topo.sender, "d0", true)?;
    if let Some(ms) = hold {
        netem(&topo.sender, "d0", ms)?;
    }
    enter(&topo.sender)?;
    Ok((topo, dummy_config(ifindex)))
}
