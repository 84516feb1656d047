#!/usr/bin/env bash
# bproc-rs: the one entry point. Run as root on Debian 12:
#   bash x.sh demo    bring up a 4-node cluster, show bpsh, bpstat, ps, kill and rfork working, tear it down
#   bash x.sh test    the whole test suite (what CI runs)
#   bash x.sh bench   the benchmarks; writes docs/BENCHMARKS.md
#   bash x.sh setup   only install what the project needs (idempotent; quick when done)
set -euo pipefail
cd "$(dirname "$0")"

# Whatever started us may have left descriptors open (a CI runner's sockets or log files):
# the builds, clusters and tests below start without them.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  if [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'x.sh: %s\n' "$*" >&2; exit 1; }

# Debian packages the build, the harness, the tests and the benchmarks use.
PACKAGES=(
  build-essential pkg-config    # cc for crates that build C
  iproute2 util-linux procps    # ip netns/veth/bridge; unshare, nsenter, setpriv; ps
  hostname coreutils tmux       # tools the tests run (tmux drives an interactive shell)
  openssh-server openssh-client # the ssh side of the benchmarks
  llvm-22-dev                   # bpf-linker links against LLVM 22 (Debian 12: bookworm-security)
  libcap2-bin                   # setcap: bpghost's CAP_CHECKPOINT_RESTORE
  iptables                      # CRIU locks the network with iptables-restore while it dumps
)

# CRIU (process migration) is built from the upstream source that Debian's unstable suite carries:
# Debian 12's own criu 3.17 fails on current kernels. These are its build dependencies.
CRIU_BUILD_PACKAGES=(
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev libnl-3-dev
  libnl-route-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev libnftables-dev uuid-dev
  libaio-dev python3-protobuf
)
CRIU=/usr/local/sbin/criu

# Nodes number the processes forked on them in ranges of the upper half of the PID space, so their
# ghosts can mostly have the same PIDs on the master; that needs room (the kernel's maximum).
PID_MAX=4194304

# Installs the Debian packages named in the arguments that are not installed yet.
install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    # Installing openssh-server must not start a system sshd.
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
  fi
}

setup() {
  [ "$(id -u)" = 0 ] || die "run as root (the harness makes namespaces, veths and bridges)"
  install_packages "${PACKAGES[@]}"
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust 1.95 or newer with rustup (https://rustup.rs)"
  local have; have=$(rustc --version | awk '{print $2}')
  if [ "$(printf '%s\n1.95.0\n' "$have" | sort -V | head -1)" != "1.95.0" ]; then
    say "rustc $have is older than 1.95; installing stable with rustup"
    rustup toolchain install stable --profile minimal >/dev/null
  fi
  setup_ebpf
  setup_criu
  if [ "$(cat /proc/sys/kernel/pid_max)" -lt "$PID_MAX" ]; then
    say "raising kernel.pid_max to $PID_MAX (room for per-node PID ranges)"
    sysctl -q -w kernel.pid_max="$PID_MAX"
  fi
}

# The eBPF probes (crates/ebpf-probes-ebpf) build with a pinned nightly whose LLVM matches
# bpf-linker's (22); later nightlies carry LLVM 23 and bpf-linker 0.13 then fails ("Invalid record").
setup_ebpf() {
  local nightly; nightly=$(tr -d '[:space:]' <crates/ebpf-probes-ebpf/toolchain.txt)
  if ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src'; then
    say "installing the probe toolchain $nightly with rust-src"
    rustup toolchain install "$nightly" --profile minimal --component rust-src >/dev/null
  fi
  if ! bpf-linker --version 2>/dev/null | grep -q '^bpf-linker 0\.13\.'; then
    say "installing bpf-linker 0.13 (built against LLVM 22, about a minute)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version '~0.13' \
      --no-default-features --features llvm-22
  fi
}

# CRIU 4.x into $CRIU, from the orig tarball of Debian unstable's source package (fetched through a
# private apt configuration whose mirror is the one this machine already uses). Skipped when a 4.x
# is there.
setup_criu() {
  if "$CRIU" --version 2>/dev/null | grep -q '^Version: 4\.'; then return; fi
  install_packages "${CRIU_BUILD_PACKAGES[@]}"
  say "building CRIU 4.x from Debian unstable's source (a minute or two)"
  local work uri; work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt"
  mkdir -p "$work/parts" "$work/lists/partial" "$work/src"
  printf 'Types: deb-src\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" >"$work/parts/sid-src.sources"
  local apt=(apt-get -qq -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/parts"
    -o "Dir::State::Lists=$work/lists")
  "${apt[@]}" update
  # The .debian.tar.xz may be missing from the mirror; only the upstream tarball is needed.
  (cd "$work/src" && "${apt[@]}" source --download-only criu) >"$work/fetch.log" 2>&1 || true
  local tarball; tarball=$(ls "$work"/src/criu_*.orig.tar.* 2>/dev/null | head -1)
  [ -n "$tarball" ] || { cat "$work/fetch.log"; die "could not download CRIU's source from Debian unstable"; }
  tar -xf "$tarball" -C "$work/src"
  local dir; dir=$(find "$work/src" -maxdepth 1 -type d -name 'criu-*' | head -1)
  make -C "$dir" -j"$(nproc)" criu >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; die "building CRIU failed"; }
  install -m 0755 "$dir/criu/criu" "$CRIU"
  "$CRIU" --version | head -1
}

build() {
  say "building (release)"
  cargo build --release --workspace --bins --locked
  cargo build --release -p libbproc-c --locked
  # The ghost of a process forked on a node asks the kernel for that process's PID (clone3 set_tid).
  setcap cap_checkpoint_restore+ep target/release/bpghost
  install_c_api
}

# What C programs need: `cc prog.c -lbproc` finds sys/bproc.h and libbproc.so, and an rfork'd
# process finds the ghost program it becomes on the front end.
install_c_api() {
  install -d /usr/local/include/sys /usr/local/lib /usr/local/bin
  install -m 0644 crates/libbproc-c/include/sys/bproc.h crates/libbproc-c/include/sys/bproc_common.h \
    /usr/local/include/sys/
  install -m 0755 target/release/libbproc.so /usr/local/lib/libbproc.so
  install -m 0755 target/release/bpghost /usr/local/bin/bpghost
  setcap cap_checkpoint_restore+ep /usr/local/bin/bpghost
  ldconfig
}

demo() {
  setup
  build
  bash scripts/demo.sh target/release
}

check_leftovers() {
  say "checking that the suite left nothing behind"
  local left=0
  if ip netns list | grep -q '^bp-'; then echo "leftover network namespaces:"; ip netns list | grep '^bp-'; left=1; fi
  for d in bpmaster bpslave; do
    if pgrep -x "$d" >/dev/null; then echo "leftover daemons:"; pgrep -a -x "$d"; left=1; fi
  done
  if [ -n "$(ls -A /run/bproc/clusters 2>/dev/null)" ]; then echo "leftover cluster state:"; ls /run/bproc/clusters; left=1; fi
  if grep -q ' /run/netns/bp-' /proc/self/mountinfo; then echo "leftover netns mounts"; left=1; fi
  if [ -n "$(ls -A /run/bproc/images 2>/dev/null)" ]; then echo "leftover checkpoint images:"; ls /run/bproc/images; left=1; fi
  [ "$left" = 0 ] || die "the test suite left the above behind"
  echo "leftovers: none"
}

tests() {
  setup
  build
  say "unit and end-to-end tests"
  # A hung test fails the run in 20 minutes instead of eating CI's whole budget.
  timeout --kill-after=30 1200 cargo test --release --workspace --locked
  say "the Rust API's documentation (cargo doc, warnings are errors)"
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -p libbproc
  say "the benchmark command, quick"
  target/release/bproc-bench --quick --out target/bench-quick.md
  grep -q 'bpsh 0 true' target/bench-quick.md || die "bench report lacks the bpsh latency row"
  check_leftovers
}

bench() {
  setup
  build
  target/release/bproc-bench "$@"
}

case "${1:-}" in
  setup) setup ;;
  demo) demo ;;
  test) tests ;;
  bench) shift; bench "$@" ;;
  *) die "usage: bash x.sh demo|test|bench|setup" ;;
esac
