#!/bin/sh
# nginx 1.22 has no `resolve` parameter on upstream servers (open-source nginx gained it in
# 1.27.3): the stand-in runs a copy of the configuration without it, so names in upstreams are
# resolved when nginx starts rather than followed. Everything else is the configuration as mounted.
set -eu
if [ "${1:-}" = nginx ] && grep -qE '^[[:space:]]*server[[:space:]].*[[:space:]]resolve;' /etc/nginx/nginx.conf; then
  sed -E 's/^([[:space:]]*server[[:space:]].*)[[:space:]]resolve;/\1;/' /etc/nginx/nginx.conf >/tmp/nginx.conf
  shift
  exec nginx -c /tmp/nginx.conf "$@"
fi
exec "$@"
