#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Host checks of the Debian packages (scripts/run-tests.sh runs each; the VM
# half is scripts/vm-packages.sh).
#
#   tests/packaging/checks.sh lintian|file-capability|versions|channels DEBDIR
#   tests/packaging/checks.sh install DEBDIR HEADERS.deb
#
# lintian          lintian --pedantic on the packages: no error, no warning,
#                  no unexplained info (overrides carry their reason).
# file-capability  the postinst's `setcap cap_net_raw+ep` on the packaged
#                  helper gives it CAP_NET_RAW when an unprivileged user runs
#                  it (the VM's kernel cannot store file capabilities).
# versions         the module's MODULE_VERSION, dkms.conf, debian/changelog
#                  and the cargo workspace name one version.
# channels         the unit's line-up script: the command it builds, and its
#                  errors on a bad line-up.
# install          on the host, in a mount namespace of its own whose /usr,
#                  /etc and /var are tmpfs overlays (nothing reaches the
#                  host): the test kernel's headers package, mdwrite-tools
#                  (group, file capability on /usr/bin/mdwrite, man pages)
#                  and mdwrite-dkms (DKMS builds the module for the newest
#                  kernel in /lib/modules, the test kernel) with dpkg; dkms
#                  uninstall/install/remove; dpkg -r and -P leave no file.
#                  The VM test does the same and also loads and uses the
#                  module; this one runs in a minute.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
what=$1 debdir=${2:-}
version=$(dpkg-parsechangelog -l "$root/debian/changelog" -SVersion)
fail() { echo "FAIL: $*"; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

case "$what" in
lintian)
	cd "$debdir"
	lintian --allow-root --pedantic -I --fail-on error,warning,info \
		mdwrite-dkms_"$version"_all.deb mdwrite-tools_"$version"_*.deb
	echo "lintian: clean"
	;;
file-capability)
	dpkg-deb -x "$debdir"/mdwrite-tools_"$version"_*.deb "$scratch/root"
	bin=$scratch/root/usr/bin/mdwrite
	chmod 0755 "$scratch" "$scratch/root" "$scratch/root/usr" "$scratch/root/usr/bin"
	grep -q 'setcap cap_net_raw+ep /usr/bin/mdwrite' "$root/debian/mdwrite-tools.postinst" ||
		fail "the postinst no longer sets the capability"
	setcap cap_net_raw+ep "$bin"
	getcap "$bin"
	# An unprivileged user with no capability of its own runs it: CapEff
	# must be exactly CAP_NET_RAW (bit 13).
	setpriv --reuid 4242 --regid 4242 --clear-groups --inh-caps=-all \
		"$bin" recv --listen 127.0.0.1:0 --duration 3 >"$scratch/out" 2>&1 &
	pid=$!
	sleep 1
	eff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
	uid=$(awk '/^Uid:/ {print $3}' "/proc/$pid/status")
	wait "$pid" || fail "mdwrite recv failed: $(cat "$scratch/out")"
	echo "uid $uid CapEff $eff"
	[ "$uid" = 4242 ] && [ "$eff" = 0000000000002000 ] ||
		fail "expected uid 4242 with CapEff 0000000000002000 (CAP_NET_RAW)"
	;;
versions)
	mod=$(sed -n 's/^MODULE_VERSION("\(.*\)");$/\1/p' "$root/rust/mdwrite_helpers.c")
	dkms=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' "$root/dkms.conf")
	cargo=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$root/userspace/Cargo.toml")
	echo "module $mod, dkms.conf $dkms, debian/changelog $version, cargo $cargo"
	[ "$mod" = "$version" ] && [ "$dkms" = "$version" ] && [ "$cargo" = "$version" ] ||
		fail "the versions differ"
	grep -q "mdwrite/$version" "$root/tests/vm/packages.sh" || fail "tests/vm/packages.sh names another version"
	;;
channels)
	script=$root/packaging/mdwrite-channels
	printf '%s\n' '# comment' '' 'options --rtp --interface eth1' \
		'/srv/a.ts 10.0.0.1:5000 10.0.0.2:5000' '/srv/b.ts [fd00::1]:5002' >"$scratch/ok.conf"
	got=$(MDWRITE=mdwrite "$script" --dry-run "$scratch/ok.conf" 2>/dev/null)
	want='mdwrite send --loop /srv/a.ts --to 10.0.0.1:5000 --to 10.0.0.2:5000 /srv/b.ts --to \[fd00::1\]:5002 --rtp --interface eth1 '
	[ "$got" = "$want" ] || fail "line-up command: got '$got', want '$want'"
	echo "$got"
	printf '%s\n' '/srv/a.ts' >"$scratch/bad.conf"
	if err=$("$script" "$scratch/bad.conf" 2>&1); then fail "accepted a channel without destination"; fi
	echo "$err"
	grep -q "bad.conf:1: a channel needs a file and at least one destination" <<<"$err" || fail "unclear error: $err"
	printf '%s\n' '# nothing' >"$scratch/empty.conf"
	if err=$("$script" "$scratch/empty.conf" 2>&1); then fail "accepted an empty line-up"; fi
	grep -q "has no channel" <<<"$err" || fail "unclear error: $err"
	if err=$("$script" "$scratch/missing.conf" 2>&1); then fail "accepted a missing file"; fi
	grep -q "cannot read" <<<"$err" || fail "unclear error: $err"
	# The unit itself, as systemd would load it.
	mkdir -p "$scratch/units"
	cp "$root/packaging/mdwrite-channels@.service" "$scratch/units/"
	if command -v systemd-analyze >/dev/null; then
		SYSTEMD_UNIT_PATH=$scratch/units: systemd-analyze verify --man=no \
			mdwrite-channels@demo.service 2>&1 | grep -v 'mdwrite-channels is not executable' |
			tee "$scratch/verify" || true
		! grep -q . "$scratch/verify" || fail "systemd-analyze verify complained"
	fi
	;;
install)
	hdeb=$3
	if [ -z "${MDW_IN_NS:-}" ]; then
		MDW_IN_NS=1 exec unshare -m --propagation private "$0" "$@"
	fi
	krel=$(dpkg-deb -f "$hdeb" Package | sed 's/^linux-headers-//')
	# Only this namespace sees the mounts; the directory must be free to go.
	trap 'cd /; umount -l /usr /etc /var "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
	mount -t tmpfs -o size=2g,mode=0755 mdwpkg "$scratch"
	for d in usr etc var; do
		mkdir -p "$scratch/$d.u" "$scratch/$d.w"
		mount -t overlay "mdwpkg-$d" -o "lowerdir=/$d,upperdir=$scratch/$d.u,workdir=$scratch/$d.w" "/$d"
	done
	[ ! -e "/lib/modules/$krel" ] || fail "the host has /lib/modules/$krel already"
	dpkg --force-unsafe-io -i "$hdeb" >/dev/null
	[ "$(readlink "/lib/modules/$krel/build")" = "/usr/src/linux-headers-$krel" ] || fail "no build link"
	dpkg --force-unsafe-io -i "$debdir"/mdwrite-tools_"$version"_*.deb
	getent group mdwrite || fail "no group mdwrite"
	getcap /usr/bin/mdwrite | grep -q cap_net_raw || fail "no file capability on /usr/bin/mdwrite"
	man -w mdwrite-send | grep -q /usr/share/man/man1/mdwrite-send.1.gz || fail "man mdwrite-send not found"
	setpriv --reuid 4242 --regid 4242 --clear-groups --inh-caps=-all \
		/usr/bin/mdwrite recv --listen 127.0.0.1:0 --duration 2 >/dev/null 2>&1 &
	pid=$!
	sleep 1
	eff=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
	wait "$pid" || fail "mdwrite recv as uid 4242 failed"
	[ "$eff" = 0000000000002000 ] || fail "installed helper run by uid 4242: CapEff $eff, not CAP_NET_RAW"
	echo "installed /usr/bin/mdwrite run by uid 4242: CapEff $eff (CAP_NET_RAW)"
	dpkg --force-unsafe-io -i "$debdir"/mdwrite-dkms_"$version"_all.deb
	dkms status mdwrite | grep -q "^mdwrite/$version, $krel, x86_64: installed" ||
		fail "dkms did not install the module for $krel: $(dkms status mdwrite)"
	ko=/lib/modules/$krel/updates/dkms/mdwrite.ko
	[ "$(modinfo -F version "$ko")" = "$version" ] || fail "modinfo version"
	[ "$(modinfo -F abi_version "$ko")" = 1 ] || fail "modinfo abi_version"
	grep -q '^updates/dkms/mdwrite.ko:' "/lib/modules/$krel/modules.dep" || fail "not in modules.dep"
	dkms uninstall "mdwrite/$version" -k "$krel" >/dev/null
	[ ! -e "$ko" ] || fail "dkms uninstall left $ko"
	dkms install "mdwrite/$version" -k "$krel" >/dev/null
	[ -f "$ko" ] || fail "dkms install did not put $ko back"
	files=$( (dpkg -L mdwrite-dkms; dpkg -L mdwrite-tools) | sort -u)
	dkms remove "mdwrite/$version" --all >/dev/null
	[ ! -e /var/lib/dkms/mdwrite ] || fail "dkms remove left /var/lib/dkms/mdwrite"
	[ -z "$(find "/lib/modules/$krel" -name 'mdwrite.ko*')" ] || fail "dkms remove left a module"
	! grep -q mdwrite "/lib/modules/$krel/modules.dep" || fail "modules.dep still names mdwrite"
	dpkg -r mdwrite-dkms mdwrite-tools >/dev/null
	dpkg -P mdwrite-dkms mdwrite-tools >/dev/null
	left=
	for f in $files; do
		[ -d "$f" ] && continue
		if [ -e "$f" ] || [ -L "$f" ]; then left+=" $f"; fi
	done
	[ -z "$left" ] || fail "dpkg -P left:$left"
	[ ! -e "/usr/src/mdwrite-$version" ] || fail "dpkg -P left /usr/src/mdwrite-$version"
	dpkg -P "linux-headers-$krel" >/dev/null 2>&1
	[ ! -e "/lib/modules/$krel/build" ] || fail "the headers package left its build link"
	echo "installed, built by DKMS for $krel, removed and purged: nothing left"
	;;
*)
	echo "usage: $0 lintian|file-capability|versions|channels DEBDIR | install DEBDIR HEADERS.deb" >&2
	exit 2
	;;
esac
