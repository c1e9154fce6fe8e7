"""Function names shared by the orchestrators, the blueprint and the local runner (one spelling)."""

DEPLOYMENT_GATE = "deployment_gate"
APPROVAL_CHAIN = "approval_chain"

EVALUATE = "gate_evaluate"
REQUEST_APPROVAL = "gate_request_approval"
NOTIFY = "gate_notify"
CALLBACK = "gate_callback"
OPEN_HUMAN_TASK = "gate_open_human_task"
RECORD_OUTCOME = "gate_record_outcome"
AUDIT = "gate_audit"
