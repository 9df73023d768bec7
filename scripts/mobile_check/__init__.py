"""Text and symbol guards for the Android and iOS packaging (scripts/mobile-check)."""
