// SPDX-License-Identifier: GPL-2.0

//! `mdwrite info`: which backend a sender would use, and what the module
//! implements.

use mdwrite::{uapi::MDW_ABI_VERSION, Device, Sender};

use crate::error::{is_privilege, Error};

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
    println!("features: {} ({})", info.features, info.features.names());
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
    use mdwrite::Features;

    /// The names of the feature bits in `bits`, unknown bits in hex.
    fn feature_names(bits: u64) -> String {
        Features::from_bits_retain(bits).names()
    }

    #[test]
    fn features() {
        assert_eq!(feature_names(0xf), "writev,ipv6,rtp,vlan");
        assert_eq!(feature_names(0x5), "writev,rtp");
        assert_eq!(feature_names(0x31), "writev,buf,async");
        assert_eq!(feature_names(0x3f), "writev,ipv6,rtp,vlan,buf,async");
        assert_eq!(feature_names(0x7f), "writev,ipv6,rtp,vlan,buf,async,fanout");
        assert_eq!(
            feature_names(0xff),
            "writev,ipv6,rtp,vlan,buf,async,fanout,pace"
        );
        assert_eq!(
            feature_names(0x1ff),
            "writev,ipv6,rtp,vlan,buf,async,fanout,pace,repeat"
        );
        assert_eq!(
            feature_names(0x3ff),
            "writev,ipv6,rtp,vlan,buf,async,fanout,pace,repeat,keep_pins"
        );
        assert_eq!(
            feature_names(0x7ff),
            "writev,ipv6,rtp,vlan,buf,async,fanout,pace,repeat,keep_pins,group"
        );
        assert_eq!(feature_names(0x1801), "writev,0x1800");
        assert_eq!(feature_names(0), "");
    }
}
