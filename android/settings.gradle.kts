// Used when android/ is built on its own (./gradlew here). An app that includes the module builds
// it with the app's settings and plugin versions instead (README.md).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
    // The plugin versions, kept out of build.gradle.kts so that a host build's own AGP and Kotlin
    // plugins apply when it includes the module.
    plugins {
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
rootProject.name = "dualpub-android"
