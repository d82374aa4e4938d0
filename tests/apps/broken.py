"""An app module that cannot be imported."""

raise RuntimeError("this app is broken on purpose")
