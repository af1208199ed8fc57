"""The Builder, Optimizer and Security agents: clients of the orchestrator, never writers.

An agent reads (the environment's resources, the data plane's metrics, the
intent log) and *proposes*: it submits intents through :class:`agents.client.Client`
like any other caller. It holds no key to the config repo and has no way
around admission, validation, policy or review.
"""
