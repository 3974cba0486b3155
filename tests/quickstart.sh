#!/bin/sh
# Quick start on a fresh Debian 12 machine: installs the dependencies,
# builds phxd, starts the bundled Phoenix test server (phxsim) and phxd
# against it, and runs a demo client session.  On a terminal both keep
# running afterwards so that you can talk to phxd yourself; Ctrl-C stops them.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

sh tests/deps.sh
# quiet, but a failure runs it again for its messages (set -e would
# otherwise end the script without a word)
[ -x configure ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure >/dev/null
make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
cd "$top"

run=$(mktemp -d /tmp/phxd-demo.XXXXXX)
sim_pid=""
phxd_pid=""
cleanup() {
	[ -n "$phxd_pid" ] && kill "$phxd_pid" 2>/dev/null && wait "$phxd_pid" 2>/dev/null
	[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
	rm -rf "$run"
	rm -f "/dev/shm/phxd-demo-$$"   # the demo's route cache (phxd keeps it by design)
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build/tests/phxsim/phxsim --listen 127.0.0.1:0 --control "$run/sim.sock" --quiet \
	>"$run/sim.out" &
sim_pid=$!
i=0
until [ -s "$run/sim.out" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "phxsim did not start" >&2; exit 1; }
	sleep 0.05
done
port=$(awk '{print $3; exit}' "$run/sim.out")
echo "phxsim (test Phoenix server) on ws://127.0.0.1:$port/socket"

cat >"$run/phxd.conf" <<CONF
socket = $run/phxd.sock
log_level = warning
route_cache_name = /phxd-demo-$$

[endpoint demo]
url = ws://127.0.0.1:$port/socket
CONF
build/phxd -c "$run/phxd.conf" &
phxd_pid=$!
i=0
until [ -S "$run/phxd.sock" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "phxd did not start" >&2; exit 1; }
	sleep 0.05
done
echo "phxd listening on $run/phxd.sock"
echo
sh tests/demo.sh "$run/phxd.sock" "$run/sim.sock"
echo
if [ -t 0 ]; then
	echo "phxd is still running. Talk to it yourself:"
	echo "    socat - UNIX-CONNECT:$run/phxd.sock"
	echo "and make the server broadcast:"
	echo "    echo 'BROADCAST room:lobby news {\"n\":1}' | socat - UNIX-CONNECT:$run/sim.sock"
	echo "Press Ctrl-C to stop."
	wait "$phxd_pid" || true
else
	echo "Demo done."
fi
