"""The serving function: the FastAPI app (``intentflow_serving.app``, whose ``handler`` is Mangum over
it), its settings, the request path, the model store, review routing and AWS access. It runs the
inference part of mlcore alone: no torch, transformers or Django (lambda/build.py packages it)."""
