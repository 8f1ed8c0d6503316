"""The Kubernetes adapter: the API seam, targets, jobs, people, leadership and the reconciler.

`api.py` is the only module of the project that imports the `kubernetes` client.
"""
