"""Registry tests (a package, so this conftest does not shadow the `conftest` module other tests import)."""
