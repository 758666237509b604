#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `mdwrite send --backend module` errors a person can act on: no right to
# open /dev/mdwrite, no CAP_NET_RAW for a destination, no route, unknown
# interface; each exits 1 with a message saying so.
set -eu
dir=$(mktemp -d /tmp/mdw-cli.XXXXXX)
ns=mdwe$$
trap 'ip netns del $ns 2>/dev/null; rm -rf "$dir"' EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
head -c 100000 /dev/zero >"$dir/data"
chmod 755 "$dir"
chmod 644 "$dir/data"

# expect CODE MESSAGE COMMAND...: COMMAND exits CODE with MESSAGE on stderr.
expect() {
	local code=$1 msg=$2 rc=0 err
	shift 2
	err=$("$@" 2>&1 >/dev/null) || rc=$?
	if [ "$rc" != "$code" ] || ! grep -qF -- "$msg" <<<"$err"; then
		echo "FAIL: $* exited $rc (want $code): $err (want: $msg)"
		exit 1
	fi
	echo "ok: $*: $err"
}

send=(mdwrite send "$dir/data" --bitrate 1M --backend module)
expect 1 "Permission denied (os error 13): the module is for root and members of the mdwrite group" \
	setpriv --reuid=65534 --regid=65534 --clear-groups "${send[@]}" --to 127.0.0.1:5000
expect 1 "Operation not permitted (os error 1): the module backend needs CAP_NET_RAW (run as root, or install the packages" \
	setpriv --bounding-set=-net_raw --inh-caps=-net_raw "${send[@]}" --to 127.0.0.1:5000
expect 1 "no route to 192.0.2.1:5000" \
	ip netns exec "$ns" "${send[@]}" --to 192.0.2.1:5000
expect 1 'unknown interface "nosuch0"' \
	"${send[@]}" --to 127.0.0.1:5000 --interface nosuch0
