#!/usr/bin/env bash
# Puts the prebuilt OHIF viewer (the `dist/` of the npm package @ohif/app, a complete PWA) into
# vendor/ohif-app/, pinned by version and by the registry's sha512 integrity below. It is fetched
# with `npm pack` rather than installed as a dependency: installing @ohif/app would pull its whole
# build tool chain (webpack, babel, ...) and peer dependencies that do not exist on the registry
# (@ohif/ui 3.13.2), while the server only serves the built files. Nothing of OHIF is modified.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(node -p "require('$root/package.json').ldfsam.viewer.version")
integrity=$(node -p "require('$root/package.json').ldfsam.viewer.integrity")
dest="$root/vendor/ohif-app"
if [ -f "$dest/dist/index.html" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching @ohif/app@$version (prebuilt OHIF viewer, ~50 MB)"
(cd "$tmp" && npm pack --silent "@ohif/app@$version" >/dev/null)
tarball=$(ls "$tmp"/ohif-app-*.tgz)
actual=$(node -e "const c=require('crypto');process.stdout.write('sha512-'+c.createHash('sha512').update(require('fs').readFileSync(process.argv[1])).digest('base64'))" "$tarball")
if [ "$actual" != "$integrity" ]; then
  echo "setup: @ohif/app@$version integrity mismatch: expected $integrity, got $actual" >&2
  exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
tar xzf "$tarball" -C "$dest" --strip-components=1 package/dist package/package.json package/LICENSE
echo "$version" > "$dest/VERSION"
echo "setup: OHIF viewer $version in vendor/ohif-app/dist"
