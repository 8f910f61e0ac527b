"""The policy lifecycle (DESIGN §4, "policies/: policy registry and lifecycle"), below the admin API:

    compile.py    config + stored documents -> a guard plan (Snapshot, PolicyCache, pins)
    registry.py   the live plan: follows the store, validates and writes changes, versions and revert
    limits.py     caps on what the store may hold (patterns, keywords)
    training.py   training a policy version from its examples; the training jobs
    data.py       training rows, feedback from the monitoring log, synthetic rows from a generator
    applying.py   `apply-*` stages: where a policy runs (applications, models)

It imports the engine's vocabulary (guard, metrics, config, store); the admin routes and the app import it.
"""
