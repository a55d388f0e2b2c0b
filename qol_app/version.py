"""The app's version (stamped into exports and manifests); ``qol_app.__version__`` is the same."""

__version__ = "0.1.0"
