#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The install route of Documentation/install.rst, in the VM (started by
# scripts/vm-packages.sh; not one of the t_*.sh scripts: it needs the
# packages built on the host and a boot of its own).
#
#   packages.sh OUTDIR HEADERS.deb MDWRITE-DKMS.deb MDWRITE-TOOLS.deb
#
# The guest's root is the host's, read-only, under virtme-ng's tmpfs overlays
# (/etc, /usr, /var): dpkg, dkms and depmod work as on an installed system
# and nothing reaches the host. One KTAP result each: the kernel's headers
# package installed with dpkg; mdwrite-tools and mdwrite-dkms installed (the
# latter's postinst runs dkms, which builds mdwrite.ko in the guest);
# `modprobe mdwrite` from /lib/modules; the udev rule's group and mode; a
# stream sent by an unprivileged member of the group through the module,
# with CAP_NET_RAW as a file capability, and the clear errors without the
# group or the capability; the channel line-up script of the systemd unit;
# `dkms remove` and `dpkg -r`/`-P` leaving nothing behind; the kernel log.
# Writes OUTDIR/summary ("PASSED FAILED") and OUTDIR/dmesg.txt.
set -u

out=$1 hdeb=$2 dkmsdeb=$3 toolsdeb=$4
here=$(cd "$(dirname "$0")" && pwd)
krel=$(uname -r)
uid=4242
ns_snd=mdwpkg-snd ns_rcv=mdwpkg-rcv
work=/run/mdwpkg

echo "KTAP version 1"
echo "1..12"
pass=0 fail=0 n=0
# step NAME CMD: one KTAP result; CMD's output becomes diagnostics.
step() {
	local name=$1 output rc start=$SECONDS
	shift
	n=$((n + 1))
	# A failing command names itself (the steps run under set -e).
	output=$(timeout 1200 bash -Ec "trap 'echo \"failed: \$BASH_COMMAND\" >&2' ERR; $*" 2>&1)
	rc=$?
	[ -n "$output" ] && printf '%s\n' "$output" | sed 's/^/# /'
	echo "# $name: $((SECONDS - start)) s"
	if [ $rc = 0 ]; then
		echo "ok $n $name"
		pass=$((pass + 1))
	else
		echo "not ok $n $name"
		fail=$((fail + 1))
	fi
	return $rc
}
t0=$SECONDS
export krel uid ns_snd ns_rcv work out hdeb dkmsdeb toolsdeb here

# 1. virtme-ng gives the guest writable overlays on tmpfs over /etc, /usr,
# /usr/lib, /var and a tmpfs on /lib/modules (and dpkg's lock files): dpkg,
# dkms and depmod work as on an installed system and nothing reaches the host.
root_writable() {
	set -e
	mount | grep -E " on /(etc|usr|usr/lib|var|usr/lib/modules) " || true
	for d in /usr/src /etc /var/lib /lib/modules; do
		mkdir -p "$d"
		touch "$d/.mdwpkg" && rm "$d/.mdwpkg"
	done
	# virtme-ng links /lib/modules/$krel to the kernel's module tree,
	# read-only, which dpkg (the headers' build link), dkms and depmod
	# write into: a directory in the tmpfs with the same content instead,
	# its links followed, but for build (the headers package makes it).
	if [ -L "/lib/modules/$krel" ]; then
		mods=$(readlink -f "/lib/modules/$krel")
		rm "/lib/modules/$krel"
		mkdir "/lib/modules/$krel"
		for f in "$mods"/*; do
			[ "${f##*/}" = build ] || cp -rL "$f" "/lib/modules/$krel/"
		done
	fi
	# man-db's dpkg trigger rebuilds its index of every manual page on
	# the machine (3 s natively, minutes under TCG over 9p) on each
	# install and removal. man finds pages missing from the index by
	# their files, which is what step 3 checks, so the guest runs with
	# man-db/auto-update off (debconf's "no": the flag file absent).
	rm -f /var/lib/man-db/auto-update
	mkdir -p "$work"
	mountpoint -q "$work" || mount -t tmpfs -o size=64m,mode=0755 mdwpkg "$work"
	# /usr/src on a tmpfs of its own: the headers' 7,000 files land there
	# without a lookup in the 9p lower layer each.
	mount -t tmpfs -o mode=0755 mdwpkg-src /usr/src
}
# dpkg_install DEB: dpkg -i. dpkg creates each new directory as NAME.dpkg-new
# and renames it into place, which virtme-ng's overlays refuse (EXDEV: their
# tmpfs upper layer has no xattrs, this kernel has no TMPFS_XATTR); existing
# directories are left alone, so the package's directories are made first.
dpkg_install() {
	dpkg-deb -c "$1" | awk '$1 ~ /^d/ {print $6}' | sed 's|^\./|/|' | xargs mkdir -p
	dpkg --force-unsafe-io -i "$1"
}
export -f root_writable dpkg_install
step root_writable root_writable || {
	echo "# mdwrite-summary: $pass passed, $((fail + 11)) failed"
	echo "$pass $((fail + 11))" >"$out/summary"
	exit 1
}

dmesg --clear

# 2. The test kernel's headers, as its package installs them.
step headers_package '
	set -e
	ls -la /lib/modules/$krel 2>/dev/null || true
	start=$SECONDS
	dpkg_install "$hdeb"
	echo "dpkg -i of the headers: $((SECONDS - start)) s"
	test "$(readlink /lib/modules/$krel/build)" = /usr/src/linux-headers-$krel
	for f in rust/libkernel.rmeta rust/libcore.rmeta rust/libmacros.so scripts/target.json \
		include/generated/rustc_cfg Module.symvers .config; do
		test -e /lib/modules/$krel/build/$f || { echo "headers lack $f"; exit 1; }
	done'

# 3. mdwrite-tools: helper, man pages, completions, udev rule, group, unit.
step tools_package '
	set -e
	start=$SECONDS
	dpkg_install "$toolsdeb"
	echo "dpkg -i of mdwrite-tools: $((SECONDS - start)) s"
	getent group mdwrite
	test -x /usr/bin/mdwrite
	for p in mdwrite mdwrite-send mdwrite-recv mdwrite-info; do
		man -w "$p" | grep -q "/usr/share/man/man1/$p.1.gz"
		zcat "/usr/share/man/man1/$p.1.gz" | grep -q "^\.TH"
	done
	# The page as man shows it (its source spells the option \-\-loop).
	man mdwrite-send | grep -q -- "--loop"
	bash -c ". /usr/share/bash-completion/completions/mdwrite && complete -p mdwrite" | grep -q mdwrite
	grep -q "send" /usr/share/zsh/vendor-completions/_mdwrite
	grep -q "send" /usr/share/fish/vendor_completions.d/mdwrite.fish
	grep -q "GROUP=\"mdwrite\", MODE=\"0660\"" /usr/lib/udev/rules.d/60-mdwrite.rules
	systemd-analyze verify --man=no mdwrite-channels@demo.service
	echo "mdwrite-tools installed; /usr/bin/mdwrite capabilities: $(getcap /usr/bin/mdwrite)"'

# 4. mdwrite-dkms: its postinst adds, builds and installs the module with dkms.
step dkms_package '
	set -e
	start=$SECONDS
	dpkg_install "$dkmsdeb"
	echo "dpkg -i with the dkms build: $((SECONDS - start)) s"
	dkms status mdwrite
	dkms status mdwrite | grep -q "^mdwrite/0.1.0, $krel, x86_64: installed"
	test -f /lib/modules/$krel/updates/dkms/mdwrite.ko
	# dkms uninstall and install again: the built module goes back in place.
	dkms uninstall mdwrite/0.1.0 -k $krel
	test ! -e /lib/modules/$krel/updates/dkms/mdwrite.ko
	dkms install mdwrite/0.1.0 -k $krel
	test -f /lib/modules/$krel/updates/dkms/mdwrite.ko'

# 5. modprobe from /lib/modules; modinfo shows version, ABI version and the
# module's parameter.
step modprobe '
	set -e
	test "$(modinfo -n mdwrite)" = /lib/modules/$krel/updates/dkms/mdwrite.ko
	modinfo mdwrite
	test "$(modinfo -F version mdwrite)" = 0.1.0
	test "$(modinfo -F abi_version mdwrite)" = 1
	test "$(modinfo -F license mdwrite)" = GPL
	modinfo -F description mdwrite | grep -q .
	# Its one parameter, described, and documented with modinfo.
	test "$(modinfo -F parm mdwrite | cut -d: -f1)" = pace_slack_us
	modinfo -F parm mdwrite | grep -q "^pace_slack_us:paced release: .* (uint)$"
	grep -q "^    parm: *pace_slack_us:" "$here/../../Documentation/install.rst"
	modprobe mdwrite
	grep -q "^mdwrite " /proc/modules
	test -c /dev/mdwrite'

# 6. The udev rule: group mdwrite, mode 0660.
step udev_group_mode '
	set -e
	udevadm settle -t 30 || true
	for i in $(seq 50); do
		[ "$(stat -c "%G %a" /dev/mdwrite)" = "mdwrite 660" ] && break
		sleep 0.2
	done
	stat -c "/dev/mdwrite: %U %G %a" /dev/mdwrite
	test "$(stat -c "%G %a" /dev/mdwrite)" = "mdwrite 660"'

# A sender and a receiver namespace on a veth pair; 200 KiB of payload.
net_setup() {
	set -e
	ip netns add "$ns_snd"
	ip netns add "$ns_rcv"
	ip -n "$ns_snd" link add s0 type veth peer name r0 netns "$ns_rcv"
	ip -n "$ns_snd" addr add 10.97.0.1/24 dev s0
	ip -n "$ns_rcv" addr add 10.97.0.2/24 dev r0
	for ns in "$ns_snd" "$ns_rcv"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$ns_snd" link set s0 up
	ip -n "$ns_rcv" link set r0 up
	mkdir -p "$work/u"
	chmod 0755 "$work/u"
	head -c 204800 /dev/urandom >"$work/u/payload.bin"
	chmod 0644 "$work/u/payload.bin"
}
export -f net_setup
# as_user [--group] [--cap] CMD...: CMD in the sender namespace as uid 4242,
# with --group a member of mdwrite, with --cap holding CAP_NET_RAW (ambient,
# as AmbientCapabilities= of the unit gives it; the helper's file capability
# gives the same effective set, see below), otherwise no capability at all.
as_user() {
	local groups=(--clear-groups) caps=(--inh-caps=-all)
	if [ "$1" = --group ]; then
		groups=(--groups "$(getent group mdwrite | cut -d: -f3)")
		shift
	fi
	if [ "$1" = --cap ]; then
		caps=(--inh-caps=+net_raw --ambient-caps=+net_raw)
		shift
	fi
	ip netns exec "$ns_snd" setpriv --reuid "$uid" --regid "$uid" \
		"${groups[@]}" "${caps[@]}" -- "$@"
}
# recv_check PORT CMD...: CMD must deliver the payload (its first pass) to
# 10.97.0.2:PORT.
recv_check() {
	local port=$1 rpid
	shift
	rm -f "$work/rx.bin" "$work/rx.err"
	ip netns exec "$ns_rcv" mdwrite recv --listen "10.97.0.2:$port" --output "$work/rx.bin" \
		--packets 156 --idle-timeout 120 >"$work/rx.txt" 2>"$work/rx.err" &
	rpid=$!
	until grep -q "listening on" "$work/rx.err" 2>/dev/null; do sleep 0.1; done
	"$@" || { kill "$rpid"; return 1; }
	wait "$rpid" || { cat "$work/rx.err"; return 1; }
	cat "$work/rx.txt"
	cmp -n 204800 "$work/u/payload.bin" "$work/rx.bin"
}
export -f as_user recv_check

# 7. An unprivileged member of mdwrite sends through the module. The package's
# postinst gives /usr/bin/mdwrite CAP_NET_RAW as a file capability; this
# kernel can store none (its tmpfs and 9p have no security xattrs: no
# TMPFS_XATTR, no 9P_FS_SECURITY), so here the capability is ambient, which
# is what the systemd unit does; the host check packaging-file-capability
# shows the file capability gives the helper the same effective set.
step unprivileged_send '
	set -e
	net_setup
	send="send $work/u/payload.bin --to 10.97.0.2:5000 --bitrate 8M --format raw --backend module"
	# Without the group: the node cannot be opened.
	if as_user --cap /usr/bin/mdwrite $send >"$work/e1" 2>&1; then echo "sent without the group"; exit 1; fi
	cat "$work/e1"
	grep -q "cannot open /dev/mdwrite: Permission denied" "$work/e1"
	# In the group, without the capability.
	if as_user --group /usr/bin/mdwrite $send >"$work/e2" 2>&1; then echo "sent without CAP_NET_RAW"; exit 1; fi
	cat "$work/e2"
	grep -q "needs CAP_NET_RAW" "$work/e2"
	# In the group, with the capability: the data arrives byte for byte.
	recv_check 5000 as_user --group --cap /usr/bin/mdwrite $send >"$work/s" 2>&1 || { cat "$work/s"; exit 1; }
	cat "$work/s"
	grep -q "backend=module" "$work/s"'

# 8. The unit's ExecStart on a channel line-up, as the same user.
step channels_unit '
	set -e
	printf "%s\n" "# one channel, raw bytes, through the module" \
		"options --bitrate 8M --format raw --backend module --duration 5" \
		"$work/u/payload.bin 10.97.0.2:5002" >"$work/u/lineup.conf"
	chmod 0644 "$work/u/lineup.conf"
	/usr/libexec/mdwrite/mdwrite-channels --dry-run "$work/u/lineup.conf"
	# send --loop for 5 s; the receiver checks the first pass.
	recv_check 5002 as_user --group --cap /usr/libexec/mdwrite/mdwrite-channels \
		"$work/u/lineup.conf" >"$work/c" 2>&1 || { cat "$work/c"; exit 1; }
	cat "$work/c"
	grep -q "backend=module" "$work/c"'

# 9. modprobe -r, then dkms remove: no module left in /lib/modules.
step dkms_remove '
	set -e
	ip netns del "$ns_snd" 2>/dev/null || true
	ip netns del "$ns_rcv" 2>/dev/null || true
	modprobe -r mdwrite
	dkms remove mdwrite/0.1.0 --all
	test ! -e /var/lib/dkms/mdwrite
	left=$(find /lib/modules/$krel -name "mdwrite.ko*")
	test -z "$left" || { echo "left: $left"; exit 1; }
	! grep -q mdwrite /lib/modules/$krel/modules.dep
	! modprobe -n mdwrite 2>/dev/null'

# 10. dpkg -r then -P of both packages: none of their files stays.
step packages_removed '
	set -e
	files=$( (dpkg -L mdwrite-dkms; dpkg -L mdwrite-tools) | sort -u)
	dpkg -r mdwrite-dkms mdwrite-tools
	dpkg -P mdwrite-dkms mdwrite-tools
	for p in mdwrite-dkms mdwrite-tools; do
		! dpkg -s "$p" >/dev/null 2>&1 || { echo "$p still known to dpkg"; exit 1; }
	done
	left=
	for f in $files; do
		[ -d "$f" ] && continue
		[ -e "$f" ] || [ -L "$f" ] && left+=" $f"
	done
	test -z "$left" || { echo "left:$left"; exit 1; }
	test ! -e /usr/src/mdwrite-0.1.0
	test ! -e /var/lib/dkms/mdwrite
	test -z "$(find /lib/modules/$krel -name "mdwrite.ko*")"
	echo "the group mdwrite stays (Debian keeps system groups): $(getent group mdwrite)"'

# 11. The headers package goes the same way.
step headers_removed '
	set -e
	dpkg -P "linux-headers-$krel"
	test ! -e /usr/src/linux-headers-$krel
	test ! -e /lib/modules/$krel/build'

# 12. The kernel log of all this.
step dmesg_clean "bash $here/check-dmesg.sh $out/dmesg.txt"

echo "# packages: $((SECONDS - t0)) s"
echo "# mdwrite-summary: $pass passed, $fail failed"
echo "$pass $fail" >"$out/summary"
[ "$fail" = 0 ]
