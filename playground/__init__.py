"""Prompt Cache Playground: the Django project and its apps."""
