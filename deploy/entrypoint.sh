#!/bin/sh
# Entry point of the container image (deploy/Dockerfile): checks what a replica
# needs before the gateway starts, then becomes the gateway (`exec`, so signals
# reach it: SIGTERM hands its sessions over to the other replicas at once).
#
#   entrypoint.sh [switchboard arguments…]      (default: serve)
#
# Exits 78 (EX_CONFIG) with a message when the configuration cannot work, 73
# (EX_CANTCREAT) when the data directory is not writable. GATEWAY_BIN names
# the binary (default: `switchboard` on PATH), so the script runs outside the image.
set -eu

fail() {
    code=$1
    shift
    echo "entrypoint: $*" >&2
    exit "$code"
}

[ "$#" -gt 0 ] || set -- serve

if [ "$1" = "serve" ]; then
    data_dir=${SWITCHBOARD_DATA_DIR:-/var/lib/switchboard/data}
    mkdir -p "$data_dir" 2>/dev/null || true
    [ -d "$data_dir" ] && [ -w "$data_dir" ] ||
        fail 73 "the data directory $data_dir is not writable by uid $(id -u)"
    export SWITCHBOARD_DATA_DIR="$data_dir"

    case "${DATABASE_URL:-}" in
    postgres://* | postgresql://*)
        # Replicas share the database: each must open what the others sealed and
        # accept the same admin token, so neither may be generated per replica.
        [ -n "${SWITCHBOARD_MASTER_KEY:-}" ] ||
            fail 78 "DATABASE_URL names Postgres, which replicas share: set SWITCHBOARD_MASTER_KEY (the same 32-byte base64 key on every replica)"
        [ -n "${SWITCHBOARD_ADMIN_TOKEN:-}" ] ||
            fail 78 "DATABASE_URL names Postgres, which replicas share: set SWITCHBOARD_ADMIN_TOKEN (the same on every replica)"
        ;;
    "" | sqlite:*) ;;
    *) fail 78 "DATABASE_URL must be postgres://… or sqlite:…, not ${DATABASE_URL%%:*}:…" ;;
    esac

    chromium=${SWITCHBOARD_CHROMIUM_PATH:-}
    if [ -n "$chromium" ] && [ ! -x "$chromium" ]; then
        fail 78 "SWITCHBOARD_CHROMIUM_PATH=$chromium is not an executable (WhatsApp and LinkedIn sessions need Chromium)"
    fi

    model=${SWITCHBOARD_MODEL_DIR:-}
    if [ -z "${SWITCHBOARD_EMBEDDINGS_URL:-}" ] && [ -n "$model" ] && [ ! -f "$model/model.safetensors" ]; then
        fail 78 "SWITCHBOARD_MODEL_DIR=$model holds no model.safetensors (the local embedding model); set SWITCHBOARD_EMBEDDINGS_URL to use an embeddings API instead"
    fi
fi

bin=${GATEWAY_BIN:-switchboard}
unset GATEWAY_BIN
exec "$bin" "$@"
