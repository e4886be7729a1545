"""Design stage: expand runs, verify resources, estimate cost, render experiment_summary.md."""
