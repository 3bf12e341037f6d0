"""Host unit tests: hypothesis without per-example deadlines (a loaded 2-core CI machine
runs an example many times slower than an idle one; speed is measured in bench/)."""

from hypothesis import settings

settings.register_profile("lio-xcopy", deadline=None)
settings.load_profile("lio-xcopy")
