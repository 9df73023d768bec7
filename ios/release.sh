#!/usr/bin/env bash
# Makes a release of the Swift package that apps add by URL:
#   1. builds the XCFramework (build-xcframework.sh; --skip-build reuses build/),
#   2. zips it: build/DualPubFFI.xcframework.zip (ditto on macOS, zip elsewhere),
#   3. computes its checksum (swift package compute-checksum; shasum -a 256 / sha256sum give the
#      same SHA-256),
#   4. writes build/release/: Package.swift with
#        .binaryTarget(name: "DualPubFFI", url: "<URL>/DualPubFFI.xcframework.zip", checksum: "<sha256>")
#      (from release/Package.swift.in), Sources/DualPub/ (the generated DualPub.swift and the
#      helpers) and README.md.
# Then: upload the zip so that it is served at <URL>/DualPubFFI.xcframework.zip, and commit the
# contents of build/release/ at the ROOT of the release repository and tag it <VERSION>
# (SwiftPM resolves a package by URL only from a Package.swift at the repository root).
#
#   ios/release.sh --url <URL> [--version <VERSION>] [--skip-build]
#   DUALPUB_RELEASE_URL=<URL> ios/release.sh
# <URL> is where the zip will be downloadable from, without the file name, e.g.
# https://github.com/acme/dualpub-swift/releases/download/0.1.0 ; <VERSION> defaults to the
# workspace version in Cargo.toml. Building needs a Mac (README.md); it has never run on the
# project's build machine (no Apple toolchain there).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)

usage() { echo "usage: $0 --url <download URL base> [--version <version>] [--skip-build]  (or DUALPUB_RELEASE_URL)" >&2; exit 2; }

url=${DUALPUB_RELEASE_URL:-} version="" build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --url) [ $# -ge 2 ] || usage; url=$2; shift ;;
        --version) [ $# -ge 2 ] || usage; version=$2; shift ;;
        --skip-build) build=0 ;;
        *) usage ;;
    esac
    shift
done
[ -n "$url" ] || usage
url=${url%/}
# SwiftPM downloads binary targets over HTTPS only. Plain characters only: the URL goes into
# Package.swift and through sed.
url_re='^https://[A-Za-z0-9._~:/@%+=-]+$'
if ! [[ $url =~ $url_re ]]; then
    echo "$0: the release URL must be https:// and plain (letters, digits, . _ ~ : / @ % + = -): $url" >&2
    exit 1
fi
if [ -z "$version" ]; then
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
fi
version_re='^[0-9]+[.][0-9]+[.][0-9]+([-+][0-9A-Za-z.+-]+)?$'
if ! [[ $version =~ $version_re ]]; then
    echo "$0: the version must be semantic (1.2.3), as SwiftPM resolves tags: '$version'" >&2
    exit 1
fi

# 1. Build.
[ "$build" -eq 0 ] || ./build-xcframework.sh
xcframework=build/DualPubFFI.xcframework
[ -d "$xcframework" ] || { echo "$0: no $xcframework: run without --skip-build" >&2; exit 1; }

# 2. Zip, with the .xcframework directory at the top of the archive (what SwiftPM expects).
zip=build/DualPubFFI.xcframework.zip
rm -f "$zip"
if command -v ditto > /dev/null; then
    ditto -c -k --keepParent "$xcframework" "$zip"
else
    (cd build && zip -q -r -X -y DualPubFFI.xcframework.zip DualPubFFI.xcframework)
fi

# 3. Checksum: what SwiftPM will verify after the download.
checksum=""
if command -v swift > /dev/null; then
    checksum=$(swift package compute-checksum "$zip" 2> /dev/null || true)
fi
if [ -z "$checksum" ]; then
    if command -v shasum > /dev/null; then
        checksum=$(shasum -a 256 "$zip" | awk '{print $1}')
    else
        checksum=$(sha256sum "$zip" | awk '{print $1}')
    fi
fi
checksum_re='^[0-9a-f]{64}$'
[[ $checksum =~ $checksum_re ]] || { echo "$0: not a SHA-256: '$checksum'" >&2; exit 1; }

# 4. The package tree for the root of the release repository.
release=build/release
rm -rf "$release" && mkdir -p "$release/Sources/DualPub"
fill() { sed -e "s|@VERSION@|$version|g" -e "s|@URL@|$url|g" -e "s|@CHECKSUM@|$checksum|g" "$1"; }
fill release/Package.swift.in > "$release/Package.swift"
fill release/README.md.in > "$release/README.md"
cp "$root/bindings/swift/Sources/DualPub/DualPub.swift" "$release/Sources/DualPub/DualPub.swift"
for helper in Sources/DualPub/*.swift; do
    [ "$(basename "$helper")" = DualPub.swift ] || cp "$helper" "$release/Sources/DualPub/"
done
if grep -q '@[A-Z]*@' "$release/Package.swift" "$release/README.md"; then
    echo "$0: a placeholder was left unfilled in $release" >&2
    exit 1
fi
# The manifest parses (where there is a Swift toolchain).
if command -v swift > /dev/null; then
    swift package --package-path "$release" dump-package > /dev/null
fi

cat <<EOF
release $version:
  $zip  (SHA-256 $checksum)
  $release/  (Package.swift, Sources/DualPub, README.md)
next:
  1. upload $zip so that it is served at $url/DualPubFFI.xcframework.zip
  2. commit the contents of ios/$release/ at the root of the release repository, tag it $version, push
  3. apps add: .package(url: "<release repository>", exact: "$version")
EOF
