// SPDX-License-Identifier: GPL-2.0

//! `mdwrite info`: which backend a sender would use, and what the module
//! implements.

use mdwrite::{
    uapi::{
        MDW_ABI_VERSION, MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_FEAT_IPV6, MDW_FEAT_RTP, MDW_FEAT_VLAN,
        MDW_FEAT_WRITEV,
    },
    Device, Features, Sender,
};

use crate::error::{is_privilege, Error};

/// The names of the feature bits in `f`, unknown bits in hex.
fn feature_names(f: Features) -> String {
    let known = [
        (MDW_FEAT_WRITEV, "writev"),
        (MDW_FEAT_IPV6, "ipv6"),
        (MDW_FEAT_RTP, "rtp"),
        (MDW_FEAT_VLAN, "vlan"),
        (MDW_FEAT_BUF, "buf"),
        (MDW_FEAT_ASYNC, "async"),
    ];
    let mut names: Vec<String> = known
        .iter()
        .filter(|(bit, _)| f.0 & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let rest = known.iter().fold(f.0, |acc, (bit, _)| acc & !bit);
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join(",")
}

/// Prints the report; succeeds whether or not the module is there.
pub(crate) fn run() -> Result<(), Error> {
    let sender = match Sender::open_module() {
        Ok(s) => s,
        Err(e) => {
            println!("backend: fallback (sendmmsg)");
            let why = if is_privilege(&e) {
                "present but not accessible, mdwrite needs root"
            } else {
                "not loaded"
            };
            println!("module: {why} ({}: {e})", Device::PATH);
            println!("library_abi_version: {MDW_ABI_VERSION}");
            return Ok(());
        }
    };
    let info = sender
        .info()
        .map_err(|e| Error::io("MDW_IOC_INFO", e))?
        .expect("a module sender has module info");
    let stats = sender.stats().map_err(|e| Error::io("MDW_IOC_STATS", e))?;
    println!("backend: kernel module ({})", Device::PATH);
    println!("abi_version: {}", info.abi_version);
    println!("library_abi_version: {MDW_ABI_VERSION}");
    println!(
        "features: {} ({})",
        info.features,
        feature_names(info.features)
    );
    println!(
        "counters (this open file): calls={} packets={} bytes_zerocopy={} bytes_copied={} \
         completions={} pages_pinned={}",
        stats.calls,
        stats.packets,
        stats.bytes_zerocopy,
        stats.bytes_copied,
        stats.completions,
        stats.pages_pinned
    );
    if info.abi_version != MDW_ABI_VERSION {
        println!(
            "warning: the module's ABI {} is not this tool's {MDW_ABI_VERSION}",
            info.abi_version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features() {
        assert_eq!(feature_names(Features(0xf)), "writev,ipv6,rtp,vlan");
        assert_eq!(feature_names(Features(0x5)), "writev,rtp");
        assert_eq!(feature_names(Features(0x31)), "writev,buf,async");
        assert_eq!(
            feature_names(Features(0x3f)),
            "writev,ipv6,rtp,vlan,buf,async"
        );
        assert_eq!(feature_names(Features(0xc1)), "writev,0xc0");
        assert_eq!(feature_names(Features(0)), "");
    }
}
