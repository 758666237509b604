#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `mdwrite relay --to-file` with the module, destinations changed while it
# runs: a source namespace sends a clip over RTP to a relay namespace, which
# fans it out to receiver 1 (--to) and receivers 2 and 3 (--to-file).
# Between the clip's two parts (two sends, one stream at the receivers),
# the file is rewritten to list receivers 2 and 4 and the relay gets
# SIGHUP: receiver 3 is removed (MDW_IOC_DEST_DEL,
# with asynchronous calls naming it possibly still in flight) and receiver
# 4 added. Checks: the relay said "removed" and "added"; receivers 1 and 2
# got the clip byte for byte with no loss, reordering or sequence error;
# receiver 3 got a beginning of the clip in whole packets and nothing after
# it, receiver 4 the rest from a packet boundary, in order and without a
# gap: the two together are the clip, each exactly the packets the relay
# handed to the module for it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../media/lib.sh"
relay_pid=
rmem_max=$(sysctl -n net.core.rmem_max)
cleanup() {
	[ -z "$relay_pid" ] || kill "$relay_pid" 2>/dev/null
	sysctl -qw net.core.rmem_max="$rmem_max"
	media_cleanup
}
trap cleanup EXIT

# As in t_relay.sh: room for the relay's 8 MiB socket buffer.
sysctl -qw net.core.rmem_max=$((16 << 20))
backend=${MDW_MEDIA_BACKEND:-module}
[ "$backend" != module ] || test -c /dev/mdwrite || media_fail "the module is not loaded"
# Namespace r0 is the relay, r1..r4 the receivers.
media_setup 5
clip=$MDW_MEDIA_DIR/clip.ts
media_clip "$clip" 3 1500000
packets=$(media_packets "$clip")
size=$(stat -c %s "$clip")
# The 3 s clip sent at 600 kb/s: about 7.5 s, room for the signal to land
# well inside the stream on the debug kernel under TCG.
rate=600000
hup_at=120
pin=(taskset -c 0)

media_log "starting 4 receivers"
for i in 1 2 3 4; do
	limit=()
	# Receivers 1 and 2 stop at the whole clip, 3 and 4 at a signal.
	[ "$i" -gt 2 ] || limit=(--packets "$packets")
	ip netns exec "$(media_rx_ns "$i")" mdwrite recv --rtp \
		--listen "$(media_rx_addr "$i"):5000" --output "$MDW_MEDIA_DIR/out$i.ts" \
		"${limit[@]}" --idle-timeout 120 --fail-on-loss \
		>"$MDW_MEDIA_DIR/recv$i.txt" 2>"$MDW_MEDIA_DIR/recv$i.err" &
	media_recv_pids+=($!)
done
for i in 1 2 3 4; do
	media_until 60 'media_has "$MDW_MEDIA_DIR/recv$i.err" "listening on"' \
		'receiver $i did not start: $(cat "$MDW_MEDIA_DIR/recv$i.err")'
done
rx() { echo "$(media_rx_addr "$1"):5000"; }

media_log "starting the relay"
list=$MDW_MEDIA_DIR/dests
printf '# the destinations\n%s\n%s\n' "$(rx 2)" "$(rx 3)" >"$list"
ip netns exec "$(media_rx_ns 0)" "${pin[@]}" mdwrite relay --rtp --backend "$backend" \
	--listen "$(media_rx_addr 0):6000" --to "$(rx 1)" --to-file "$list" \
	>"$MDW_MEDIA_DIR/relay.txt" 2>"$MDW_MEDIA_DIR/relay.err" &
relay_pid=$!
media_until 60 'media_has "$MDW_MEDIA_DIR/relay.err" "listening on"' \
	'the relay did not start: $(cat "$MDW_MEDIA_DIR/relay.err")'

# The clip in two parts at a packet boundary: its first $hup_at packets,
# sent before the reload, and the rest, sent after it. (Stopping one
# source mid-stream with SIGSTOP raced the end of its stream: in a full
# run the source, on a CPU it shares with the relay, had sent everything
# before the signal came.)
part=$((hup_at * 1316))
head -c "$part" "$clip" >"$MDW_MEDIA_DIR/part1.ts"
tail -c +$((part + 1)) "$clip" >"$MDW_MEDIA_DIR/part2.ts"
# Unpaced, one sending thread, for the order; the source and the relay on
# one CPU (see t_relay.sh).
send_part() {
	ip netns exec "$(media_snd_ns)" "${pin[@]}" mdwrite send "$MDW_MEDIA_DIR/part$1.ts" \
		--to "$(media_rx_addr 0):6000" --rtp --backend "$backend" --pace off --bitrate "$rate" \
		>"$MDW_MEDIA_DIR/send$1.txt" 2>"$MDW_MEDIA_DIR/send$1.err" ||
		media_fail "mdwrite send of part $1 failed: $(cat "$MDW_MEDIA_DIR/send$1.txt" "$MDW_MEDIA_DIR/send$1.err")"
	grep -v '^stats ' "$MDW_MEDIA_DIR/send$1.txt"
}
media_log "sending the first $hup_at of $packets packets to the relay at $rate b/s"
send_part 1
sent=$hup_at
# Let the relay catch up first (its socket's queue empty), so that the
# removed receiver has had the first part.
media_until 60 'media_udp "$relay_pid" 6000 && [ "$((16#$media_udp_rxq))" = 0 ]' \
	'the relay did not catch up: $(cat "/proc/$relay_pid/net/udp")'
printf '%s\n%s\n' "$(rx 2)" "$(rx 4)" >"$list.new"
mv "$list.new" "$list"
kill -HUP "$relay_pid"
media_log "SIGHUP after $sent of $packets packets: receiver 3 out, 4 in"
media_until 60 'media_has "$MDW_MEDIA_DIR/relay.err" "mdwrite relay: added "' \
	'the relay did not reload: $(cat "$MDW_MEDIA_DIR/relay.err")'
media_log "sending the rest"
send_part 2

# Receivers 1 and 2 stop at the last packet; then the relay stops (after
# its calls in flight) and, a moment later, 3 and 4.
rc=0
for i in 0 1; do wait "${media_recv_pids[$i]}" || rc=1; done
kill -TERM "$relay_pid"
wait "$relay_pid" || media_fail "the relay failed: $(cat "$MDW_MEDIA_DIR/relay.err")"
relay_pid=
sleep 2
# (Their exit status is judged after the relay's messages, which say
# more when the reload did not happen.)
rc34=0
for i in 2 3; do
	kill -TERM "${media_recv_pids[$i]}"
	wait "${media_recv_pids[$i]}" || rc34=1
done
media_recv_pids=()
cat "$MDW_MEDIA_DIR/relay.err" "$MDW_MEDIA_DIR/relay.txt"
[ "$rc" = 0 ] || media_fail "a receiver failed: $(cat "$MDW_MEDIA_DIR"/recv*)"

media_log "checking"
err=$(cat "$MDW_MEDIA_DIR/relay.err")
grep -qx "mdwrite relay: removed $(rx 3)" <<<"$err" || media_fail "the relay did not report removing receiver 3: $err"
grep -qx "mdwrite relay: added $(rx 4)" <<<"$err" || media_fail "the relay did not report adding receiver 4: $err"
[ "$(grep -c "^mdwrite relay: \(added\|removed\) " <<<"$err")" = 2 ] && ! grep -q "SIGHUP:" <<<"$err" ||
	media_fail "the relay reported other changes or a failed reload: $err"
[ "$rc34" = 0 ] || media_fail "receiver 3 or 4 failed: $(cat "$MDW_MEDIA_DIR"/recv[34]*)"
read -r head <"$MDW_MEDIA_DIR/relay.txt"
media_expect relay "$head" backend="$backend" datagrams="$packets" truncated=0 not_rtp=0 write_errors=0
# The relay's own count of the packets handed over for receiver I, and
# whether it is still a destination.
dest() { media_field "$(grep "^dest to=$(rx "$1") " "$MDW_MEDIA_DIR/relay.txt")" "$2"; }
[ "$(grep -c '^dest ' "$MDW_MEDIA_DIR/relay.txt")" = 4 ] || media_fail "4 dest lines expected: $(cat "$MDW_MEDIA_DIR/relay.txt")"
for i in 1 2 3 4; do
	want=true
	[ "$i" != 3 ] || want=false
	[ "$(dest "$i" active)" = "$want" ] || media_fail "receiver $i: active=$want expected: $(cat "$MDW_MEDIA_DIR/relay.txt")"
	mapfile -t lines <"$MDW_MEDIA_DIR/recv$i.txt"
	line=${lines[*]}
	[ "${#lines[@]}" = 1 ] || media_fail "receiver $i: not one stream: $line"
	media_expect "receiver $i" "$line" "${media_clean_stream[@]}"
	got=$(media_field "$line" packets)
	[ "$got" = "$(dest "$i" packets)" ] ||
		media_fail "receiver $i: $got packets, the relay handed over $(dest "$i" packets): $line"
	n[i]=$(stat -c %s "$MDW_MEDIA_DIR/out$i.ts")
done
# Kept throughout: everything.
for i in 1 2; do
	[ "$(media_field "$(cat "$MDW_MEDIA_DIR/recv$i.txt")" packets)" = "$packets" ] ||
		media_fail "receiver $i: $packets packets expected: $(cat "$MDW_MEDIA_DIR/recv$i.txt")"
	cmp -s "$clip" "$MDW_MEDIA_DIR/out$i.ts" || media_fail "receiver $i: the payload differs from the clip"
done
# Removed: a beginning, whole packets, none after it.
((n[3] > 0 && n[3] < size && n[3] % 1316 == 0)) || media_fail "receiver 3: ${n[3]} bytes of $size"
cmp -s -n "${n[3]}" "$clip" "$MDW_MEDIA_DIR/out3.ts" || media_fail "receiver 3: not the clip's first ${n[3]} bytes"
# Added: the rest, from a packet boundary on.
((n[4] > 0 && n[4] < size && (size - n[4]) % 1316 == 0)) || media_fail "receiver 4: ${n[4]} bytes of $size"
cmp -s -i "$((size - n[4])):0" "$clip" "$MDW_MEDIA_DIR/out4.ts" ||
	media_fail "receiver 4: not the clip's last ${n[4]} bytes"
# Nothing lost and nothing twice at the switch.
((n[3] + n[4] == size)) || media_fail "receivers 3 and 4: ${n[3]} + ${n[4]} bytes, the clip has $size"
echo "ok: SIGHUP mid-stream (after $sent of $packets packets) removed receiver 3 after $((n[3] / 1316)) packets" \
	"and added receiver 4 for the other $((n[4] / 1316)); receivers 1 and 2 byte-exact throughout"
