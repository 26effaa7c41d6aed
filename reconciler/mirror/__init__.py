"""GitHub Deployments mirrored as promotions into the environments repo.

`mapping` reads the mapping file, `core` turns one deployment into one
promotion, `webhook` receives `deployment` events, `poller` lists deployments
through the REST API, and `ledger` remembers what was handled across restarts.
"""
