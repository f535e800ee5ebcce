#!/bin/sh
# A 4-hospital MedChain consortium for deploy/compose.yaml, in two steps:
#   consortium.sh init       keys, genesis, configs and certificates into the volumes
#                            (the business chain's 4 validators, an edge per hospital,
#                            the regulator chain's solo node and the relay); run once,
#                            before any node starts
#   consortium.sh bootstrap  once the nodes serve: the consortium admits the hospitals
#                            and the regulator chain authorises the relay
# Every home is a directory under $MEDCHAIN_DEPLOY_ROOT (one volume each). Development
# only: one process makes every hospital's keys here; in production each hospital makes
# its own and the consortium exchanges public keys and the genesis (docs/operations.md).
set -eu

ROOT=${MEDCHAIN_DEPLOY_ROOT:-/srv/medchain}
CHAIN_ID=${MEDCHAIN_CHAIN_ID:-medchain-consortium}
REGULATOR_CHAIN_ID=${MEDCHAIN_REGULATOR_CHAIN_ID:-medchain-regulator}
NET=${MEDCHAIN_NET_PREFIX:-172.30.0}
HOSPITALS="pumch ruijin huashan xiangya"
NODE_HOME=/var/lib/medchain  # where each service's volume is mounted
: "${MEDCHAIN_PASSPHRASE:?set MEDCHAIN_PASSPHRASE (at least 12 characters) in deploy/.env}"
export MEDCHAIN_PASSPHRASE

# Validator i (0-3) is $NET.(11+i), hospital i's edge $NET.(21+i); regulator $NET.30.
validator_ip() { echo "$NET.$((11 + $1))"; }
edge_ip() { echo "$NET.$((21 + $1))"; }
REGULATOR_IP="$NET.30"

key_field() {  # key_field HOME NAME FIELD: a stored key's public_key or did
    medchain keys show "$2" --home "$1" | python -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$3"
}

init() {
    admin="$ROOT/admin"
    if [ -f "$admin/localnet.json" ]; then
        echo "already initialised ($admin/localnet.json exists)"
        return 0
    fi
    medchain localnet init --dir "$admin" --nodes 4 --first-ip "$(validator_ip 0)" \
        --chain-id "$CHAIN_ID"
    i=0
    for h in $HOSPITALS; do
        # Validator i's home as `medchain node --engine cometbft --home` reads it; its
        # CometBFT keys and TLS key move out of the admin volume.
        v="$ROOT/validator$i"
        mkdir -p "$v/tls"
        mv "$admin/node$i" "$v/cometbft"
        mv "$v/cometbft/operators.json" "$v/operators.json"
        # CometBFT and its app share the container: ABCI (no authentication) on a unix
        # socket in the node's home, not on the consortium network.
        sed -i "s#^proxy_app = .*#proxy_app = \"unix://$NODE_HOME/cometbft/abci.sock\"#" \
            "$v/cometbft/config/config.toml"
        mv "$admin/tls/node$i.pem" "$v/tls/node.pem"
        mv "$admin/tls/node$i.key" "$v/tls/node.key"
        cp "$admin/tls/ca.pem" "$v/tls/ca.pem"
        # Hospital i's edge: its organisation key and a certificate from the consortium CA.
        e="$ROOT/edge-$h"
        medchain keys new "$h-admin" --home "$e"
        eip=$(edge_ip $i)
        medchain tls issue "edge-$h" --home "$admin" --host "edge-$h" --host "$eip" --host localhost
        mkdir -p "$e/tls"
        mv "$admin/tls/edge-$h.pem" "$e/tls/edge.pem"
        mv "$admin/tls/edge-$h.key" "$e/tls/edge.key"
        cp "$admin/tls/ca.pem" "$e/tls/ca.pem"
        i=$((i + 1))
    done
    # The regulator chain: a solo node with its own genesis and CA; the relay's key.
    r="$ROOT/regulator"
    medchain init --home "$r" --chain-id "$REGULATOR_CHAIN_ID" --profile regulator \
        --host regulator --host "$REGULATOR_IP" --host localhost
    medchain keys new nhc-admin --home "$r"
    medchain keys new relay --home "$ROOT/relay"
    mkdir -p "$ROOT/relay/tls"
    cat "$admin/tls/ca.pem" "$r/tls/ca.pem" > "$ROOT/relay/tls/ca-bundle.pem"
    # Edges and the relay read raw blocks and state: operators of every validator (an
    # edge fails over to the others; every validator has the same list); the relay of
    # the regulator node too.
    relay_pub=$(key_field "$ROOT/relay" relay public_key)
    medchain operators add relay "$relay_pub" --home "$r"
    medchain operators add relay "$relay_pub" --home "$ROOT/validator0"
    for h in $HOSPITALS; do
        pub=$(key_field "$ROOT/edge-$h" "$h-admin" public_key)
        medchain operators add "edge-$h" "$pub" --home "$ROOT/validator0"
    done
    for i in 1 2 3; do
        cp "$ROOT/validator0/operators.json" "$ROOT/validator$i/operators.json"
    done
    if [ -n "${MEDCHAIN_DEPLOY_OWNER:-}" ]; then  # fresh volumes belong to root
        chown -R "$MEDCHAIN_DEPLOY_OWNER" "$ROOT"/*
    fi
    echo "initialised $CHAIN_ID (4 validators, 4 edges) and $REGULATOR_CHAIN_ID in $ROOT"
}

bootstrap() {
    admin="$ROOT/admin"
    if [ -f "$admin/bootstrapped" ]; then
        echo "already bootstrapped ($admin/bootstrapped exists)"
        return 0
    fi
    node="https://$(validator_ip 0):8700"
    for h in $HOSPITALS; do
        pub=$(key_field "$ROOT/edge-$h" "$h-admin" public_key)
        medchain tx identity register_org --key consortium-admin --home "$admin" --node "$node" \
            --payload "{\"org_id\": \"$h\", \"name\": \"$h\", \"org_type\": \"hospital\", \"admin_public_key\": {\"\$bytes\": \"$pub\"}}"
    done
    r="$ROOT/regulator"
    regulator="https://$REGULATOR_IP:8700"
    medchain tx identity register_org --key admin --home "$r" --node "$regulator" \
        --payload '{"org_id": "nhc", "name": "National Health Commission", "org_type": "regulator", "admin_public_key": {"$key": "nhc-admin"}}'
    relay_pub=$(key_field "$ROOT/relay" relay public_key)
    medchain tx identity add_member --key nhc-admin --home "$r" --node "$regulator" \
        --payload "{\"org_id\": \"nhc\", \"public_key\": {\"\$bytes\": \"$relay_pub\"}, \"roles\": [\"device\"]}"
    relay_did=$(key_field "$ROOT/relay" relay did)
    medchain supervise authorize-relayer "$relay_did" \
        --regulator "$regulator" --key admin --source "$CHAIN_ID" --home "$r" \
        --business-rpc "http://$(validator_ip 0):26657"
    touch "$admin/bootstrapped"
    echo "bootstrapped: 4 hospitals admitted to $CHAIN_ID; relay authorised on $REGULATOR_CHAIN_ID"
}

case "${1:-}" in
    init) init ;;
    bootstrap) bootstrap ;;
    *)
        echo "usage: consortium.sh init|bootstrap" >&2
        exit 2
        ;;
esac
