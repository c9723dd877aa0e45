"""fbsflow's Prefect flows: orchestration only, reading like the task card's method steps."""
