#!/bin/sh
# Builds Caddy with the mdm_auth plugin through xcaddy, the way a plugin is
# usually built: ./xcaddy.sh [output]  (default: ./caddy)
#
# Equivalent to `go build ./cmd/caddy`. While the module is not published,
# xcaddy takes it from this checkout (--with module@v0.0.0=.).
set -eu
cd "$(dirname "$0")"
out=${1:-./caddy}
bin="$(pwd)/.bin"
mkdir -p "$bin"
if [ ! -x "$bin/xcaddy" ]; then
	GOBIN="$bin" go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
fi
"$bin/xcaddy" build v2.11.9 \
	--output "$out" \
	--with github.com/mdmauth/mdmauth@v0.0.0=.
"$out" list-modules | grep -q '^http.handlers.mdm_auth$'
echo "built $out with mdm_auth"
