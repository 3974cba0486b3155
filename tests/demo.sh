#!/bin/sh
# A scripted socat session against a running phxd and phxsim:
#   tests/demo.sh PHXD_SOCKET PHXSIM_CONTROL_SOCKET
# Shows a join, a push with its reply, a broadcast from the server, a
# binary push and a bad line.  Lines we send start with ">>", phxd's with "<<".
set -eu
sock=$1
ctl=$2

say() { printf '>> %s\n' "$1" >&2; printf '%s\n' "$1"; sleep 0.3; }

{
	say 'JOIN room:lobby {"user":"demo"}'
	say 'PUSH room:lobby echo {"hello":"world"}'
	printf '   (the server broadcasts: %s)\n' \
		"$(printf 'BROADCAST room:lobby news {"headline":"phxd works"}\n' |
		   socat -t 1 - UNIX-CONNECT:"$ctl")" >&2
	sleep 0.3
	say 'PUSH room:lobby shout {"msg":"hi all"}'
	say 'BPUSH room:lobby bin 3q2+7w=='
	say 'PUSH room:lobby echo {not json}'
	say 'LEAVE room:lobby'
	say 'QUIT'
} | socat -t 2 - UNIX-CONNECT:"$sock" | sed -u 's/^/<< /'
