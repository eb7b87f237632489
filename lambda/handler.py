from intentflow_serving.app import handler  # noqa: F401  (the Lambda Handler setting: handler.handler)
