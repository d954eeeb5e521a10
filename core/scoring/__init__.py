"""Model runtimes: the objects training builds, MLflow stores and the service scores with.

They live here (not in ``training/``) because the service must unpickle and run them
without importing the offline jobs. They are plain numpy: no pandas, no per-call sklearn
input validation on the request path.
"""
