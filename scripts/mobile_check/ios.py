"""Guards for the iOS packaging (ios/): the fixes a text or symbol check can prove are still in
place. Nothing here builds for Apple platforms (no Apple toolchain on this machine); CI does
(.github/workflows/mobile.yml). Each check takes the repository root and returns None if the fix
holds, or one line saying what is wrong and why it matters."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MODULE_MAP = "bindings/swift/Sources/DualPub/DualPubFFI.modulemap"
BUILD = "ios/build-xcframework.sh"
LOCALIZE = "ios/localize-sqlite.sh"
RELEASE = "ios/release.sh"
MANIFEST = "ios/Package.swift"
TEMPLATE = "ios/release/Package.swift.in"
# The host build of the library (cargo build --release), read by the symbol check.
HOST_LIBRARY = "target/release/libdualpub.a"


def _text(root: Path, path: str):
    file = root / path
    return file.read_text() if file.exists() else None


def _script(text: str) -> str:
    """The shell script with its comments dropped and its continuation lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return re.sub(r"\\\n\s*", " ", "\n".join(lines))


def _platforms(manifest: str) -> dict:
    """{"iOS": "13.0", "macOS": "11.0"} from `platforms: [.iOS(.v13), .macOS(.v10_15)]`."""
    found = {}
    for name, major, minor in re.findall(r"\.(iOS|macOS)\(\s*\.v(\d+)(?:_(\d+))?\s*\)", manifest):
        found[name] = f"{major}.{minor or 0}"
    return found


def module_map_links_frameworks(root: Path):
    text = _text(root, MODULE_MAP)
    if text is None:
        return f"{MODULE_MAP} is missing"
    missing = [f for f in ("Security", "CoreFoundation") if f'link framework "{f}"' not in text]
    if missing:
        return (f"{MODULE_MAP} does not link {' and '.join(missing)} (uniffi.toml link_frameworks, then "
                "scripts/bindings): an app linking the static library fails with undefined _Sec*/_CF* symbols")
    return None


def headers_in_module_directory(root: Path):
    text = _text(root, BUILD)
    if text is None:
        return f"{BUILD} is missing"
    script = _script(text)
    dests = re.findall(r"DualPubFFI\.modulemap\"?\s+(\S+)", script)
    if not dests or not all(re.fullmatch(r'"?build/headers/DualPubFFI/module\.modulemap"?', d) for d in dests):
        return (f"{BUILD} does not install the module map as build/headers/DualPubFFI/module.modulemap "
                f"(found {', '.join(dests) or 'none'}): at the root of Headers/ it clashes with other "
                "UniFFI XCFrameworks (\"Multiple commands produce .../include/module.modulemap\")")
    if not re.search(r"DualPubFFI\.h\"?\s+\"?build/headers/DualPubFFI/", script):
        return f"{BUILD} does not put DualPubFFI.h next to the module map in build/headers/DualPubFFI/"
    libraries = len(re.findall(r"-library\s", script))
    headers = re.findall(r"-headers\s+(\S+)", script)
    if not libraries or len(headers) != libraries or any(h.strip('"') != "build/headers" for h in headers):
        return (f"{BUILD}: every -library needs -headers build/headers (the parent of DualPubFFI/), "
                f"found {libraries} -library and -headers {', '.join(headers) or 'none'}")
    return None


def swift_tools_version(root: Path):
    for path in (MANIFEST, TEMPLATE):
        text = _text(root, path)
        if text is None:
            return f"{path} is missing"
        match = re.match(r"//\s*swift-tools-version\s*:\s*(\d+)\.(\d+)", text)
        if not match:
            return f"{path} does not start with a // swift-tools-version: line"
        if (int(match[1]), int(match[2])) < (5, 10):
            return (f"{path} declares swift-tools-version {match[1]}.{match[2]}: the generated bindings use "
                    "nonisolated(unsafe), which needs Swift 5.10 (Xcode 15.3)")
    return None


def macos_slices(root: Path):
    manifest, text = _text(root, MANIFEST), _text(root, BUILD)
    if manifest is None or text is None:
        return f"{MANIFEST} or {BUILD} is missing"
    template = _text(root, TEMPLATE) or ""
    if ".macOS(" not in manifest and ".macOS(" not in template:
        return None
    script = _script(text)
    loop = re.search(r"for\s+target\s+in\s+([^;\n]+)", script)
    targets = loop[1].split() if loop else []
    missing = [t for t in ("aarch64-apple-darwin", "x86_64-apple-darwin") if t not in targets]
    if missing:
        return (f"the packages declare macOS but {BUILD} does not build {' and '.join(missing)}: "
                "`swift test` on a Mac finds no macOS slice in the XCFramework")
    lipo = re.search(r"lipo\s+-create\s+[^\n]*aarch64-apple-darwin[^\n]*x86_64-apple-darwin[^\n]*-output\s+(\S+)", script)
    if not lipo:
        return f"{BUILD} does not lipo the two macOS libraries into one (one library per platform in an XCFramework)"
    if not re.search(r"-library\s+" + re.escape(lipo[1]), script):
        return f"{BUILD} does not pass the macOS library ({lipo[1]}) to xcodebuild -create-xcframework"
    return None


def deployment_targets(root: Path):
    manifest, text = _text(root, MANIFEST), _text(root, BUILD)
    if manifest is None or text is None:
        return f"{MANIFEST} or {BUILD} is missing"
    script = _script(text)
    platforms = _platforms(manifest)
    for name, variable in (("iOS", "IPHONEOS_DEPLOYMENT_TARGET"), ("macOS", "MACOSX_DEPLOYMENT_TARGET")):
        if name not in platforms:
            continue
        exported = re.findall(rf"^\s*export\s+{variable}=\"?([0-9.]+)\"?\s*$", script, re.M)
        if not exported:
            return (f"{BUILD} does not export {variable}: cc-rs builds SQLite and ring for the SDK's own "
                    f"version and apps targeting {name} {platforms[name]} get \"built for newer version\" warnings")
        if exported[-1] != platforms[name]:
            return f"{BUILD} exports {variable}={exported[-1]} but {MANIFEST} declares {name} {platforms[name]}"
    template = _text(root, TEMPLATE)
    if template is not None and _platforms(template) != platforms:
        return f"{TEMPLATE} declares {_platforms(template)}, {MANIFEST} {platforms}: the release must support what is built"
    return None


def release_by_url(root: Path):
    template, script = _text(root, TEMPLATE), _text(root, RELEASE)
    if template is None or script is None:
        return f"{TEMPLATE} or {RELEASE} is missing: no package an app can add by URL"
    target = re.search(r"\.binaryTarget\(\s*name:\s*\"DualPubFFI\",\s*url:\s*\"([^\"]+)\",\s*checksum:\s*\"([^\"]+)\"", template)
    if not target:
        return f"{TEMPLATE} has no .binaryTarget(name: \"DualPubFFI\", url: ..., checksum: ...)"
    if not target[1].endswith("/DualPubFFI.xcframework.zip") or "@URL@" not in target[1] or target[2] != "@CHECKSUM@":
        return f"{TEMPLATE}: the binary target must be url: \"@URL@/DualPubFFI.xcframework.zip\", checksum: \"@CHECKSUM@\""
    body = _script(script)
    needed = {
        "builds the XCFramework": "build-xcframework.sh",
        "zips it": "DualPubFFI.xcframework.zip",
        "computes the checksum": "compute-checksum",
        "falls back to shasum": "shasum -a 256",
        "fills the template": "Package.swift.in",
        "fills the checksum": "@CHECKSUM@",
        "takes the URL from the environment": "DUALPUB_RELEASE_URL",
    }
    missing = [what for what, needle in needed.items() if needle not in body]
    if missing:
        return f"{RELEASE} no longer {', '.join(missing)}"
    return None


def sqlite_localised(root: Path):
    text, localize = _text(root, BUILD), _text(root, LOCALIZE)
    if text is None or localize is None:
        return f"{BUILD} or {LOCALIZE} is missing: the bundled SQLite's symbols stay global"
    script = _script(text)
    call = re.search(r"localize-sqlite\.sh\s", script)
    lipo = script.find("lipo -create")
    if not call or (lipo != -1 and call.start() > lipo):
        return (f"{BUILD} does not run localize-sqlite.sh on each library before lipo: an app that also links "
                "the system SQLite can bind to the wrong copy (dyld: Symbol not found: _sqlite3_...)")
    loop = re.search(r"for\s+target\s+in\s+[^\n]*\n(.*?)\ndone", script, re.S)
    if not loop or "localize-sqlite.sh" not in loop[1]:
        return f"{BUILD} runs localize-sqlite.sh outside the per-target loop: every slice needs it"
    if not re.search(r"\bld\b[^\n]*-r\s+-unexported_symbols_list", _script(localize)):
        return f"{LOCALIZE} no longer merges with ld -r -unexported_symbols_list"
    return None


def _nm() -> list:
    """An nm that reads Rust's objects: LLVM's (Xcode's nm is one), told to read the symbol table
    rather than the embedded bitcode. GNU nm's LLVM plugin fails on newer bitcode: none then."""
    nm = ["xcrun", "nm"] if sys.platform == "darwin" else [shutil.which("llvm-nm") or ""]
    if not nm[0] or (nm[0] != "xcrun" and not Path(nm[0]).exists()):
        return []
    try:
        help_text = subprocess.run(nm + ["--help"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return []
    return nm + ["--no-llvm-bc"] if "--no-llvm-bc" in help_text else nm


def _unit(member: str) -> str:
    """The same grouping as localize-sqlite.sh: a Rust crate's codegen units, a cc-rs directory."""
    if member.endswith(".rcgu.o"):
        return "rust:" + member.split(".", 1)[0]
    if len(member) > 17 and member[16] == "-" and re.fullmatch(r"[0-9a-f]{16}", member[:16]):
        return "c:" + member[:16]
    return "member:" + member


def sqlite_symbol_list(root: Path):
    """localize-sqlite.sh's selection (--dry-run) on the host build: the list must hold every
    global sqlite3_* the archive defines, and the members must be every one that defines or
    references one, with all the other members of their crates."""
    library = root / HOST_LIBRARY
    # In CI (./scripts/test runs this after the release builds) a missing input is a failure,
    # not a skip: a guard that never runs guards nothing.
    strict = os.environ.get("CI") == "true"
    if not library.exists():
        if strict:
            return f"no {HOST_LIBRARY}: the SQLite symbol selection could not be checked (scripts/test builds it before this guard)"
        print(f"      note: no {HOST_LIBRARY} (cargo build --release): the SQLite symbol selection was not checked")
        return None
    nm = _nm()
    if not nm:
        if strict:
            return "no llvm-nm: the SQLite symbol selection could not be checked (GNU nm cannot read Rust's embedded bitcode)"
        print("      note: no llvm-nm (GNU nm cannot read Rust's embedded bitcode): the SQLite symbol selection was not checked")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        members_file, symbols_file = Path(tmp, "members"), Path(tmp, "symbols")
        run = subprocess.run(
            ["bash", str(root / LOCALIZE), "--dry-run", "--members", str(members_file),
             "--symbols", str(symbols_file), str(library)],
            # The script adds --no-llvm-bc itself.
            capture_output=True, text=True, env={**os.environ, "NM": " ".join(a for a in nm if a != "--no-llvm-bc")},
            timeout=60)
        if run.returncode != 0:
            return f"{LOCALIZE} --dry-run {HOST_LIBRARY} failed: {(run.stderr.strip() or run.stdout.strip()).splitlines()[-1:]}"
        selected = members_file.read_text().split("\n")[:-1]
        listed = set(symbols_file.read_text().split())
    # Independently: every symbol of the archive, per member.
    listing = subprocess.run(nm + ["-A", "-P", str(library)], capture_output=True, text=True, timeout=60)
    if listing.returncode != 0:
        return f"{' '.join(nm)} -A -P {HOST_LIBRARY} failed: {listing.stderr.strip().splitlines()[:1]}"
    prefix = f"{library}["
    defined, touched, units = set(), set(), {}
    members = [m for m in subprocess.run(["ar", "t", str(library)], capture_output=True, text=True).stdout.splitlines()
               if not m.startswith("__.SYMDEF")]
    for member in members:
        units.setdefault(_unit(member), set()).add(member)
    for line in listing.stdout.splitlines():
        if not line.startswith(prefix) or "]: " not in line:
            continue
        member, rest = line[len(prefix):].split("]: ", 1)
        fields = rest.split()
        if len(fields) < 2 or not re.match(r"_?sqlite3_", fields[0]):
            continue
        name, kind = fields[0], fields[1]
        if kind in ("U", "w", "v"):
            touched.add(member)
        elif kind.isupper():
            touched.add(member)
            defined.add(name)
    if len(defined) < 200:
        return f"only {len(defined)} global sqlite3_* definitions found in {HOST_LIBRARY}: is SQLite still bundled?"
    if listed != defined:
        return (f"{LOCALIZE}'s list misses {len(defined - listed)} of the {len(defined)} global sqlite3_* "
                f"symbols {HOST_LIBRARY} defines (e.g. {sorted(defined - listed)[:3]}) and has {len(listed - defined)} extra")
    expected = set().union(*(units[_unit(m)] for m in touched))
    if set(selected) != expected:
        missing, extra = sorted(expected - set(selected)), sorted(set(selected) - expected)
        return (f"{LOCALIZE} selects {len(selected)} members, the whole crates of those touching SQLite are "
                f"{len(expected)}: missing {missing[:3]}, extra {extra[:3]} (a crate split across the merge "
                "loses its hidden symbols)")
    return None


def ios_only_helpers_guarded(root: Path):
    """Every Swift helper that imports UIKit or BackgroundTasks (iOS only) is wrapped in
    `#if canImport(UIKit)`: the package also builds for macOS, where those modules do not exist."""
    sources = root / "ios/Sources/DualPub"
    if not sources.is_dir():
        return "ios/Sources/DualPub is missing"
    for f in sorted(sources.glob("*.swift")):
        code = "\n".join(l for l in f.read_text().splitlines() if not l.lstrip().startswith("//"))
        if not re.search(r"^\s*import\s+(UIKit|BackgroundTasks)\b", code, re.M):
            continue
        guard = re.search(r"^\s*#if\s+[^\n]*canImport\(UIKit\)", code, re.M)
        first_import = re.search(r"^\s*import\s+(UIKit|BackgroundTasks)\b", code, re.M)
        if not guard or guard.start() > first_import.start() or not re.search(r"^\s*#endif", code[first_import.end():], re.M):
            return (f"{f.relative_to(root)} imports UIKit/BackgroundTasks outside #if canImport(UIKit) ... #endif: "
                    "`swift build` of the package's macOS slice fails")
    return None


CHECKS = [
    (15, "Swift helpers importing UIKit or BackgroundTasks are inside #if canImport(UIKit) (the package builds for macOS)",
     ios_only_helpers_guarded),
    (8, "the XCFramework has macOS slices (aarch64 + x86_64, lipo'd) since the package declares macOS", macos_slices),
    (9, "the generated module map links Security and CoreFoundation", module_map_links_frameworks),
    (10, "the header and module map are in Headers/DualPubFFI/, not at the root of Headers/", headers_in_module_directory),
    (11, "swift-tools-version is 5.10 or later (nonisolated(unsafe)) in the package and the release template", swift_tools_version),
    (12, "IPHONEOS_/MACOSX_DEPLOYMENT_TARGET are exported for the Rust builds and equal the package's platforms", deployment_targets),
    (13, "ios/release.sh zips the XCFramework and writes a Package.swift with .binaryTarget(url:checksum:)", release_by_url),
    (14, "build-xcframework.sh makes the bundled SQLite local to each library (ld -r -unexported_symbols_list)", sqlite_localised),
    (14, "the SQLite localisation selects whole crates and lists every global sqlite3_* (host build)", sqlite_symbol_list),
]
