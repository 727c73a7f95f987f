# Shared by the bench scripts (sourced): start and stop `l7tap capture` in the background.
# Needs $bin (the l7tap binary) and $work (a scratch directory); sets $cap (its pid).

# Starts a capture with the given arguments, records to /dev/null, its summary in
# $work/capture.err; returns once its programs are attached.
capture() {
    "$bin" capture "$@" > /dev/null 2> "$work/capture.err" &
    cap=$!
    for _ in $(seq 100); do grep -q capturing "$work/capture.err" && return; sleep 0.05; done
    echo "capture did not start: $(cat "$work/capture.err")" >&2
    exit 1
}

# Stops it (Ctrl-C): it prints its counters to $work/capture.err.
stop() { kill -INT "$cap"; wait "$cap" || true; }
