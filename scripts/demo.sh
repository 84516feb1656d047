#!/usr/bin/env bash
# The demo: bring up a 4-node namespace cluster, show bpsh, bpstat, ps,
# kill and bproc_rfork working, tear it down. Usage: bash scripts/demo.sh BIN_DIR
set -euo pipefail
BIN=$(cd "${1:-target/release}" && pwd)
export PATH="$BIN:$PATH"
NAME=demo

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# On failure, what the daemons logged of it goes to stderr before the cluster goes down.
finish() {
  local status=$?
  if [ "$status" != 0 ]; then
    for log in /run/bproc/clusters/"$NAME"/*.log; do
      [ -f "$log" ] || continue
      echo "--- warnings and errors in $log:" >&2
      grep -E 'WARN|ERROR|failed|panicked' "$log" | tail -n 20 >&2 || true
    done
  fi
  rm -rf "${work:-}"
  bpcluster down --name "$NAME" >/dev/null
  exit "$status"
}
bpcluster gc --name "$NAME" >/dev/null
trap finish EXIT
show "bpcluster up --nodes 4 --name $NAME"
out=$(bpcluster up --nodes 4 --name "$NAME")
echo "$out"
eval "$(echo "$out" | tail -n 1)"

show "bpstat"
bpstat
show "bpsh -ap hostname            # every up node, output prefixed by node number"
bpsh -ap hostname
show "bpsh -s 0-3 sh -c 'echo \$(hostname): pid \$\$ uid \$(id -u)'   # one node after another"
bpsh -s 0-3 sh -c 'echo $(hostname): pid $$ uid $(id -u)'
show "head -c 100000000 /dev/zero | bpsh 1 wc -c   # stdin and stdout, byte for byte"
head -c 100000000 /dev/zero | bpsh 1 wc -c
show "bpsh 2 sh -c 'exit 7'; echo \$?"
set +e
bpsh 2 sh -c 'exit 7'; echo "exit status $?"
show "bpsh 3 sh -c 'echo pid \$\$ on \$(hostname); exec sleep 60' &    # a remote process"
bpsh 3 sh -c 'echo pid $$ on $(hostname); exec sleep 60' &
bpsh_pid=$!
# Its ghost's PID, once the ghost is there (until then bpstat -p shows "-").
ghost=
for _ in $(seq 200); do
  ghost=$(bpstat -p --json | grep -o '"pid":[1-9][0-9]*' | head -n 1 | cut -d: -f2)
  [ -n "$ghost" ] && break
  sleep 0.05
done
[ -n "$ghost" ] || { echo "demo: the remote process got no ghost" >&2; exit 1; }
show "bpstat -p                   # global PID and node"
bpstat -p
show "ps -o pid,ppid,stat,args -p $ghost    # the same PID is a process here: the ghost, under bpsh, exec'd as its process did"
ps -o pid,ppid,stat,args -p "$ghost"
show "kill -STOP $ghost; bpstat -p; kill -CONT $ghost   # any signal to the ghost acts on the node"
kill -STOP "$ghost"
for _ in $(seq 200); do bpstat -p | grep -q stopped && break; sleep 0.05; done
bpstat -p
kill -CONT "$ghost"
show "kill -TERM $ghost; wait"
kill -TERM "$ghost"
wait "$bpsh_pid"; echo "bpsh ended with status $? (128+15: its remote process died of SIGTERM)"
set -e
# rfork from C: the program below is BProc's own API, built with `cc rfork.c -lbproc`.
work=$(mktemp -d)
cc -o "$work/rfork" "$(dirname "$0")/../crates/tests/c/rfork.c" -lbproc
show "cc rfork.c -lbproc; ./rfork 2 /etc/services   # bproc_rfork(2): the child runs on node 2, its PID the same"
BPROC_GHOST_BIN="$BIN/bpghost" "$work/rfork" 2 /etc/services
show "bpcluster down --name $NAME"
