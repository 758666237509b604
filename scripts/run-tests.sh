#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Every mdwrite test, from a fresh machine: installs what is missing, builds
# the debug kernel, the module and userspace, then runs
#   - host checks: rustfmt, clippy, cargo test (unit, property, ABI probe);
#   - mdwritesink (GStreamer) on the host with the fallback backend;
#   - the module build, which must print no warning;
#   - the VM selftests on the debug kernel (KTAP, dmesg and kmemleak checked);
#   - the runner's own tests: a failing test, a WARN and a leak must each
#     turn a VM run red;
#   - the Debian packages: lintian and host checks, and installed with dpkg
#     (DKMS building the module) in a mount namespace on the host.
# Ends with "N passed, N failed"; exits non-zero when anything failed.
set -uo pipefail

. "$(dirname "$0")/lib.sh"

passed=0 failed=0
logdir=$(mktemp -d "${TMPDIR:-/tmp}/mdwrite-tests.XXXXXX")

# check NAME CMD...: runs CMD as one test, output to a log shown on failure.
check() {
	local name=$1 log="$logdir/$1.log"
	shift
	if "$@" >"$log" 2>&1; then
		echo "ok - $name"
		passed=$((passed + 1))
	else
		echo "not ok - $name"
		sed 's/^/#   /' "$log" | tail -n 60
		failed=$((failed + 1))
	fi
}

# counts LOG REGEX: sums the "P F" figures REGEX extracts from a runner's LOG.
counts() {
	sed -nE "$2" "$1" | awk '{p+=$1; f+=$2} END {print p+0, f+0}'
}

bash "$MDW_ROOT/scripts/install-deps.sh" || die "installing dependencies failed"

ws=$MDW_ROOT/userspace/Cargo.toml
check rustfmt cargo fmt --manifest-path "$ws" --all -- --check
# The module's Rust, formatted as the kernel's `make rustfmtcheck` would
# (rustfmt follows the crate root's modules, rust/common included).
check kernel-rustfmt rustfmt --check --edition 2021 "$MDW_ROOT/rust/rust_mdwrite.rs"
# The module's files import each other without a cycle (issue 13's
# structure: each stage in the file that owns it).
check module-imports python3 "$MDW_ROOT/scripts/check-imports.py" "$MDW_ROOT/rust"
# The documents parse as reStructuredText without a warning (Debian's
# python3-docutils, from install-deps.sh).
check docs-rst /usr/bin/python3 "$MDW_ROOT/scripts/check-docs.py"
check clippy cargo clippy --manifest-path "$ws" --workspace --all-targets --release -- -D warnings

# cargo test: count its own test results.
log=$logdir/cargo-test.log
cargo test --manifest-path "$ws" --workspace --release >"$log" 2>&1
rc=$?
read -r p f < <(counts "$log" 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p')
passed=$((passed + p)) failed=$((failed + f))
if ((rc == 0)); then
	echo "ok - cargo test ($p passed)"
else
	echo "not ok - cargo test ($f failed)"
	grep -E '^(test .* FAILED|error|---- )|panicked' "$log" | head -n 40 | sed 's/^/#   /'
	# A build failure runs no test at all: count it.
	[ "$f" = 0 ] && failed=$((failed + 1))
fi

# mdwritesink on the host with the fallback (tests/gst/host.sh): a clip to
# 8 receivers byte for byte, multiudpsink's payloads, element errors.
check gst-host bash -c "cargo build --quiet --release --manifest-path '$ws' -p gst-mdwrite -p mdwrite-cli &&
	'$MDW_ROOT/tests/gst/host.sh' '$MDW_ROOT/userspace/target/release'"

check kernel-debug-build "$MDW_ROOT/scripts/build-kernel.sh" debug
check module-build-no-warnings "$MDW_ROOT/scripts/build-module.sh" debug

# The selftests in the VM, one result per KTAP line.
log=$logdir/vm.log
"$MDW_ROOT/scripts/vm-test.sh" --kernel debug >"$log" 2>&1
rc=$?
grep -E '^(ok|not ok|# )' "$log" | sed 's/^/    /'
read -r p f < <(counts "$log" 's/^vm: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p')
passed=$((passed + p)) failed=$((failed + f))
echo "$( ((rc == 0 && f == 0)) && echo ok || echo 'not ok') - vm selftests ($p passed, $f failed)"
if ((rc != 0 && f == 0)); then
	failed=$((failed + 1))
	tail -n 30 "$log" | sed 's/^/#   /'
fi

# The runner must notice each kind of failure: one VM run with the three
# canaries (a failing test, a WARN, a leak), in which each KTAP line named
# below must fail.
canary_log=$logdir/canary-all.log
if "$MDW_ROOT/scripts/vm-test.sh" --kernel debug --canary all >"$canary_log" 2>&1; then
	echo "# the runner passed a run with every canary" >>"$canary_log"
fi
caught() {
	grep -qE "^not ok [0-9]+ $1\$" "$canary_log" || {
		echo "the canary run did not fail through '$1':"
		cat "$canary_log"
		return 1
	}
}
check runner-catches-failing-test caught canary_fail
check runner-catches-warn caught dmesg_clean
check runner-catches-leak caught kmemleak_clean

# The Debian packages (Documentation/install.rst): built with debhelper,
# checked, installed and removed on the host.
check deb-build "$MDW_ROOT/scripts/build-deb.sh"
debdir=$(tail -n 1 "$logdir/deb-build.log")
for c in lintian file-capability versions channels; do
	check "deb-$c" "$MDW_ROOT/tests/packaging/checks.sh" "$c" "$debdir"
done
check deb-install "$MDW_ROOT/tests/packaging/checks.sh" install "$debdir" \
	"$("$MDW_ROOT/scripts/build-headers.sh" debug 2>/dev/null)"
# scripts/vm-packages.sh (the same in a VM, with modprobe and a send) is not
# run here: it passes, but its own boot takes 334 s of guest time on the
# release kernel and more on the debug one (the headers' dpkg -i alone 576 s),
# beyond what CI's budget has left (Documentation/install.rst, "Tests").

rm -rf "$logdir"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
