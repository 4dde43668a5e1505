"""The benchmark of issue 5: Pulse against a raw-consumer ceiling and naive Faust apps.

`python -m bench` (or `make bench`) runs it; see bench/__main__.py.
"""
