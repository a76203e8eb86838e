//! Every tool's definition (title, description, annotations, input and output schema)
//! is snapshotted, so any change to what clients see is deliberate: review it with
//! `cargo insta review` (or delete the .snap file and rerun the test).

use bitrix24_task_results_mcp::server::ToolKind;

#[test]
fn tool_definitions_are_unchanged() {
    for kind in ToolKind::ALL {
        let tool = serde_json::to_value(kind.definition()).unwrap();
        insta::assert_json_snapshot!(kind.name(), tool);
    }
}
