//! `uniffi-bindgen`, pinned to the uniffi version of the SDK, so generated bindings always match
//! the scaffolding compiled into the library. Usage:
//! `cargo run -p uniffi-bindgen -- generate --library target/debug/libdualpub.so --language kotlin --out-dir bindings/kotlin`
fn main() {
    uniffi::uniffi_bindgen_main()
}
