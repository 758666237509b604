#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Host checks of the Debian packages (scripts/run-tests.sh runs each; the VM
# half is scripts/vm-packages.sh).
#
#   tests/packaging/checks.sh lintian|file-capability|versions|channels DEBDIR
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
*)
	echo "usage: $0 lintian|file-capability|versions|channels DEBDIR" >&2
	exit 2
	;;
esac
