//! The OpenFeature provider (docs/embedding.md, "OpenFeature"), read through OpenFeature's
//! client as an application does, from a pilot that runs flights from a signed index file.

use crate::fixture::{flight, wait_until, FileIndex};
use open_feature::provider::ProviderMetadata;
use open_feature::{
    EvaluationErrorCode, EvaluationReason, FlagMetadataValue, OpenFeature, StructValue, Value,
};
use serde_json::json;
use std::sync::Arc;
use testpilot_pilot::embed::openfeature::TestPilotProvider;
use testpilot_pilot::EmbeddedPilot;

#[tokio::test]
async fn flags_read_through_openfeature_are_the_features_flights_set() {
    let index = FileIndex::new();
    let mut armed = flight("theme-test", json!([{"action": "wait", "for": "30d"}]));
    armed["arms"] = json!([{"name": "blue", "ratio": 1, "flightplan": [
        {"action": "feature", "id": "theme", "value": {"name": "blue"}},
        {"action": "wait", "for": "30d"}
    ]}]);
    let mut sampled = flight(
        "tabs-rollout",
        json!([{"action": "feature", "id": "tabs", "value": {"vertical": true}}, {"action": "wait", "for": "30d"}]),
    );
    // Nearly everyone: person-1 is in, and the flight still samples.
    sampled["randomDeploy"] = json!({"keyname": "tabs", "ge": 0.0, "lt": 0.9999});
    index.publish(
        1,
        vec![
            flight(
                "search-bar-2027",
                json!([
                    {"action": "feature", "id": "search.bar", "value": {
                        "on": true, "color": "red", "size": 3, "ratio": 0.5,
                        "nested": {"deep": [1, {"x": "y"}]}, "gone": null
                    }},
                    {"action": "wait", "for": "30d"}
                ]),
            ),
            armed,
            sampled,
        ],
    );
    let pilot = Arc::new(EmbeddedPilot::open(index.config("p"), None).unwrap());
    pilot.start().unwrap();
    wait_until("the three features are on", || pilot.features().len() == 3);

    // A name of this test's own: other tests may use the process's OpenFeature too.
    let name = "testpilot-flags-read-through-openfeature";
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(name, TestPilotProvider::new(pilot.clone()))
        .await;
    assert_eq!(
        api.named_provider_metadata(name).await,
        Some(ProviderMetadata::new("testpilot"))
    );
    let client = api.create_named_client(name);
    drop(api);

    // Fields by type, through a dot path after the feature's id (which has a dot itself).
    assert!(client
        .get_bool_value("search.bar.on", None, None)
        .await
        .unwrap());
    assert_eq!(
        client
            .get_string_value("search.bar.color", None, None)
            .await
            .unwrap(),
        "red"
    );
    assert_eq!(
        client
            .get_int_value("search.bar.size", None, None)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        client
            .get_float_value("search.bar.ratio", None, None)
            .await
            .unwrap(),
        0.5
    );
    assert_eq!(
        client
            .get_float_value("search.bar.size", None, None)
            .await
            .unwrap(),
        3.0
    );
    assert_eq!(
        client
            .get_string_value("search.bar.nested.deep.1.x", None, None)
            .await
            .unwrap(),
        "y"
    );

    // The feature's whole value, an object; null fields left out.
    let whole = client
        .get_struct_details::<StructValue>("search.bar", None, None)
        .await
        .unwrap();
    assert_eq!(whole.value.fields["on"], Value::Bool(true));
    assert_eq!(whole.value.fields["size"], Value::Int(3));
    assert!(!whole.value.fields.contains_key("gone"));
    assert_eq!(whole.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(whole.variant, None);
    assert_eq!(
        whole.flag_metadata.values["studyname"],
        FlagMetadataValue::String("search-bar-2027".into())
    );
    assert_eq!(
        whole.flag_metadata.values["version"],
        FlagMetadataValue::Int(1)
    );

    // Arms: the arm is the variant, and chance picked it.
    let theme = client
        .get_string_details("theme.name", None, None)
        .await
        .unwrap();
    assert_eq!(theme.value, "blue");
    assert_eq!(theme.variant.as_deref(), Some("blue"));
    assert_eq!(theme.reason, Some(EvaluationReason::Split));
    // A sample of people: chance too, without a variant.
    let tabs = client
        .get_bool_details("tabs.vertical", None, None)
        .await
        .unwrap();
    assert!(tabs.value);
    assert_eq!(tabs.reason, Some(EvaluationReason::Split));
    assert_eq!(tabs.variant, None);

    // No flight sets it, or the feature lacks the field: the default, and why.
    let none = client
        .get_bool_details("dark.mode", None, None)
        .await
        .unwrap();
    assert!(!none.value);
    assert_eq!(none.reason, Some(EvaluationReason::Default));
    assert_eq!(
        none.flag_metadata.values["message"],
        FlagMetadataValue::String(
            "no flight in effect on this machine sets the feature `dark.mode`".into()
        )
    );
    let field = client
        .get_int_details("search.bar.width", None, None)
        .await
        .unwrap();
    assert_eq!(
        (field.value, field.reason),
        (0, Some(EvaluationReason::Default))
    );
    assert_eq!(
        field.flag_metadata.values["message"],
        FlagMetadataValue::String(
            "the feature `search.bar` set by the flight `search-bar-2027` has no field `width`"
                .into()
        )
    );

    // Another type: an error that names the field and both types.
    let err = client
        .get_bool_value("search.bar.color", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::TypeMismatch);
    assert_eq!(
        err.message.as_deref(),
        Some("the field `color` of the feature `search.bar` (set by the flight `search-bar-2027`) is a string, not a bool")
    );
    let err = client
        .get_int_value("search.bar.ratio", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::TypeMismatch);
    assert!(err
        .message
        .unwrap()
        .contains("a number with a fraction, not an integer"));
    let err = client
        .get_struct_value::<StructValue>("search.bar.on", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::TypeMismatch);
    let err = client
        .get_bool_value("search.bar", None, None)
        .await
        .unwrap_err();
    assert!(err
        .message
        .unwrap()
        .contains("the feature `search.bar` (set by"));
    let err = client
        .get_bool_value(&"k.".repeat(600), None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::ParseError);

    // The person leaves the flight: its flags fall back to the default.
    pilot.optout(Some("search-bar-2027")).unwrap();
    let gone = client
        .get_bool_details("search.bar.on", None, None)
        .await
        .unwrap();
    assert_eq!(
        (gone.value, gone.reason),
        (false, Some(EvaluationReason::Default))
    );
    pilot.stop().unwrap();
}
