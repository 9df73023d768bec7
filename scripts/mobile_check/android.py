"""Text checks of the Android build (android/ and .cargo/config.toml), runnable without an Android
SDK, NDK or Gradle: each one proves from the files that a fix a first build depends on is in place.

CHECKS is a list of (finding, what, function), finding being the number of the packaging finding
the fix answers (the numbering scripts/mobile_check/run.py sorts by). Each function takes the
repository root (a Path) and returns None when the fix is in place, or a one-line message saying
what is missing and why it matters (a missing file included). The checks read Kotlin DSL with regular expressions that tolerate whitespace, quote and
layout changes, after removing comments, so a comment that names a fix never satisfies its check.

`python3 scripts/mobile_check/android.py [ROOT]` runs the checks; `--self-test` also runs
self_test(): every check passes on ROOT, keeps passing after harmless rewrites, and fails with its
message on a copy where its fix is reverted.
"""

import fnmatch
import hashlib
import os
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

GRADLE_VERSION = "8.10.2"
# Gradle's published SHA-256 of the 8.10.2 wrapper jar, and of gradle-8.10.2-bin.zip.
WRAPPER_JAR_SHA256 = "2db75c40782f5e8ba1fc278a5574bab070adccb2d21ca5a6e5ed840888448046"
DISTRIBUTION_SHA256 = "31c55713e40233a8303827ceb42ca48a47267a0ad4bab9177123121e71524c26"
NDK_VERSION = "29.0.14206865"
PAGE_SIZE_FLAG = "max-page-size=16384"
ANDROID_64BIT_TARGETS = ("aarch64-linux-android", "x86_64-linux-android")

BUILD = "android/build.gradle.kts"
SETTINGS = "android/settings.gradle.kts"
PROPERTIES = "android/gradle.properties"
WRAPPER_PROPERTIES = "android/gradle/wrapper/gradle-wrapper.properties"
WRAPPER_JAR = "android/gradle/wrapper/gradle-wrapper.jar"
CONSUMER_RULES = "android/consumer-rules.pro"
CARGO_CONFIG = ".cargo/config.toml"


class Missing(Exception):
    """A file a check reads does not exist; its message is the check's failure."""


def guard(check):
    """The check, with a missing file reported as its failure message rather than raised."""

    def guarded(root):
        try:
            return check(Path(root))
        except Missing as e:
            return f"{e}, so the fix this checks is not in place"

    guarded.__name__ = check.__name__
    guarded.__doc__ = check.__doc__
    return guarded


def read(root, rel):
    path = Path(root) / rel
    if not path.is_file():
        raise Missing(f"{rel} does not exist")
    return path.read_text(encoding="utf-8")


def kotlin_code(text):
    """Kotlin source without its comments (// and /* */), string literals kept as they are."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith('"""', i):
            j = text.find('"""', i + 3)
            j = n if j < 0 else j + 3
            while j < n and text[j] == '"':
                j += 1
            out.append(text[i:j])
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def build_code(root):
    return kotlin_code(read(root, BUILD))


def properties(text):
    """A Java .properties file's keys and values (enough of the format for Gradle's files)."""
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"((?:\\.|[^=:\s])+)\s*[=:\s]\s*(.*)", line)
        if m:
            props[m.group(1).replace("\\", "")] = m.group(2).replace("\\:", ":").replace("\\=", "=")
    return props


def block(code, name):
    """The text between the braces of the first top-level-looking `name {` block, or None."""
    m = re.search(r"(?<![\w.])" + re.escape(name) + r"\s*\{", code)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(code) and depth:
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[m.end() : i - 1]


def resolve(code, expr):
    """The value of a Kotlin expression that is a literal, or a `val` naming one (one level), as a
    string; templates and .toString() of a val are followed. None when it cannot be told."""
    expr = expr.strip()
    m = re.fullmatch(r'"([^"$]*)"|(\d+)', expr)
    if m:
        return m.group(1) if m.group(1) is not None else m.group(2)
    m = re.fullmatch(r'"\$\{?(\w+)\}?"|(\w+)(?:\.toString\(\))?', expr)
    if m:
        name = m.group(1) or m.group(2)
        v = re.search(r"\bva[lr]\s+" + name + r"\b\s*(?::\s*\w+\s*)?=\s*(\"[^\"\n]*\"|\d+)", code)
        if v:
            return resolve(code, v.group(1))
    return None


def assignment(code, prop):
    """The expression assigned to `prop = …` (e.g. minSdk, ndkVersion), or None."""
    m = re.search(r"(?<![\w.])" + re.escape(prop) + r"\s*=\s*([^\n;]+)", code)
    return m.group(1).strip() if m else None


# ---- the checks ------------------------------------------------------------------------------


@guard
def check_use_androidx(root):
    value = properties(read(root, PROPERTIES)).get("android.useAndroidX", "")
    if value.strip().lower() != "true":
        return (f"{PROPERTIES} does not set android.useAndroidX=true: AGP 8 refuses the AndroidX "
                "dependency (lifecycle-process) and the build stops at configuration")
    return None


@guard
def check_wrapper_files(root):
    names = ["android/gradlew", "android/gradlew.bat", WRAPPER_JAR, WRAPPER_PROPERTIES]
    missing = [n for n in names if not (Path(root) / n).is_file()]
    if missing:
        return (f"Gradle wrapper incomplete, missing {', '.join(missing)}: `./gradlew` is the "
                f"documented build, and without it the Gradle version ({GRADLE_VERSION}) is whatever "
                "is installed")
    if not (Path(root) / "android/gradlew").stat().st_mode & 0o111:
        return "android/gradlew is not executable: `./gradlew` fails with permission denied"
    return None


@guard
def check_wrapper_jar(root):
    path = Path(root) / WRAPPER_JAR
    if not path.is_file():
        return f"{WRAPPER_JAR} does not exist: `./gradlew` cannot start"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WRAPPER_JAR_SHA256:
        return (f"{WRAPPER_JAR} has SHA-256 {digest}, not Gradle's published {GRADLE_VERSION} wrapper "
                f"jar checksum {WRAPPER_JAR_SHA256[:12]}…: an unverified jar runs on every build")
    return None


@guard
def check_wrapper_pin(root):
    props = properties(read(root, WRAPPER_PROPERTIES))
    url = props.get("distributionUrl", "")
    if not re.search(r"/gradle-" + re.escape(GRADLE_VERSION) + r"-bin\.zip$", url):
        return (f"{WRAPPER_PROPERTIES} distributionUrl is {url!r}, not gradle-{GRADLE_VERSION}-bin.zip: "
                "AGP 8.7 and Kotlin 2.1 are pinned against Gradle 8.10.2")
    if props.get("distributionSha256Sum", "").strip().lower() != DISTRIBUTION_SHA256:
        return (f"{WRAPPER_PROPERTIES} has no distributionSha256Sum={DISTRIBUTION_SHA256[:12]}…: the "
                "downloaded Gradle distribution is not verified")
    return None


@guard
def check_cargo_16k(root):
    try:
        config = tomllib.loads(read(root, CARGO_CONFIG))
    except tomllib.TOMLDecodeError as e:
        return f"{CARGO_CONFIG} is not valid TOML ({e})"
    for triple in ANDROID_64BIT_TARGETS:
        flags = config.get("target", {}).get(triple, {}).get("rustflags", [])
        flags = " ".join(flags) if isinstance(flags, list) else str(flags)
        if not re.search(r"link-args?=\S*-z,?" + re.escape(PAGE_SIZE_FLAG), flags):
            return (f"{CARGO_CONFIG} [target.{triple}] rustflags lack -C link-arg=-Wl,-z,{PAGE_SIZE_FLAG}: "
                    "Google Play requires 16 KB-aligned LOAD segments for Android 15+, and an NDK "
                    "before r28 links 4 KB")
    return None


@guard
def check_ndk_pinned(root):
    code = build_code(root)
    expr = assignment(code, "ndkVersion")
    if expr is None or resolve(code, expr) != NDK_VERSION:
        return (f"{BUILD} does not pin ndkVersion = \"{NDK_VERSION}\": the NDK would be whatever is "
                "installed, and only r28+ links 16 KB-aligned by default")
    return None


def min_sdk_of(code):
    """The module's minSdk, when its value can be read (a literal or a val holding one)."""
    min_expr = assignment(code, "minSdk")
    return resolve(code, min_expr) if min_expr else None


@guard
def check_platform_is_min_sdk(root):
    code = build_code(root)
    min_sdk = min_sdk_of(code)
    if min_sdk is None:
        return f"{BUILD}: no minSdk whose value can be read (a literal or a val holding one)"
    m = re.search(r'"(?:--platform|-P)"\s*,\s*([^,\n]+)|"(?:--platform=|-P)(\$\{?\w+\}?|\d+)"', code)
    if not m:
        return (f"{BUILD}: cargo ndk gets no --platform/-P, so it links the Rust library for API 21 "
                f"(its default), not minSdk {min_sdk}")
    arg = m.group(1) if m.group(1) else '"' + m.group(2) + '"'
    while arg.count(")") > arg.count("("):  # the argument list's closing parenthesis
        arg = arg.rstrip()[:-1]
    platform = resolve(code, arg)
    if platform != min_sdk:
        return (f"{BUILD}: cargo ndk --platform is {platform or m.group(0)!r}, not minSdk {min_sdk}: "
                "the Rust library must be linked for the API level the AAR declares")
    return None


@guard
def check_packed_relocations(root):
    code = build_code(root)
    if not re.search(r'"--"\s*,\s*"-C"\s*,\s*"link-arg=-Wl,--pack-dyn-relocs=android"', code):
        return (f"{BUILD}: cargo ndk's rustc gets no `-- -C link-arg=-Wl,--pack-dyn-relocs=android`: the "
                "library ships its relative relocations unpacked, about 130 KB over what scripts/size measures")
    min_sdk = min_sdk_of(code)
    if min_sdk is None or int(min_sdk) < 23:
        return f"{BUILD}: packed relocations need minSdk 23 or later (the loader reads them from API 23), minSdk is {min_sdk}"
    return None


@guard
def check_ndk_home_exported(root):
    code = build_code(root)
    m = re.search(r'environment\s*(?:\(\s*(?:mapOf\(\s*)?|\[\s*|\.put\(\s*)"ANDROID_NDK_HOME"\s*'
                  r'(?:,|to|\]\s*=)\s*([^\n]+)', code)
    if not m:
        return (f"{BUILD}: the cargo-ndk Exec task does not set ANDROID_NDK_HOME: cargo-ndk reads it "
                f"before anything Gradle knows, so the pinned NDK {NDK_VERSION} is not the one used")
    value = m.group(1).strip()
    while value.count(")") > value.count("("):  # the call's closing parenthesis
        value = value[:-1].rstrip()
    name = re.fullmatch(r"(\w+)(?:\.\w+)*", value)
    if name:
        v = re.search(r"\bval\s+" + name.group(1) + r"\b[^=\n]*=\s*([^\n]+)", code)
        value = v.group(1) if v else value
    pinned_names = re.findall(r"\bval\s+(\w+)\b[^=\n]*=\s*\"" + re.escape(NDK_VERSION) + '"', code)
    if "ndk" not in value or not any(k in value for k in ["ndkVersion", NDK_VERSION, *pinned_names]):
        return (f"{BUILD}: ANDROID_NDK_HOME is set to {value.strip()!r}, not the pinned NDK's directory "
                f"(<sdk>/ndk/{NDK_VERSION})")
    return None


@guard
def check_cargo_from_property(root):
    code = build_code(root)
    if not re.search(r'(?:gradleProperty|findProperty|property)\(\s*"dualpub\.cargo"\s*\)', code):
        return (f"{BUILD} does not read the Gradle property dualpub.cargo: cargo comes from the Gradle "
                "daemon's PATH, and an Android Studio daemon's PATH usually lacks ~/.cargo/bin")
    if re.search(r'commandLine\s*\(\s*(?:listOf\(\s*)?"cargo"', code):
        return (f"{BUILD}: commandLine still starts with the literal \"cargo\", so the dualpub.cargo "
                "property is not what runs")
    if not re.search(r'bin/cargo|"bin"\s*\)?\s*[,.](?:\s*resolve\()?\s*"cargo"', code):
        return (f"{BUILD}: no fallback to ~/.cargo/bin/cargo when dualpub.cargo is unset: a daemon "
                "without ~/.cargo/bin on its PATH fails")
    return None


@guard
def check_keep_annotations(root):
    kept = []
    for line in read(root, CONSUMER_RULES).splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"-keepattributes\s+(.*)", line)
        if m:
            kept += [a.strip() for a in m.group(1).split(",") if a.strip() and not a.strip().startswith("!")]
    missing = [a for a in ("RuntimeVisibleAnnotations", "AnnotationDefault")
               if not any(fnmatch.fnmatchcase(a, pattern) for pattern in kept)]
    if missing:
        return (f"{CONSUMER_RULES} does not -keepattributes {','.join(missing)}: JNA reads the generated "
                "@Structure.FieldOrder by reflection, R8 full mode strips it, and minified release apps "
                "crash at the first call")
    return None


@guard
def check_api_dependencies(root):
    code = build_code(root)
    wrong = []
    for coordinate, why in [
        ("androidx.lifecycle:lifecycle-process:", "followProcessLifecycle returns an androidx.lifecycle type"),
        ("net.java.dev.jna:jna:", "the public generated classes extend JNA types"),
        ("org.jetbrains.kotlinx:kotlinx-coroutines-android:", "the generated async twins are suspend functions built on it"),
        ("androidx.work:work-runtime-ktx:", "DualPubUploadWorker is a public CoroutineWorker"),
    ]:
        if not re.search(r'(?<![\w.])api\s*\(\s*"' + re.escape(coordinate), code):
            wrong.append(f"{coordinate.rstrip(':')} ({why})")
    if wrong:
        return (f"{BUILD}: not an api dependency: {'; '.join(wrong)}: an implementation dependency is "
                "missing from the compile classpath of the app that uses those types")
    return None


@guard
def check_paths_from_project_dir(root):
    code = build_code(root)
    m = re.search(r"(?<![\w.])(rootDir|rootProject\.(?:projectDir|rootDir|layout))\b", code)
    if m:
        return (f"{BUILD} resolves paths from {m.group(1)}: when an app includes the module, that is the "
                "app's root, and the bindings sources and cargo's working directory are lost")
    if not re.search(r"(?<![\w.])projectDir\b|layout\.projectDirectory", code):
        return f"{BUILD} does not resolve the repository from projectDir"
    return None


@guard
def check_maven_publish(root):
    code = build_code(root)
    plugins = block(code, "plugins") or ""
    if not re.search(r"`maven-publish`|id\(\s*\"maven-publish\"\s*\)", plugins):
        return f"{BUILD} does not apply maven-publish: the AAR cannot be published with its dependencies"
    if not re.search(r'singleVariant\(\s*"release"\s*\)', code):
        return (f"{BUILD} has no android {{ publishing {{ singleVariant(\"release\") }} }}: AGP creates no "
                "\"release\" component to publish")
    if not re.search(r'from\(\s*components\s*(?:\[\s*"release"\s*\]|\.getByName\(\s*"release"\s*\))\s*\)', code):
        return (f"{BUILD}: no MavenPublication from(components[\"release\"]): nothing is published, and no "
                "POM carries JNA and lifecycle-process")
    return None


@guard
def check_no_plugin_versions_in_module(root):
    plugins = block(build_code(root), "plugins")
    if plugins is None:
        return f"{BUILD} has no plugins block"
    if re.search(r"\bversion\b|\balias\s*\(", plugins):
        return (f"{BUILD} declares plugin versions in its plugins block: a host build that includes the "
                "module with its own AGP fails on the second version")
    settings = kotlin_code(read(root, SETTINGS))
    managed = block(block(settings, "pluginManagement") or "", "plugins") or ""
    for plugin in ("com.android.library", "org.jetbrains.kotlin.android"):
        if not re.search(r'id\(\s*"' + re.escape(plugin) + r'"\s*\)\s*version\b', managed):
            return (f"{SETTINGS} pluginManagement {{ plugins {{ }} }} gives no version for {plugin}: "
                    "the module's own build cannot resolve the plugin")
    return None


@guard
def check_kotlin_compiler_options(root):
    code = build_code(root)
    if re.search(r"(?<![\w.])kotlinOptions\s*\{", code):
        return (f"{BUILD} uses kotlinOptions {{ }}, deprecated in Kotlin 2.x and an error in later "
                "releases: use kotlin { compilerOptions { jvmTarget } }")
    return None


CHECKS = [
    (1, "android/gradle.properties sets android.useAndroidX=true", check_use_androidx),
    (2, "gradlew, gradlew.bat, the wrapper jar and properties exist; gradlew is executable",
     check_wrapper_files),
    (2, f"the wrapper jar's SHA-256 is Gradle's {GRADLE_VERSION} checksum", check_wrapper_jar),
    (2, f"gradle-wrapper.properties pins gradle-{GRADLE_VERSION}-bin.zip and its SHA-256",
     check_wrapper_pin),
    (3, ".cargo/config.toml links aarch64/x86_64-linux-android with max-page-size=16384",
     check_cargo_16k),
    (3, f"build.gradle.kts pins ndkVersion {NDK_VERSION}", check_ndk_pinned),
    (3, "cargo ndk gets --platform equal to minSdk", check_platform_is_min_sdk),
    (3, "cargo ndk's rustc links with packed relocations (--pack-dyn-relocs=android), minSdk >= 23",
     check_packed_relocations),
    (3, "the cargo-ndk task exports ANDROID_NDK_HOME as the pinned NDK's directory",
     check_ndk_home_exported),
    (4, "cargo comes from the dualpub.cargo Gradle property, else ~/.cargo/bin/cargo",
     check_cargo_from_property),
    (5, "consumer-rules.pro keeps RuntimeVisibleAnnotations and AnnotationDefault",
     check_keep_annotations),
    (6, "lifecycle-process, JNA, kotlinx-coroutines and WorkManager are api dependencies", check_api_dependencies),
    (7, "build.gradle.kts resolves paths from projectDir, never rootDir", check_paths_from_project_dir),
    (7, "maven-publish, singleVariant(\"release\") and a publication from components[\"release\"]",
     check_maven_publish),
    (7, "no plugin versions in the module's plugins block; settings.gradle.kts has them",
     check_no_plugin_versions_in_module),
    (7, "kotlin { compilerOptions } instead of kotlinOptions", check_kotlin_compiler_options),
]


def run(root):
    """Runs every check; returns [(finding, what, message or None)]."""
    return [(finding, what, check(Path(root))) for finding, what, check in CHECKS]


# ---- self-test -------------------------------------------------------------------------------


def _edit(rel, old, new, count=1, regex=False):
    """A mutation of the copy: replaces old by new in rel; fails loudly if old is not there, so the
    self-test notices when the files drift from what it reverts."""

    def apply(root):
        path = Path(root) / rel
        text = path.read_text(encoding="utf-8")
        if regex:
            changed, n = re.subn(old, new, text)
        else:
            n = text.count(old)
            changed = text.replace(old, new)
        if n < count:
            raise AssertionError(f"self-test: {old!r} not found {count}x in {rel}")
        path.write_text(changed, encoding="utf-8")

    return apply


def _remove(rel):
    return lambda root: (Path(root) / rel).unlink()


def _chmod_minus_x(rel):
    return lambda root: os.chmod(Path(root) / rel, 0o644)


def _append_bytes(rel, data):
    def apply(root):
        with open(Path(root) / rel, "ab") as f:
            f.write(data)

    return apply


# (check, what the mutation undoes, mutation): each must make its check fail.
REVERTS = [
    (check_use_androidx, "android.useAndroidX removed", _edit(PROPERTIES, "android.useAndroidX=true\n", "")),
    (check_use_androidx, "gradle.properties removed", _remove(PROPERTIES)),
    (check_use_androidx, "android.useAndroidX=false", _edit(PROPERTIES, "android.useAndroidX=true", "android.useAndroidX=false")),
    (check_wrapper_files, "gradlew removed", _remove("android/gradlew")),
    (check_wrapper_files, "gradlew not executable", _chmod_minus_x("android/gradlew")),
    (check_wrapper_jar, "wrapper jar altered", _append_bytes(WRAPPER_JAR, b"\0")),
    (check_wrapper_pin, "distribution -all.zip", _edit(WRAPPER_PROPERTIES, "-bin.zip", "-all.zip")),
    (check_wrapper_pin, "distribution 8.9", _edit(WRAPPER_PROPERTIES, "gradle-8.10.2-bin", "gradle-8.9-bin")),
    (check_wrapper_pin, "distributionSha256Sum removed", _edit(WRAPPER_PROPERTIES, r"(?m)^distributionSha256Sum=.*\n", "", regex=True)),
    (check_cargo_16k, "[target.*-linux-android] tables removed",
     _edit(CARGO_CONFIG, r"\[target\.[\w-]+-linux-android\]\nrustflags = \[[^\]]*\]\n", "", count=2, regex=True)),
    (check_cargo_16k, "x86_64 rustflags removed",
     _edit(CARGO_CONFIG, r"(\[target\.x86_64-linux-android\]\n)rustflags = \[[^\]]*\]\n", r"\1", regex=True)),
    (check_ndk_pinned, "ndkVersion removed", _edit(BUILD, r"\n\s*ndkVersion\s*=.*", "", regex=True)),
    (check_ndk_pinned, "ndkVersion r27", _edit(BUILD, NDK_VERSION, "27.2.12479018")),
    (check_platform_is_min_sdk, "--platform removed", _edit(BUILD, r'\n\s*"--platform",[^\n]*', "", regex=True)),
    (check_packed_relocations, "no packed relocations",
     _edit(BUILD, r'\n\s*"--",\s*"-C",\s*"link-arg=-Wl,--pack-dyn-relocs=android",', "", regex=True)),
    (check_packed_relocations, "minSdk 21", _edit(BUILD, "val minSdkVersion = 24", "val minSdkVersion = 21")),
    (check_platform_is_min_sdk, "--platform 21", _edit(BUILD, r'("--platform",\s*)[^,\n]+', r'\1"21"', regex=True)),
    (check_ndk_home_exported, "ANDROID_NDK_HOME not exported", _edit(BUILD, r'\n\s*environment\("ANDROID_NDK_HOME"[^\n]*', "", regex=True)),
    (check_ndk_home_exported, "ANDROID_NDK_HOME from the environment",
     _edit(BUILD, r'environment\("ANDROID_NDK_HOME",[^\n]*', 'environment("ANDROID_NDK_HOME", System.getenv("ANDROID_NDK_ROOT"))', regex=True)),
    (check_cargo_from_property, "bare \"cargo\" again",
     _edit(BUILD, r'(?s)\nval cargo: String =.*?\?: "cargo"\n', "\n", regex=True)),
    (check_cargo_from_property, "commandLine(\"cargo\", …) again", _edit(BUILD, "cargo, \"ndk\"", "\"cargo\", \"ndk\"")),
    (check_cargo_from_property, "no ~/.cargo/bin/cargo fallback",
     _edit(BUILD, r"(?s)\n\s*\?: listOfNotNull\(.*?\?\.path", "", regex=True)),
    (check_keep_annotations, "-keepattributes removed", _edit(CONSUMER_RULES, r"(?m)^-keepattributes.*\n", "", regex=True)),
    (check_keep_annotations, "AnnotationDefault dropped", _edit(CONSUMER_RULES, ",AnnotationDefault", "")),
    (check_api_dependencies, "lifecycle-process as implementation",
     _edit(BUILD, 'api("androidx.lifecycle', 'implementation("androidx.lifecycle')),
    (check_api_dependencies, "JNA as implementation", _edit(BUILD, 'api("net.java.dev.jna', 'implementation("net.java.dev.jna')),
    (check_api_dependencies, "coroutines as implementation",
     _edit(BUILD, 'api("org.jetbrains.kotlinx', 'implementation("org.jetbrains.kotlinx')),
    (check_api_dependencies, "WorkManager removed", _edit(BUILD, r'\n\s*api\("androidx\.work:[^\n]*', "", regex=True)),
    (check_paths_from_project_dir, "rootDir.parentFile again", _edit(BUILD, "projectDir.parentFile", "rootDir.parentFile")),
    (check_maven_publish, "maven-publish not applied", _edit(BUILD, "`maven-publish`", "")),
    (check_maven_publish, "singleVariant removed", _edit(BUILD, r'(?s)\n\s*publishing \{\s*singleVariant\("release"\).*?\}\s*\}', "", regex=True)),
    (check_maven_publish, "publication removed", _edit(BUILD, r"(?s)\npublishing \{.*\Z", "\n", regex=True)),
    (check_no_plugin_versions_in_module, "AGP version back in the module",
     _edit(BUILD, 'id("com.android.library")', 'id("com.android.library") version "8.7.3"')),
    (check_no_plugin_versions_in_module, "settings without plugin versions",
     _edit(SETTINGS, r'(?s)\n\s*plugins \{\s*id\("com.android.library"\).*?\}', "", regex=True)),
    (check_kotlin_compiler_options, "kotlinOptions again",
     _edit(BUILD, "android {\n", 'android {\n    kotlinOptions {\n        jvmTarget = "17"\n    }\n')),
]

# Rewrites that keep every fix: all checks must still pass after each.
HARMLESS = [
    ("minSdk and --platform as literals",
     lambda r: (_edit(BUILD, r"minSdk = \w+", "minSdk = 24", regex=True)(r),
                _edit(BUILD, r'"--platform",\s*[^,\n]+', '"-P", "24"', regex=True)(r))),
    ("--platform as a template", _edit(BUILD, r'"--platform",\s*[^,\n]+', '"--platform", "$minSdkVersion"', regex=True)),
    ("ndkVersion as a literal", _edit(BUILD, r"ndkVersion = \w+", f'ndkVersion = "{NDK_VERSION}"', regex=True)),
    ("spaces inside calls", _edit(BUILD, r'api\("', 'api ( "', count=2, regex=True)),
    ("rustflags as one string",
     _edit(CARGO_CONFIG, r'rustflags = \["-C", "link-arg=-Wl,-z,max-page-size=16384"\]',
           'rustflags = "-C link-arg=-Wl,-z,max-page-size=16384"', count=2, regex=True)),
    ("keepattributes *Annotation*",
     _edit(CONSUMER_RULES, r"(?m)^-keepattributes.*$", "-keepattributes Signature, *Annotation*", regex=True)),
    ("a comment naming the plugin version",
     _edit(BUILD, "plugins {\n", "plugins {\n    // not: version \"8.7.3\"\n")),
]


def _copy(root, dest):
    for rel in ("android", ".cargo", "Cargo.toml"):
        src = Path(root) / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("build", ".gradle", ".kotlin"))
        else:
            shutil.copy2(src, dest / rel)


def self_test(root, out=sys.stdout):
    """Every check passes on root and after each harmless rewrite; each revert fails its check.
    Prints one line per case; returns True when all went as expected."""
    ok = True
    for finding, what, message in run(root):
        print(f"{'ok  ' if message is None else 'FAIL'} [{finding}] {what}" + (f": {message}" if message else ""), file=out)
        ok &= message is None
    for name, mutate in HARMLESS:
        with tempfile.TemporaryDirectory() as tmp:
            _copy(root, Path(tmp))
            mutate(tmp)
            failed = [m for _, _, m in run(tmp) if m]
        print(f"{'ok  ' if not failed else 'FAIL'} harmless: {name}" + (f": {failed[0]}" if failed else ""), file=out)
        ok &= not failed
    for check, name, mutate in REVERTS:
        with tempfile.TemporaryDirectory() as tmp:
            _copy(root, Path(tmp))
            mutate(tmp)
            message = check(Path(tmp))
        print(f"{'ok  ' if message else 'FAIL'} revert: {name} -> {message or 'check still passes'}", file=out)
        ok &= bool(message)
    return ok


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2]
    if "--self-test" in argv:
        return 0 if self_test(root) else 1
    failed = 0
    for finding, what, message in run(root):
        print(f"{'ok  ' if message is None else 'FAIL'} [{finding}] {what}" + (f": {message}" if message else ""))
        failed += message is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
