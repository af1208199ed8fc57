"""The default policy bundle (``constraints/bundle/``) and its loader (:mod:`constraints.bundle`)."""
