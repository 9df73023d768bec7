package io.dualpub.android

/**
 * This fix as a dualpub location. Fields the fix does not have are left out of the wire JSON;
 * [battery] is the battery level as a fraction in [0, 1], if the app wants to report it.
 */
@JvmOverloads
fun android.location.Location.toDualPub(battery: Double? = null): io.dualpub.Location =
    io.dualpub.Location(
        latitude = latitude,
        longitude = longitude,
        accuracy = if (hasAccuracy()) accuracy.toDouble() else null,
        speed = if (hasSpeed()) speed.toDouble() else null,
        bearing = if (hasBearing()) bearing.toDouble() else null,
        altitude = if (hasAltitude()) altitude else null,
        timestampMs = time,
        battery = battery,
    )
