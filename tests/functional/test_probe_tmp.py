import time
from tests.functional import base

class NovaDefault(base.RLSchedulerTestBase):
    RL_ENABLED = False
    def test_seq(self):
        t=time.monotonic()
        hosts = self.boot_sequence(8)
        print("SEQ", hosts, time.monotonic()-t)
    def test_nothing(self):
        pass
