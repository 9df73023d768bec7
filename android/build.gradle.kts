// The dualpub Android library (AAR): the Rust core built with cargo-ndk for three ABIs, the
// generated Kotlin bindings from ../bindings/kotlin, the Android helpers in src/main/kotlin,
// JNA's AAR, and consumer ProGuard rules that keep JNA working under R8.
//
// Needs the Android SDK + NDK, `cargo install cargo-ndk`, and the Rust targets
// aarch64-linux-android, armv7-linux-androideabi and x86_64-linux-android. Build with the
// wrapper in this directory (Gradle 8.10.2): `./gradlew assembleRelease`.
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.0"
}

val repoRoot = rootDir.parentFile
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")

android {
    namespace = "io.dualpub"
    compileSdk = 35
    defaultConfig {
        minSdk = 24
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
    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    // The AAR flavour carries JNA's native stubs for every Android ABI.
    implementation("net.java.dev.jna:jna:5.18.1@aar")
    // ProcessLifecycleOwner for DualPub.followProcessLifecycle (foreground-only config fetches).
    implementation("androidx.lifecycle:lifecycle-process:2.8.7")
}

// The Rust library, size-optimised (Cargo profile.release: opt-level z, LTO, strip). `cargo rustc
// --crate-type cdylib` builds the .so alone: `cargo build` would compile it in one rustc call with
// the rlib and cargo runs no LTO on such a call (about 1 MB larger, docs/SIZE.md). cargo-ndk passes
// the subcommand through and copies the cdylib it reports into jniLibs/<abi>/. From the repository
// root, so .cargo/config.toml (the SQLite options) applies.
val cargoNdk by tasks.registering(Exec::class) {
    workingDir = repoRoot
    commandLine(
        "cargo", "ndk",
        "-t", "arm64-v8a", "-t", "armeabi-v7a", "-t", "x86_64",
        "-o", rustJniLibs.get().asFile.path,
        "rustc", "--release", "--locked", "-p", "dualpub", "--lib", "--crate-type", "cdylib",
    )
}
tasks.named("preBuild") { dependsOn(cargoNdk) }
