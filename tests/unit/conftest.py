"""Host unit tests: the fakes' plugins, and hypothesis without per-example deadlines
(a loaded 2-core CI machine runs an example many times slower than an idle one; speed is
measured in bench/)."""

from hypothesis import settings

#: the fakes, each a pytest plugin under tests/plugins/, registered here once
pytest_plugins = ["plugins.copy_lab", "plugins.copy_steps", "plugins.faults",
                  "plugins.fake_configfs", "plugins.fake_lio", "plugins.foreign_lab",
                  "plugins.scsi_loopback", "plugins.tcmu_ring"]

settings.register_profile("lio-xcopy", deadline=None)
settings.load_profile("lio-xcopy")
