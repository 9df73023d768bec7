// The dualpub Android library (AAR): the Rust core built with cargo-ndk for three ABIs, the
// generated Kotlin bindings from ../bindings/kotlin, the Android helpers in src/main/kotlin,
// JNA's AAR, and consumer ProGuard rules that keep JNA working under R8.
//
// Needs JDK 17, the Android SDK (platform 35) with NDK 29.0.14206865, cargo-ndk >= 4.1
// (`cargo install cargo-ndk --version 4.1.2 --locked`) and the Rust targets aarch64-linux-android,
// armv7-linux-androideabi and x86_64-linux-android. Build with the wrapper in this directory
// (Gradle 8.10.2): `./gradlew assembleRelease`. Step by step: README.md.

import org.jetbrains.kotlin.gradle.dsl.JvmTarget

// No plugin versions here: built on its own, the versions come from settings.gradle.kts
// (pluginManagement); included into an app's build, the app's AGP and Kotlin plugins are used.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
    `maven-publish`
}

// Paths from this module's own directory, never rootDir: when an app includes the module, rootDir
// is the app's root.
val repoRoot: File = projectDir.parentFile
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")

// The lowest Android API level supported: the app's minSdk and the API level the Rust library is
// linked against (cargo-ndk's --platform; its default, 21, would not match).
val minSdkVersion = 24
// NDK r29: links 16 KB-aligned libraries by default (Google Play requires that of 64-bit
// libraries for Android 15+), and GitHub's Ubuntu runners have it preinstalled.
val pinnedNdkVersion = "29.0.14206865"

// The AAR's version is the crate's: [workspace.package] version in the repository's Cargo.toml.
val cargoToml = repoRoot.resolve("Cargo.toml")
val crateVersion: String =
    Regex("""(?m)^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)""")
        .find(cargoToml.readText())?.groupValues?.get(1)
        ?: error("no version under [workspace.package] in $cargoToml")
group = "io.dualpub"
version = crateVersion

android {
    namespace = "io.dualpub"
    compileSdk = 35
    ndkVersion = pinnedNdkVersion
    defaultConfig {
        minSdk = minSdkVersion
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].apply {
        java.srcDirs(File(repoRoot, "bindings/kotlin/src/main/kotlin"), "src/main/kotlin")
        jniLibs.srcDirs(rustJniLibs)
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    // The release variant as the "release" software component, with a sources jar.
    publishing {
        singleVariant("release") {
            withSourcesJar()
        }
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

// All are `api`, not `implementation`: they are part of this library's public API, so an app
// compiling against it needs them on its own compile classpath (and the published POM lists them
// as compile-scope dependencies).
dependencies {
    // JNA: the public generated classes extend JNA types (RustBuffer is a com.sun.jna.Structure).
    // The AAR flavour carries JNA's native stubs for every Android ABI.
    api("net.java.dev.jna:jna:5.18.1@aar")
    // kotlinx-coroutines: the generated async twins (DualPublisher.open, flushAsync, ...) are
    // suspend functions built on it. Keep in step with COROUTINES_VERSION in scripts/setup.sh.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.11.0")
    // ProcessLifecycleOwner for DualPub.followProcessLifecycle (foreground-only config fetches),
    // which returns an androidx.lifecycle.DefaultLifecycleObserver.
    api("androidx.lifecycle:lifecycle-process:2.8.7")
    // WorkManager for DualPubUploadWorker (a public CoroutineWorker), which drains the outbox in
    // the background once a network is there.
    api("androidx.work:work-runtime-ktx:2.10.0")
}

// The Rust library, size-optimised (Cargo profile.release: opt-level z, LTO, strip). `cargo rustc
// --crate-type cdylib` builds the .so alone: `cargo build` would compile it in one rustc call with
// the rlib and cargo runs no LTO on such a call (about 1 MB larger, docs/SIZE.md). cargo-ndk passes
// the subcommand through and copies the cdylib it reports into jniLibs/<abi>/. From the repository
// root, so .cargo/config.toml (the SQLite options, the 16 KB page alignment) applies.
//
// cargo is not looked up on the Gradle daemon's PATH alone: a daemon started by Android Studio
// (macOS especially) usually has no ~/.cargo/bin on it. The Gradle property dualpub.cargo wins
// (~/.gradle/gradle.properties or -Pdualpub.cargo=/path/to/cargo), then $CARGO_HOME/bin/cargo and
// ~/.cargo/bin/cargo if they exist, then `cargo` on the PATH.
val cargo: String = providers.gradleProperty("dualpub.cargo").orNull
    ?: listOfNotNull(System.getenv("CARGO_HOME"), File(System.getProperty("user.home"), ".cargo").path)
        .filter { it.isNotEmpty() }
        .map { File(it, "bin/cargo") }
        .firstOrNull { it.isFile }?.path
    ?: "cargo"

val cargoNdk by tasks.registering(Exec::class) {
    workingDir = repoRoot
    // cargo-ndk takes the NDK from ANDROID_NDK_HOME first (then ANDROID_NDK_ROOT, ..., then the
    // highest $ANDROID_HOME/ndk/*) and never from Gradle's ndkVersion; on GitHub runners
    // ANDROID_NDK_HOME is the image's default NDK. Point it at the pinned one.
    val ndkDir = android.sdkDirectory.resolve("ndk/$pinnedNdkVersion")
    environment("ANDROID_NDK_HOME", ndkDir.path)
    doFirst {
        check(ndkDir.isDirectory) {
            "NDK $pinnedNdkVersion is not installed at $ndkDir: " +
                "sdkmanager --install \"ndk;$pinnedNdkVersion\" (android/README.md)"
        }
    }
    commandLine(
        cargo, "ndk",
        "-t", "arm64-v8a", "-t", "armeabi-v7a", "-t", "x86_64",
        "--platform", minSdkVersion.toString(),
        "-o", rustJniLibs.get().asFile.path,
        "rustc", "--release", "--locked", "-p", "dualpub", "--lib", "--crate-type", "cdylib",
        // Relative relocations packed (Android's APS2, read by the loader from API 23; minSdk is
        // 24): about 130 KB less (docs/SIZE.md, cut 7). Only the final link changes.
        "--", "-C", "link-arg=-Wl,--pack-dyn-relocs=android",
    )
}
tasks.named("preBuild") { dependsOn(cargoNdk) }

// `./gradlew publishToMavenLocal` publishes io.dualpub:dualpub-android:<crate version>: the AAR,
// its sources, and a POM (and Gradle module metadata) listing JNA (type aar) and lifecycle-process.
publishing {
    publications {
        register<MavenPublication>("release") {
            groupId = "io.dualpub"
            artifactId = "dualpub-android"
            version = crateVersion
            afterEvaluate {
                from(components["release"])
            }
        }
    }
}
