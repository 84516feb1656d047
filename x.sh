#!/usr/bin/env bash
# bproc-rs: the one entry point. Run as root on Debian 12:
#   bash x.sh demo    bring up a 4-node cluster, show bpsh and bpstat working, tear it down
#   bash x.sh test    the whole test suite (what CI runs)
#   bash x.sh bench   the benchmarks; writes docs/BENCHMARKS.md
#   bash x.sh setup   only install what the project needs (idempotent; quick when done)
set -euo pipefail
cd "$(dirname "$0")"

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
)

# Nodes number the processes forked on them in ranges of the upper half of the PID space, so their
# ghosts can mostly have the same PIDs on the master; that needs room (the kernel's maximum).
PID_MAX=4194304

setup() {
  [ "$(id -u)" = 0 ] || die "run as root (the harness makes namespaces, veths and bridges)"
  local missing=()
  for p in "${PACKAGES[@]}"; do
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
    [ -n "$made_policy" ] && rm -f "$policy"
  fi
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

build() {
  say "building (release)"
  cargo build --release --workspace --bins --locked
  # The ghost of a process forked on a node asks the kernel for that process's PID (clone3 set_tid).
  setcap cap_checkpoint_restore+ep target/release/bpghost
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
  [ "$left" = 0 ] || die "the test suite left the above behind"
  echo "leftovers: none"
}

tests() {
  setup
  build
  say "unit and end-to-end tests"
  # A hung test fails the run in 20 minutes instead of eating CI's whole budget.
  timeout --kill-after=30 1200 cargo test --release --workspace --locked
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
