#!/usr/bin/env bash
# Installs cognito-local, the Cognito user-pool emulator the cognito
# package's tests run against, at the version pinned in package.json and
# package-lock.json, into node_modules/ next to this script.
# Needs Node 20 and npm. The Go tests skip without it, unless
# TOKENKEEPER_REQUIRE_COGNITO=1 (CI), when they fail.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: npm not found; install Node.js 20 (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "install.sh: Node $major is too old for cognito-local 5.3.0; use Node 20" >&2
  exit 1
fi
if [ -x node_modules/.bin/cognito-local ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0 # already installed from this lock file
fi
npm ci --no-audit --no-fund --loglevel=error
test -x node_modules/.bin/cognito-local
