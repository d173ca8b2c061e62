"""A synthetic demo clinic for newcomers and the dashboard's browser tests (``interlude demo``).

Public API: ``seed.seed_demo_clinic``, ``seed.DemoClinic``, ``cohort.simulate_demo_cohort``.
"""
