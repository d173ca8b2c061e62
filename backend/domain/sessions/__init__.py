"""Treatment courses and sessions (issue 6): records, observations, re-planned check-ins."""
