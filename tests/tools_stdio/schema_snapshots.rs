//! Every tool's definition (title, description, annotations, input and output schema)
//! is snapshotted, so any change to what clients see is deliberate: review it with
//! `cargo insta review` (or delete the .snap file and rerun the test).

use bitrix24_task_results_mcp::tools::REGISTRY;

#[test]
fn tool_definitions_are_unchanged() {
    for tool in REGISTRY {
        let definition = serde_json::to_value(tool.definition()).unwrap();
        insta::assert_json_snapshot!(tool.name(), definition);
    }
}
