// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C helpers in `mdwrite_net.c`, `mdwrite_pace.c` and
//! `mdwrite_pin.c` (`mdwrite_net.h`).
//!
//! Only the safe wrappers in `net.rs`, `pin.rs`, `pincache.rs`, `skb.rs`,
//! `pacer.rs` and `completion.rs` call these (and `mdwrite_helpers.c`'s,
//! declared there).

use kernel::{
    bindings,
    ffi::{c_int, c_void},
};

/// Opaque C `struct mdw_dev`: a device reference with its tracker.
#[repr(C)]
pub(crate) struct MdwDev {
    _private: [u8; 0],
}

/// Opaque C `struct mdw_done`: a call's completion.
#[repr(C)]
pub(crate) struct MdwDone {
    _private: [u8; 0],
}

/// Opaque C `struct mmpin`: pages charged to a user's `RLIMIT_MEMLOCK`.
#[repr(C)]
pub(crate) struct MdwMmpin {
    _private: [u8; 0],
}

/// Opaque C `struct mdw_watch`: the pin cache's watch on a range of user
/// memory (`mdwrite_pin.c`).
#[repr(C)]
pub(crate) struct MdwWatch {
    _private: [u8; 0],
}

/// Opaque C `struct mdw_pacer`: a file's paced release (`mdwrite_pace.c`).
#[repr(C)]
pub(crate) struct MdwPacer {
    _private: [u8; 0],
}

/// Opaque C `struct eventfd_ctx`.
#[repr(C)]
pub(crate) struct MdwEventfd {
    _private: [u8; 0],
}

/// `struct mdw_dev_info`.
#[repr(C)]
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MdwDevInfo {
    pub(crate) features: u64,
    pub(crate) vlan_features: u64,
    pub(crate) ifindex: u32,
    pub(crate) mtu: u32,
    pub(crate) mac: [u8; 6],
    pub(crate) ethernet: bool,
    pub(crate) up: bool,
    pub(crate) vlan_challenged: bool,
    pub(crate) recycle_ok: bool,
}

/// `struct mdw_dev_caps`.
#[repr(C)]
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MdwDevCaps {
    pub(crate) sg: bool,
    pub(crate) csum: bool,
}

/// `struct mdw_frag`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct MdwFrag {
    pub(crate) page: *mut bindings::page,
    pub(crate) off: u32,
    pub(crate) len: u32,
}

/// `struct mdw_layout`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct MdwLayout {
    pub(crate) hdr_len: u32,
    pub(crate) l3_off: u32,
    pub(crate) l4_off: u32,
    pub(crate) ipv6: bool,
    pub(crate) vlan: bool,
    pub(crate) csum_partial: bool,
}

/// `struct mdw_rearm`: a destination's skbs in one call, what
/// `mdw_skb_rearm` and `mdw_skb_reuse` check them against (the layout and
/// the file's keep they stay tied to) and the call's device; kept per
/// destination.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct MdwRearm {
    pub(crate) layout: MdwLayout,
    pub(crate) keep: *mut bindings::ubuf_info,
    pub(crate) dev: *const MdwDev,
}

/// `mdw_skb_reuse` results.
pub(crate) const MDW_SKB_REUSED: c_int = 0;
/// `mdw_xmit_direct` stop reasons.
pub(crate) const MDW_TX_DOWN: c_int = 1;
pub(crate) const MDW_TX_LOOP: c_int = 2;
pub(crate) const MDW_SKB_BUSY: c_int = 1;

// Only pointers cross this boundary; the lint looks through them into
// bindgen's `struct page` and trips over an empty struct there.
#[allow(improper_ctypes)]
extern "C" {
    pub(crate) fn mdw_ffi_check(
        info: usize,
        frag: usize,
        layout: usize,
        rearm: usize,
        caps: usize,
        max_header: usize,
    ) -> c_int;
    pub(crate) fn mdw_net_get_current() -> *mut bindings::net;
    pub(crate) fn mdw_net_put(net: *mut bindings::net);
    pub(crate) fn mdw_file_capable_raw(
        file: *const bindings::file,
        net: *mut bindings::net,
    ) -> bool;
    pub(crate) fn mdw_dev_get(net: *mut bindings::net, ifindex: c_int) -> *mut MdwDev;
    pub(crate) fn mdw_dev_put(d: *mut MdwDev);
    pub(crate) fn mdw_dev_hold(d: *mut MdwDev, net: *mut bindings::net, ifindex: c_int) -> c_int;
    pub(crate) fn mdw_dev_unhold(d: *mut MdwDev);
    pub(crate) fn mdw_dev_info(d: *const MdwDev, info: *mut MdwDevInfo);
    pub(crate) fn mdw_dev_events_init() -> c_int;
    pub(crate) fn mdw_dev_events_exit();
    pub(crate) fn mdw_dev_events() -> u64;
    pub(crate) fn mdw_dev_up(d: *const MdwDev) -> bool;
    pub(crate) fn mdw_dev_probe(
        d: *const MdwDev,
        l: *const MdwLayout,
        hdr: *const u8,
        caps: *mut MdwDevCaps,
    ) -> c_int;
    pub(crate) fn mdw_dev_nit_active(d: *const MdwDev) -> bool;
    pub(crate) fn mdw_neigh_resolve(
        d: *const MdwDev,
        ipv6: bool,
        daddr: *const u8,
        mac: *mut u8,
    ) -> c_int;
    pub(crate) fn mdw_done_new() -> *mut MdwDone;
    pub(crate) fn mdw_done_wait_free(d: *mut MdwDone);
    pub(crate) fn mdw_done_wait_killable(d: *mut MdwDone, release: *mut c_void) -> c_int;
    pub(crate) fn mdw_done_finish_async(d: *mut MdwDone, call: *mut c_void);
    pub(crate) fn mdw_keep_new() -> *mut bindings::ubuf_info;
    pub(crate) fn mdw_keep_put(k: *mut bindings::ubuf_info);
    pub(crate) fn mdw_async_init() -> c_int;
    pub(crate) fn mdw_async_exit();
    pub(crate) fn mdw_memlock_charge(bytes: u64) -> *mut MdwMmpin;
    pub(crate) fn mdw_memlock_uncharge(m: *mut MdwMmpin);
    pub(crate) fn mdw_watch_new(start: usize, len: usize) -> *mut MdwWatch;
    pub(crate) fn mdw_watch_valid(w: *const MdwWatch) -> bool;
    pub(crate) fn mdw_watch_free(w: *mut MdwWatch);
    pub(crate) fn mdw_waitqueue_init(wq: *mut bindings::wait_queue_head);
    pub(crate) fn mdw_poll_wait(
        file: *mut bindings::file,
        wq: *mut bindings::wait_queue_head,
        pt: *mut bindings::poll_table_struct,
    );
    pub(crate) fn mdw_eventfd_get(fd: c_int) -> *mut MdwEventfd;
    pub(crate) fn mdw_eventfd_signal(ctx: *mut MdwEventfd);
    pub(crate) fn mdw_eventfd_put(ctx: *mut MdwEventfd);
    pub(crate) fn mdw_skb_new(
        d: *const MdwDev,
        l: *const MdwLayout,
        frags: *const MdwFrag,
        nfrags: u32,
        payload_len: u32,
        done: *mut MdwDone,
        keep: *mut bindings::ubuf_info,
        hdr: *mut *mut u8,
    ) -> *mut bindings::sk_buff;
    pub(crate) fn mdw_skb_new_linear(
        d: *const MdwDev,
        l: *const MdwLayout,
        frags: *const MdwFrag,
        nfrags: u32,
        payload_len: u32,
        done: *mut MdwDone,
        hold: bool,
        keep: bool,
        sum: *mut u32,
        hdr: *mut *mut u8,
    ) -> *mut bindings::sk_buff;
    pub(crate) fn mdw_skb_reuse_linear(
        skb: *mut bindings::sk_buff,
        r: *const MdwRearm,
        frags: *const MdwFrag,
        nfrags: u32,
        payload_len: u32,
        sum: *mut u32,
        hdr: *mut *mut u8,
    ) -> c_int;
    pub(crate) fn mdw_skb_rearm_linear(
        skb: *mut bindings::sk_buff,
        r: *const MdwRearm,
        page0: *mut bindings::page,
        page1: *mut bindings::page,
        off0: u32,
        lens: u32,
        sum: *mut u32,
    ) -> *mut u8;
    pub(crate) fn mdw_skb_reuse(
        skb: *mut bindings::sk_buff,
        r: *const MdwRearm,
        frags: *const MdwFrag,
        nfrags: u32,
        payload_len: u32,
        hdr: *mut *mut u8,
    ) -> c_int;
    pub(crate) fn mdw_skb_rearm(
        skb: *mut bindings::sk_buff,
        r: *const MdwRearm,
        page0: *mut bindings::page,
        page1: *mut bindings::page,
        off0: u32,
        lens: u32,
    ) -> *mut u8;
    pub(crate) fn mdw_skb_let_go(
        skb: *mut bindings::sk_buff,
        done: *mut MdwDone,
        keep: *mut bindings::ubuf_info,
    );
    pub(crate) fn mdw_skb_free(skb: *mut bindings::sk_buff);
    pub(crate) fn mdw_skb_release(skb: *mut bindings::sk_buff);
    pub(crate) fn mdw_csum_frags(frags: *const MdwFrag, nfrags: u32) -> u32;
    pub(crate) fn mdw_xmit_direct(
        d: *const MdwDev,
        skbs: *mut *mut bindings::sk_buff,
        n: u32,
        flow: u32,
        watch: u64,
        held: *mut bool,
        why: *mut c_int,
    ) -> u32;
    pub(crate) fn mdw_xmit_qdisc(
        skbs: *mut *mut bindings::sk_buff,
        lens: *const u32,
        n: u32,
        bytes: *mut u64,
    ) -> u32;
    pub(crate) fn mdw_xmit_wait(d: *const MdwDev) -> bool;
    pub(crate) fn mdw_clock_ns(tai: bool) -> u64;
    pub(crate) fn mdw_pacer_new(flow: u32) -> *mut MdwPacer;
    pub(crate) fn mdw_pacer_enqueue(
        p: *mut MdwPacer,
        skbs: *mut *mut bindings::sk_buff,
        times: *const u64,
        n: u32,
    ) -> u32;
    pub(crate) fn mdw_pacer_free(p: *mut MdwPacer);
    pub(crate) fn mdw_pace_faults_init();
    pub(crate) fn mdw_pace_faults_exit();
    pub(crate) fn mdw_skb_set_departure(skb: *mut bindings::sk_buff, ns: u64, tai: bool);
    pub(crate) fn mdw_signal_pending() -> bool;
    pub(crate) fn mdw_fatal_signal_pending() -> bool;
    pub(crate) fn mdw_cond_resched();
}

/// Checks that the Rust mirrors above have the C layouts.
pub(crate) fn check_layouts() -> kernel::error::Result {
    // SAFETY: a pure function of its arguments.
    kernel::error::to_result(unsafe {
        mdw_ffi_check(
            size_of::<MdwDevInfo>(),
            size_of::<MdwFrag>(),
            size_of::<MdwLayout>(),
            size_of::<MdwRearm>(),
            size_of::<MdwDevCaps>(),
            crate::common::template::MAX_HEADER_LEN,
        )
    })
}
