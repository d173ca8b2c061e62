"""The clinician dashboard: server-rendered pages under ``/dashboard`` (issue 10).

Public API: ``router.DASHBOARD_ROUTER`` / ``DASHBOARD_STATIC_ROUTER`` (mounted in
``backend/routes.py``), ``router.dashboard_template_config()`` and
``session.DashboardSessionMiddleware`` (in ``backend/app.py``, before access control),
``plots.trajectory_svg``.
"""
