"""fbsflow's work: domain models, content, planning, delivery and records, as Prefect tasks."""
