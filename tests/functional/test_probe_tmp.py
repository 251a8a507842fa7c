from tests.functional import base

class NovaDefault(base.RLSchedulerTestBase):
    RL_ENABLED = False
    def test_seq(self):
        self.boot_sequence(2)
        print(self.stdlog.logger.output)
