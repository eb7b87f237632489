"""The REST API as the project configures it: its routes, its parser, permissions, error answers
and schema. Each app keeps its own views and serializers (webapp/<app>/api/)."""
