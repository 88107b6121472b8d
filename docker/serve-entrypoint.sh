#!/bin/sh
# The serving image's entrypoint: tritonserver with the given arguments, drained before it stops.
#
# On SIGTERM (docker stop, docker compose down or up with a new image) it first writes $TRITONFORGE_DRAIN_FILE,
# which makes the readiness check (probe.py --drain-file) say "not ready" so health checks and load balancers
# take this replica out, then waits $TRITONFORGE_DRAIN_SECONDS while Triton keeps answering what is still routed
# here, and only then passes SIGTERM on: Triton finishes the requests in flight (--exit-timeout-secs) and exits
# with its own status. Kubernetes drains in the pod's preStop hook instead (docker/k8s/triton.yaml), so there the
# wait is 0. Whoever stops the container must allow more than both waits together (compose: stop_grace_period).
set -u
drain_file="${TRITONFORGE_DRAIN_FILE:-/tmp/tritonforge-draining}"
drain_seconds="${TRITONFORGE_DRAIN_SECONDS:-0}"
rm -f "$drain_file"

tritonserver "$@" &
server=$!

drain() {
    trap '' TERM INT
    touch "$drain_file"
    echo "tritonforge: draining for ${drain_seconds} s, then SIGTERM to tritonserver" >&2
    sleep "$drain_seconds"
    kill -TERM "$server" 2>/dev/null
}
trap drain TERM INT

# A trapped signal ends `wait` early (status above 128): wait again until tritonserver itself has exited.
while :; do
    wait "$server"
    status=$?
    kill -0 "$server" 2>/dev/null || break
done
exit "$status"
