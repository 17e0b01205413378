//! The OpenAPI document against the committed one and the route table.

#[test]
fn the_committed_document_is_the_generated_one() {
    let committed = include_str!("../../../../docs/openapi.json");
    assert!(
        committed == super::document_json(),
        "docs/openapi.json is stale: run `outpost-control-plane openapi > docs/openapi.json`"
    );
}

#[test]
fn every_route_is_documented_once_with_its_path_parameters() {
    let doc = super::document();
    let mut n = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            n += 1;
            let route = crate::api::ROUTES
                .iter()
                .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
                .unwrap_or_else(|| panic!("{method} {path} documented but not routed"));
            assert_eq!(op["operationId"], route.action);
            let named = path.matches('{').count();
            let declared = op["parameters"].as_array().expect("params").iter().filter(|p| p["in"] == "path").count();
            assert_eq!(named, declared, "{method} {path}");
        }
    }
    assert_eq!(n, crate::api::ROUTES.len());
}

#[test]
fn the_error_schema_shows_a_real_refusal_and_the_tags_list_their_values() {
    let doc = super::document();
    let schemas = &doc["components"]["schemas"];
    let example = &schemas["Error"]["example"];
    assert_eq!(example["code"], "invalid_request");
    let message = example["message"].as_str().expect("a refusal of the real parser");
    assert!(message.starts_with(r#"params[0]: "5" is a string, not a parameter; for $1 write"#), "{message}");
    let kind = schemas["PieRender"]["properties"]["kind"]["description"].as_str().expect("described");
    assert!(kind.contains(&outpost_protocol::RENDER_KINDS.join(", ")) && kind.ends_with("`pie` here."), "{kind}");
    let t = schemas["IntParam"]["properties"]["type"]["description"].as_str().expect("described");
    assert!(t.contains("null, bool, int, float, text") && t.ends_with("`int` here."), "{t}");
}
