#!/usr/bin/env bash
# One-shot initialisation of the single-node Couchbase Server 8 in docker-compose.yml:
# cluster (Data, Index, Query, Search), bucket, scopes, collections, alternate address for
# clients on the host, and the SQL++ CURL() allow-list for cbembed's embed endpoint.
# Safe to run again: every step skips what already exists. Commands and options follow the
# couchbase-cli reference (node-init, cluster-init, bucket-create, collection-manage,
# setting-alternate-address, setting-query).
set -euo pipefail

HOST="${CB_HOST:-couchbase}"
USERNAME="${CB_USERNAME:-Administrator}"
PASSWORD="${CB_PASSWORD:?set CB_PASSWORD}"
BUCKET="${CB_BUCKET:-travel}"
SCOPE="${CB_SCOPE:-inventory}"
COLLECTION="${CB_COLLECTION:-listings}"
EMBED_URL="${CB_EMBED_URL:-http://cbembed-embed:8765/embed}"
CLI="${COUCHBASE_CLI:-/opt/couchbase/bin/couchbase-cli}"
AUTH=(-u "$USERNAME" -p "$PASSWORD")

# Run a command; an "already exists" answer counts as success.
tolerate_exists() {
  local out
  if out=$("$@" 2>&1); then
    echo "$out"
  elif grep -qi "already exists" <<<"$out"; then
    echo "already exists: ${*: -1}"
  else
    echo "$out" >&2
    return 1
  fi
}

echo "waiting for Couchbase Server on $HOST:8091"
for _ in $(seq 1 90); do
  if curl -sf "http://$HOST:8091/pools" >/dev/null; then break; fi
  sleep 2
done

if "$CLI" server-list -c "$HOST" "${AUTH[@]}" >/dev/null 2>&1; then
  echo "cluster already initialised"
else
  "$CLI" node-init -c "$HOST" --node-init-hostname "$HOST"
  "$CLI" cluster-init -c "$HOST" \
    --cluster-username "$USERNAME" --cluster-password "$PASSWORD" \
    --cluster-name cbembed \
    --services data,index,query,fts \
    --cluster-ramsize 1024 --cluster-index-ramsize 512 --cluster-fts-ramsize 512 \
    --index-storage-setting default
fi

tolerate_exists "$CLI" bucket-create -c "$HOST" "${AUTH[@]}" --bucket "$BUCKET" \
  --bucket-type couchbase --bucket-ramsize 512 --bucket-replica 0 --wait

tolerate_exists "$CLI" collection-manage -c "$HOST" "${AUTH[@]}" --bucket "$BUCKET" \
  --create-scope "$SCOPE"
tolerate_exists "$CLI" collection-manage -c "$HOST" "${AUTH[@]}" --bucket "$BUCKET" \
  --create-collection "$SCOPE.$COLLECTION"
# cbembed's checkpoints and dead letters (couchbase.metadata_keyspace in cbembed.toml)
tolerate_exists "$CLI" collection-manage -c "$HOST" "${AUTH[@]}" --bucket "$BUCKET" \
  --create-scope cbembed
tolerate_exists "$CLI" collection-manage -c "$HOST" "${AUTH[@]}" --bucket "$BUCKET" \
  --create-collection cbembed.meta

# Clients on the host reach the node as localhost (ports mapped 1:1 in docker-compose.yml);
# containers keep using the node name "couchbase".
"$CLI" setting-alternate-address -c "$HOST" "${AUTH[@]}" --set --hostname localhost

# Let SQL++ CURL() call the embed endpoint, and nothing else.
"$CLI" setting-query -c "$HOST" "${AUTH[@]}" --set \
  --curl-restricted restricted --allowed-urls "$EMBED_URL"

echo "Couchbase is ready: bucket $BUCKET, collection $SCOPE.$COLLECTION"
