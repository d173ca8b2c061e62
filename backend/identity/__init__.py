"""Identity and access: clinics, staff, patients, enrolment, devices, tokens and the access rules.

Public API for other domain areas:

- ``backend.identity.access``: ``access(...)`` builds the declarative rule every route carries
  (``opt=access(Role.CLINICIAN, scope=Scope.PATIENT)``); ``Scope`` and ``AccessRule``.
- ``backend.identity.principal``: ``Principal`` (who is calling) and ``PRINCIPAL_DEPENDENCIES``
  (``dependencies=`` on a controller gives handlers ``principal: NamedDependency[Principal]``).
- ``backend.identity.roles``: ``Role``.
- ``backend.identity.middleware``: ``AccessControlMiddleware`` (authenticates the bearer token and
  enforces each route's rule before the handler runs; registered once in ``backend/app.py``).
"""
