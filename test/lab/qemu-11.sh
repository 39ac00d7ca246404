#!/usr/bin/env bash
# Provides QEMU 11.1 from Debian's packages for the tests, and prints the path of its
# qemu-system-x86_64 (use it as COLO_TEST_QEMU=...; qemu-img sits beside it).
#
# Why: Debian 12's QEMU 7.2 (and Debian 13's 10.0) hang the COLO primary at the end of its first
# checkpoint under TCG; 11.1 (trixie-backports, forky) completes checkpoints.
#
# How: a minimal Debian 13 (trixie) chroot made by debootstrap, with qemu-system-x86 and qemu-utils
# from trixie-backports, cached under $COLO_QEMU11_CACHE (default /var/cache/colo-agent-test/qemu-11):
# about 75 s and 600 MB the first time, nothing after. The wrappers run QEMU in the chroot inside a
# private mount namespace of its own (unshare -m: the mounts vanish with the process, nothing stays
# mounted on the machine) where /dev, /proc, /sys, /tmp and /run are the machine's (bind mounts), so
# unix sockets, disk images under /tmp, /dev/kvm and tap devices are the same paths inside and out.
# Each wrapper execs all the way down: its pid is QEMU's, signals reach QEMU, and under
# `ip netns exec` QEMU stays in that network namespace.
#
# Needs root, and network access to deb.debian.org (or $COLO_QEMU11_MIRROR). Exit 0 and the path on
# stdout, progress on stderr; exit 1 with the reason otherwise.
set -euo pipefail

cache=${COLO_QEMU11_CACHE:-/var/cache/colo-agent-test/qemu-11}
mirror=${COLO_QEMU11_MIRROR:-http://deb.debian.org/debian}
root=$cache/root
bin=$cache/bin
want_major=11
want_minor=1

say() { echo "qemu-11: $*" >&2; }
fail() { say "$*"; exit 1; }

ready() {
  [ -x "$bin/qemu-system-x86_64" ] || return 1
  local v
  v=$("$bin/qemu-system-x86_64" --version 2>/dev/null | sed -nE 's/^QEMU emulator version ([0-9]+)\.([0-9]+).*/\1 \2/p')
  [ -n "$v" ] && read -r major minor <<<"$v" && { [ "$major" -gt "$want_major" ] || { [ "$major" -eq "$want_major" ] && [ "$minor" -ge "$want_minor" ]; }; }
}

if ready; then
  echo "$bin/qemu-system-x86_64"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, unshare -m)"
command -v unshare >/dev/null || fail "needs unshare (util-linux)"
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
    fail "cannot install debootstrap"
fi

# In the chroot, with the machine's /dev, /proc, /sys bound in, in a mount namespace of its own.
in_root() {
  unshare -m --propagation private sh -c '
    r=$1; shift
    for d in dev proc sys; do mount --rbind "/$d" "$r/$d"; done
    exec chroot "$r" "$@"' in_root "$root" "$@"
}

start=$(date +%s)
rm -rf "$root" "$bin"
mkdir -p "$root" "$bin"
say "debootstrap trixie (minbase) into $root"
debootstrap --variant=minbase trixie "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
  fail "debootstrap failed (log: $cache/debootstrap.log)"
echo "deb $mirror trixie-backports main" >"$root/etc/apt/sources.list.d/backports.list"
say "qemu-system-x86 and qemu-utils from trixie-backports"
in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t trixie-backports qemu-system-x86 qemu-utils' \
  >"$cache/apt.log" 2>&1 || fail "apt-get in the chroot failed (log: $cache/apt.log)"
rm -rf "$root/var/cache/apt/archives/"*.deb

for prog in qemu-system-x86_64 qemu-img; do
  # The working directory carries over when it exists inside (it does under /tmp and /run).
  sed -e "s|@ROOT@|$root|g" -e "s|@PROG@|$prog|g" >"$bin/$prog" <<'EOF'
#!/bin/sh
# @PROG@ from the QEMU 11 chroot @ROOT@ (made by test/lab/qemu-11.sh, which says why and how).
export COLO_PWD="$PWD"
exec unshare -m --propagation private sh -c '
  for d in dev proc sys tmp run; do mount --rbind "/$d" "@ROOT@/$d"; done
  exec chroot @ROOT@ /bin/sh -c "cd \"\$COLO_PWD\" 2>/dev/null || cd /; exec /usr/bin/@PROG@ \"\$@\"" @PROG@ "$@"' wrapper "$@"
EOF
  chmod 755 "$bin/$prog"
done
ready || fail "the chroot's QEMU is not $want_major.$want_minor or newer: $("$bin/qemu-system-x86_64" --version 2>&1 | head -n 1)"
say "ready in $(($(date +%s) - start)) s: $("$bin/qemu-system-x86_64" --version | head -n 1)"
echo "$bin/qemu-system-x86_64"
