// A minimal app that uses the dualpub library module the way an app team would: it includes
// `android/` as a project (`projectDir`), builds its release variant with R8 in full mode, and
// carries an instrumented test. CI builds it and runs both on an emulator
// (.github/workflows/mobile.yml). Build from android/: `./gradlew -p sample assembleRelease`.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
    plugins {
        id("com.android.application") version "8.7.3"
        id("com.android.library") version "8.7.3"
        id("org.jetbrains.kotlin.android") version "2.1.0"
    }
}

dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "dualpub-sample"
include(":app")
// The library module, as an app includes it.
include(":dualpub")
project(":dualpub").projectDir = file("..")
