"""The paper's tables and figures, and the studies beyond it, as scripts run as modules from the
repository root: ``python -m experiments.<script> --jobs 2``. `experiments.harness` holds what they
share (cases, runs, fingerprints, aggregation), `experiments.variants` the named variants,
`experiments.report` writes docs/results.md from the committed tables."""
