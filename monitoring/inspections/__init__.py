"""Post-loan inspections: plans, the officer's form, review and the task pages."""
