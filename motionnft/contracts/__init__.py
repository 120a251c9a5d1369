"""The wire contract: request/response models, the image codec, problem bodies and typed clients.

Both the services and their callers import from here, so the two sides cannot drift apart.
"""
