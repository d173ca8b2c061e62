"""Channel fallback for check-in notifications nobody confirmed.

A check-in's first push starts a watch (same transaction); until the app reports a receipt, the
patient answers or the window closes, a timer re-sends the push once, then texts the patient if
they opted in to SMS, then gives the clinic a task to follow up — all before the window closes.

- `timings.json`: the steps and their delays (data, not code).
- `plan`: pure decisions (when each step is due, what to do now).
- `repository`: the SQL (watch, claim with a lease, compare-and-swap advance).
- `timer`: the timer every instance runs; `tasks`: the staff tasks it creates.
"""
