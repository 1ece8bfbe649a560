//! The reference host keeps its own records (registry, backups, staging) apart from the add-on
//! folders, so that no add-on id can name them.
//!
//! Regression: add-on ids `registry.json` and `registry.json.tmp` landed on the host's
//! registry (which lived in `addons/` beside the add-ons), corrupted it, and left undo stuck.

use crate::support::*;
use serde_json::{json, Value};
use testpilot_pilot::host::Host;
use testpilot_pilot::{Faults, ReferenceHost};

fn owner(host: &ReferenceHost, id: &str) -> Value {
    host.registry()
        .unwrap()
        .get(id)
        .map(|e| e["owner"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn ids_named_like_the_host_records_install_and_undo_without_touching_them() {
    let rig = Rig::new();
    rig.preinstall("own@x", "mine");
    let before = rig.snapshot();
    let pkg = rig.scratch("p.zip");
    let sha = zip_package(&pkg, &[("main.js", "theirs")]);
    let mut host = ReferenceHost::new(&rig.profile, Faults::default());
    // Flight validation refuses such ids; the host must hold even when one gets through.
    let ids = [
        "registry.json",
        "registry.json.tmp",
        "addon-host",
        "backup",
        "staging",
        "x.part",
    ];
    for (i, id) in ids.iter().enumerate() {
        host.addon_install(&format!("f.{i}"), id, &pkg, &sha)
            .unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        assert!(host.addon_present(id).unwrap());
        assert_eq!(owner(&host, id), json!(format!("f.{i}")), "{id}");
        assert_eq!(
            std::fs::read_to_string(rig.profile.join("addons").join(id).join("main.js")).unwrap(),
            "theirs"
        );
    }
    assert_eq!(owner(&host, "own@x"), json!("the-person"));
    for (i, id) in ids.iter().enumerate().rev() {
        host.addon_undo_install(&format!("f.{i}"), id).unwrap();
        // Undoing twice (after a crash) is harmless.
        host.addon_undo_install(&format!("f.{i}"), id).unwrap();
    }
    assert_eq!(host.registry().unwrap().len(), 1);
    assert_eq!(rig.snapshot(), before);
}

#[test]
fn an_uninstall_of_an_id_named_like_the_registry_is_put_back() {
    let rig = Rig::new();
    rig.preinstall("registry.json", "kept");
    rig.preinstall("own@x", "mine");
    let before = rig.snapshot();
    let mut host = ReferenceHost::new(&rig.profile, Faults::default());
    host.addon_uninstall("f.1", "registry.json").unwrap();
    assert!(!host.addon_present("registry.json").unwrap());
    assert_eq!(owner(&host, "own@x"), json!("the-person"));
    host.addon_undo_uninstall("f.1", "registry.json").unwrap();
    assert_eq!(rig.snapshot(), before);
}

#[test]
fn unsafe_ids_are_refused_by_the_host_and_change_nothing() {
    let rig = Rig::new();
    rig.preinstall("own@x", "mine");
    let before = rig.snapshot();
    let pkg = rig.scratch("p.zip");
    let sha = zip_package(&pkg, &[("main.js", "x")]);
    let mut host = ReferenceHost::new(&rig.profile, Faults::default());
    for id in [
        "",
        "..",
        ".",
        ".backup",
        "a/b",
        "../own@x",
        "a\\b",
        "c:x",
        "x\u{1b}[2J",
    ] {
        let e = host
            .addon_install("f.1", id, &pkg, &sha)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be used"), "{id:?}: {e}");
        let e = host.addon_uninstall("f.2", id).unwrap_err().to_string();
        assert!(e.contains("cannot be used"), "{id:?}: {e}");
        assert!(!host.addon_present(id).unwrap(), "{id:?}");
        host.addon_undo_install("f.1", id).unwrap();
        host.addon_undo_uninstall("f.2", id).unwrap();
        assert_eq!(rig.snapshot(), before, "{id:?}");
    }
}

#[test]
fn a_profile_with_the_records_inside_addons_is_moved_and_its_undo_still_works() {
    let rig = Rig::new();
    // As a pilot before the records moved left it: a flight (key f.1) installed `new@x` over the
    // person's copy, kept aside in `addons/.backup/f.1`; an install (f.2) stopped half-way.
    let addons = rig.profile.join("addons");
    for (path, text) in [
        ("own@x/main.js", "mine"),
        ("new@x/main.js", "the flight's"),
        (
            ".backup/f.1/entry.json",
            r#"{"owner": "the-person", "sha256": "00"}"#,
        ),
        (".backup/f.1/content/main.js", "the person's"),
        (".tmp-f.2/main.js", "half"),
        (
            "registry.json",
            r#"{"own@x": {"owner": "the-person"}, "new@x": {"owner": "f.1", "sha256": "11"}}"#,
        ),
    ] {
        let p = addons.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let mut host = ReferenceHost::new(&rig.profile, Faults::default());
    assert_eq!(owner(&host, "new@x"), json!("f.1"));
    let mut names: Vec<String> = std::fs::read_dir(&addons)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["new@x", "own@x"],
        "only add-ons are left in addons/"
    );
    assert!(rig.profile.join("addon-host/registry.json").is_file());
    host.addon_undo_install("f.1", "new@x").unwrap();
    assert_eq!(
        std::fs::read_to_string(addons.join("new@x/main.js")).unwrap(),
        "the person's"
    );
    assert_eq!(owner(&host, "new@x"), json!("the-person"));
    assert!(!rig.profile.join("addon-host/backup").exists());
}
