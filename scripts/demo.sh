#!/usr/bin/env bash
# The demo: bring up a 4-node namespace cluster, show bpsh and bpstat
# working, tear it down. Usage: bash scripts/demo.sh BIN_DIR
set -euo pipefail
BIN=$(cd "${1:-target/release}" && pwd)
export PATH="$BIN:$PATH"
NAME=demo

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

bpcluster gc --name "$NAME" >/dev/null
trap 'bpcluster down --name "$NAME" >/dev/null' EXIT
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
show "bpsh 3 sleep 60 &   bpstat -p;   kill -TERM %1;  wait"
bpsh 3 sleep 60 &
pid=$!
for _ in $(seq 200); do bpstat -p | grep -q sleep && break; sleep 0.05; done
bpstat -p
kill -TERM "$pid"
wait "$pid"; echo "bpsh ended with status $? (128+15: killed by SIGTERM on node 3)"
set -e
show "bpcluster down --name $NAME"
