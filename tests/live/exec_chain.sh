#!/bin/sh
# exec_chain.sh N: starts its own program again N times, in the same process (exec), 50 ms
# apart. Each start is an exec of the interpreter named on the first line (the test runs
# this file through a copy of sh at a path of its own).
[ "$1" -gt 0 ] || exit 0
sleep 0.05
exec "$0" $(($1 - 1))
