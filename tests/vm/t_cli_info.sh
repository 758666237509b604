#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `mdwrite info` reports the kernel backend and the module's ABI version.
set -eu
out=$(mdwrite info)
echo "$out"
grep -qx 'backend: kernel module (/dev/mdwrite)' <<<"$out"
grep -qx 'abi_version: 1' <<<"$out"
