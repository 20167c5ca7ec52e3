#!/usr/bin/env bash
# Re-fetch the vendored front-end files from the npm registry at pinned versions.
# They are committed under static/vendor/ so the app runs offline with no CDN; run this
# only to upgrade, then review the diff.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch() {  # fetch PACKAGE@VERSION FILE-IN-PACKAGE DEST
  (cd "$tmp" && npm pack --silent "$1" >/dev/null)
  tarball=$(ls "$tmp"/*.tgz)
  tar -xzf "$tarball" -C "$tmp"
  cp "$tmp/package/$2" "$3"
  rm -rf "$tmp"/package "$tarball"
}
mkdir -p static/vendor
fetch htmx.org@2.0.8 dist/htmx.min.js static/vendor/htmx.min.js
fetch htmx-ext-ws@2.0.4 dist/ws.min.js static/vendor/htmx-ext-ws.min.js
# Markdown while a reply streams (static/js/markdown-live.js): the same parser as the
# server's markdown-it-py, and an allow-list sanitizer.
fetch markdown-it@14.3.3 dist/markdown-it.min.js static/vendor/markdown-it.min.js
fetch dompurify@3.5.0 dist/purify.min.js static/vendor/purify.min.js
sha256sum static/vendor/*.js
