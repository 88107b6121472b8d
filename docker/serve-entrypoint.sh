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

# Triton's response cache, sized as the repository's builds ask (serving.triton_cache: the public model's config
# parameter tritonforge_triton_cache_bytes), unless the arguments configure a cache themselves.
cache_size() {
    repo=""
    for arg in "$@"; do
        case "$arg" in
            --cache-config*) return 0 ;;
            --model-repository=*) repo="${arg#--model-repository=}" ;;
        esac
    done
    [ -n "$repo" ] || return 0
    awk '/key: "tritonforge_triton_cache_bytes"/ { want = 1; next }
         want && /string_value:/ { gsub(/[^0-9]/, ""); if ($0 + 0 > max) max = $0 + 0; want = 0 }
         END { if (max > 0) print max }' "$repo"/*/config.pbtxt 2>/dev/null
}
size="$(cache_size "$@")"
if [ -n "$size" ]; then
    echo "tritonforge: Triton's response cache: local, ${size} bytes (asked for by the repository's builds)" >&2
    set -- "$@" "--cache-config=local,size=${size}"
fi

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
