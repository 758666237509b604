// SPDX-License-Identifier: GPL-2.0

//! Compiles a C probe against `uapi/mdwrite.h` and checks that the Rust
//! mirror has the same sizes, field offsets and ioctl numbers.

use std::{collections::BTreeMap, mem::offset_of, path::PathBuf, process::Command};

use mdwrite_uapi::*;

/// One fact about the ABI: a name and its value on the Rust side.
type Facts = BTreeMap<String, u64>;

macro_rules! facts {
    ($facts:ident; $(struct $c:literal = $rs:ident { $($f:ident),* $(,)? };)* const $($name:ident),* $(,)?) => {{
        let mut c = String::new();
        $(
            $facts.insert(format!("sizeof {}", $c), std::mem::size_of::<$rs>() as u64);
            c += &format!("P(\"sizeof {0}\", sizeof(struct {0}));\n", $c);
            $(
                $facts.insert(format!("offsetof {}.{}", $c, stringify!($f)), offset_of!($rs, $f) as u64);
                c += &format!("P(\"offsetof {0}.{1}\", offsetof(struct {0}, {1}));\n", $c, stringify!($f));
            )*
        )*
        $(
            $facts.insert(stringify!($name).to_string(), $name as u64);
            c += &format!("P(\"{0}\", {0});\n", stringify!($name));
        )*
        c
    }};
}

fn probe_source(body: &str) -> String {
    format!(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"mdwrite.h\"\n\
         #define P(n, v) printf(\"%s=%llu\\n\", n, (unsigned long long)(v))\n\
         int main(void) {{\n{body}return 0;\n}}\n"
    )
}

#[test]
fn rust_mirror_matches_c_header() {
    let mut rust = Facts::new();
    let body = facts!(rust;
        struct "mdw_info" = MdwInfo { abi_version, info_size, features };
        struct "mdw_dest" = MdwDest {
            handle, flags, ifindex, packet_size, vlan_tci, src_addr, dst_addr, src_port,
            dst_port, dst_mac, hop_limit, dscp, rtp_ssrc, rtp_payload_type, pad0, rtp_seq,
            rtp_timestamp, rtp_ts_increment
        };
        struct "mdw_dest_del" = MdwDestDel { handle, flags };
        struct "mdw_entry" = MdwEntry {
            dest, flags, addr, len, rtp_timestamp, buf, pace_offset, pace_gap
        };
        struct "mdw_repeat" = MdwRepeat { addr, len, rtp_timestamp };
        struct "mdw_writev" = MdwWritev {
            entries, count, entry_size, flags, quantum, bytes, packets, error, error_index, cookie,
            pace_start, pace_window, pace_clock, call_id
        };
        struct "mdw_buf_reg" = MdwBufReg { addr, len, id, flags };
        struct "mdw_buf_unreg" = MdwBufUnreg { id, flags };
        struct "mdw_completion" = MdwCompletion { cookie, bytes, packets, error, error_index };
        struct "mdw_eventfd" = MdwEventfd { fd, flags };
        struct "mdw_group" = MdwGroup { dests, count, handle, flags, reserved };
        struct "mdw_group_del" = MdwGroupDel { handle, flags };
        struct "mdw_stats" = MdwStats {
            calls, packets, bytes_zerocopy, bytes_copied, completions, pages_pinned,
            async_in_flight, completions_queued
        };
        const MDW_ABI_VERSION, MDW_IOC_MAGIC, MDW_IOC_INFO, MDW_IOC_DEST_ADD, MDW_IOC_DEST_DEL,
        MDW_IOC_WRITEV, MDW_IOC_STATS, MDW_FEAT_WRITEV, MDW_FEAT_IPV6, MDW_FEAT_RTP,
        MDW_FEAT_VLAN, MDW_DEST_IPV6, MDW_DEST_RTP, MDW_DEST_VLAN, MDW_DEST_UDP_CSUM_ZERO,
        MDW_ENTRY_RTP_TS, MDW_WRITE_QDISC, MDW_MAX_ENTRIES, MDW_MAX_DESTS, MDW_MAX_CALL_BYTES,
        MDW_FEAT_BUF, MDW_FEAT_ASYNC, MDW_ENTRY_BUF, MDW_WRITE_ASYNC, MDW_MAX_BUFS,
        MDW_MAX_BUF_BYTES, MDW_MAX_ASYNC, MDW_IOC_BUF_REGISTER, MDW_IOC_BUF_UNREGISTER,
        MDW_IOC_SET_EVENTFD, MDW_MAX_ENTRY_SIZE, MDW_FEAT_FANOUT, MDW_ENTRY_SAME,
        MDW_FEAT_PACE, MDW_ENTRY_PACE, MDW_WRITE_PACE, MDW_MAX_PACE_WINDOW, MDW_MAX_PACE_AHEAD,
        MDW_FEAT_REPEAT, MDW_WRITE_REPEAT, MDW_FEAT_KEEP_PINS, MDW_WRITE_KEEP_PINS,
        MDW_FEAT_GROUP, MDW_ENTRY_GROUP, MDW_MAX_GROUPS, MDW_MAX_GROUP_DESTS, MDW_MAX_CALL_DESTS,
        MDW_IOC_GROUP_SET, MDW_IOC_GROUP_DEL,
    );

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("abi_probe.c");
    let bin = dir.join("abi_probe");
    std::fs::write(&src, probe_source(&body)).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(root.join("uapi"))
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "C probe failed to compile");
    let out = Command::new(&bin).output().expect("run the C probe");
    assert!(out.status.success());

    let c: Facts = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(
        c.len(),
        rust.len(),
        "probe printed a different set of facts"
    );
    for (name, value) in &rust {
        assert_eq!(
            c.get(name),
            Some(value),
            "{name}: C says {:?}, Rust says {value}",
            c.get(name)
        );
    }
}
