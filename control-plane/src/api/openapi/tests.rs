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
