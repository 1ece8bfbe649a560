//! include/testpilot.h is what cbindgen makes of src/c today.

use std::path::Path;

#[test]
fn the_checked_in_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bindings = cbindgen::generate(dir).expect("cbindgen reads crates/ffi");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = dir.join("include/testpilot.h");
    if std::env::var_os("TESTPILOT_WRITE_HEADER").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} differs from what src/c declares; regenerate it with\n  \
         TESTPILOT_WRITE_HEADER=1 cargo test -p testpilot-ffi --test it header\nand commit it",
        path.display()
    );
}
