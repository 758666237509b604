// SPDX-License-Identifier: GPL-2.0

//! mdwrite selftests that need the module loaded: run inside the test VM.
//!
//! `mdwrite-selftests list` prints one test name per line;
//! `mdwrite-selftests run NAME` runs one test and exits 0 (pass), 1 (fail,
//! reason on stdout) or 4 (skip), the kselftest convention.
//! `mdwrite-selftests demo` is the main job's demonstration and
//! `mdwrite-selftests flood DEV SECONDS` a helper of `killed_mid_call`,
//! `mdwrite-selftests stuck DEV` one of `sync_call_killable`. The guest
//! runner (tests/vm/guest-run.sh) turns each test into one KTAP result.

mod abi;
mod async_buf;
mod capture;
mod errors;
mod fanout;
mod faults;
mod groups;
mod net;
mod pace;
mod pincache;
mod raw;
mod repeat;
mod safety;
mod send;
mod sender;
mod sender_async;
mod shape;
mod topo;

use std::process::ExitCode;

/// The outcome of a failed test: a reason a person can act on.
pub(crate) type TestResult = Result<(), String>;

/// A selftest: a name and the function that runs it.
type Test = (&'static str, fn() -> TestResult);

/// Every test, by name.
const TESTS: &[Test] = &[
    ("dev_node", abi::dev_node),
    ("info_abi_version", abi::info_abi_version),
    ("info_larger_struct", abi::info_larger_struct),
    ("info_short_struct_enotty", abi::info_short_struct_enotty),
    ("unknown_ioctl_enotty", abi::unknown_ioctl_enotty),
    ("bad_pointer_efault", abi::bad_pointer_efault),
    ("many_opens", abi::many_opens),
    ("send_ipv4_8_receivers", send::send_ipv4_8_receivers),
    ("send_ipv6_rtp", send::send_ipv6_rtp),
    ("send_small_and_straddling", send::send_small_and_straddling),
    ("send_fanout_pins_once", send::send_fanout_pins_once),
    (
        "fanout_rtp_per_destination",
        fanout::fanout_rtp_per_destination,
    ),
    ("fanout_errors", fanout::fanout_errors),
    ("group_fanout_order", groups::group_fanout_order),
    ("group_errors", groups::group_errors),
    ("group_library_fanout", groups::group_library_fanout),
    ("shape_reuse", shape::shape_reuse),
    ("shape_plain_reuse", shape::shape_plain_reuse),
    ("shape_single_reuse", shape::shape_single_reuse),
    ("repeat_raw", repeat::repeat_raw),
    ("repeat_library", repeat::repeat_library),
    ("pace_release_fq", pace::pace_release_fq),
    ("pace_release_direct", pace::pace_release_direct),
    ("pace_errors", pace::pace_errors),
    ("pace_queue_stopped", pace::pace_queue_stopped),
    (
        "pace_pending_exit_down_kill",
        pace::pace_pending_exit_down_kill,
    ),
    ("interleave_round_robin", send::interleave_round_robin),
    ("interleave_quantum", send::interleave_quantum),
    ("interleave_full_rounds", send::interleave_full_rounds),
    ("interleave_equal", send::interleave_equal),
    (
        "interleave_full_rounds_quantum",
        send::interleave_full_rounds_quantum,
    ),
    ("send_checksum_vlan_qdisc", send::send_checksum_vlan_qdisc),
    ("send_real_nic_recycled", send::send_real_nic_recycled),
    ("pace_real_nic_recycled", send::pace_real_nic_recycled),
    ("dest_add_errors", errors::dest_add_errors),
    ("writev_errors", errors::writev_errors),
    ("no_cap_net_raw", errors::no_cap_net_raw),
    ("device_deleted", errors::device_deleted),
    ("killed_mid_call", errors::killed_mid_call),
    ("concurrent_calls", errors::concurrent_calls),
    ("munmap_mid_call", errors::munmap_mid_call),
    ("tx_nosg_linear", safety::tx_nosg_linear),
    ("tx_vlan_like_stack", safety::tx_vlan_like_stack),
    ("tap_sees_recycled", safety::tap_sees_recycled),
    ("capture_recycled_bytes", capture::capture_recycled_bytes),
    ("entry_size_bounded", safety::entry_size_bounded),
    ("sync_call_killable", safety::sync_call_killable),
    ("pin_fault_names_entry", safety::pin_fault_names_entry),
    (
        "top_of_address_space_efault",
        safety::top_of_address_space_efault,
    ),
    ("privilege_of_opener", safety::privilege_of_opener),
    ("qdisc_congestion_queued", safety::qdisc_congestion_queued),
    ("dev_mac_changed", safety::dev_mac_changed),
    ("faults_injected", faults::faults_injected),
    ("buf_send_exact", async_buf::buf_send_exact),
    ("buf_errors", async_buf::buf_errors),
    ("buf_memlock_limit", async_buf::buf_memlock_limit),
    (
        "async_one_event_per_call",
        async_buf::async_one_event_per_call,
    ),
    ("async_eventfd", async_buf::async_eventfd),
    ("async_backpressure", async_buf::async_backpressure),
    (
        "buf_unregister_in_flight",
        async_buf::buf_unregister_in_flight,
    ),
    ("async_close_in_flight", async_buf::async_close_in_flight),
    ("async_unload_in_flight", async_buf::async_unload_in_flight),
    ("keep_pins_exact", pincache::keep_pins_exact),
    ("keep_pins_remap", pincache::keep_pins_remap),
    ("keep_pins_other_process", pincache::keep_pins_other_process),
    ("keep_pins_memlock", pincache::keep_pins_memlock),
    ("keep_pins_many_runs", pincache::keep_pins_many_runs),
    ("keep_pins_sender", pincache::keep_pins_sender),
    (
        "sender_backends_same_packets",
        sender::sender_backends_same_packets,
    ),
    (
        "sender_stream_group_module",
        sender::sender_stream_group_module,
    ),
    (
        "sender_backends_same_errors",
        sender::sender_backends_same_errors,
    ),
    (
        "sender_group_same_packets",
        sender::sender_group_same_packets,
    ),
    (
        "sender_registered_async_module",
        sender_async::sender_registered_async_module,
    ),
    (
        "sender_async_backpressure_module",
        sender_async::sender_async_backpressure_module,
    ),
    (
        "sender_group_async_module",
        sender_async::sender_group_async_module,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["list"] => {
            for (name, _) in TESTS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        ["flood", dev, seconds] => match errors::flood(dev, seconds.parse().unwrap_or(10)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("flood: {reason}");
                ExitCode::FAILURE
            }
        },
        ["paced-pending", dev, how, path] => match pace::paced_pending(dev, how, path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("paced-pending: {reason}");
                ExitCode::FAILURE
            }
        },
        ["stuck", dev] => match safety::stuck(dev) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("stuck: {reason}");
                ExitCode::FAILURE
            }
        },
        ["demo"] => match send::demo() {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("demo: {reason}");
                ExitCode::FAILURE
            }
        },
        ["run", name] => match TESTS.iter().find(|(n, _)| *n == name) {
            Some((_, test)) => match test() {
                Ok(()) => ExitCode::SUCCESS,
                // A test that cannot run on this kernel: kselftest's skip.
                Err(reason) if reason.starts_with("skip: ") => {
                    println!("{reason}");
                    ExitCode::from(4)
                }
                Err(reason) => {
                    println!("{reason}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("mdwrite-selftests: no test named {name}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!(
                "usage: mdwrite-selftests list | run NAME | demo | flood DEV SECONDS | stuck DEV"
            );
            ExitCode::from(2)
        }
    }
}
