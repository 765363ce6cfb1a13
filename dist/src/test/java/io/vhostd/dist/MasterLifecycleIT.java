package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code bin/vhostd master} as a process, without a guest (needs no QEMU): it becomes ready on its
 * controller socket, SIGTERM stops it together with every process it started, and a new master starts on
 * the same paths after that.
 */
@Tag("integration")
class MasterLifecycleIT {

    private static final Duration READY_TIMEOUT = Duration.ofSeconds(60);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);

    private ItEnv env;
    private MasterConfig config;

    @BeforeEach
    void writeConfig() throws IOException {
        env = ItEnv.forTest(getClass());
        config = MasterConfig.temporary(env, "MasterLifecycleIT", 64L << 20, 2);
    }

    @AfterEach
    void deleteFiles() throws IOException {
        config.deleteFiles();
    }

    @Test
    @Timeout(value = 2, unit = TimeUnit.MINUTES)
    void shouldLeaveNoProcessWhenMasterGetsSigterm() throws Exception {
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("sigterm.log"))) {
            master.awaitReady(READY_TIMEOUT);
            assertNoSurvivors(master);
        }
    }

    @Test
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldStartAgainWhenPreviousMasterStoppedOnSamePaths() throws Exception {
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("restart-1.log"))) {
            master.awaitReady(READY_TIMEOUT);
            assertNoSurvivors(master);
        }
        try (VhostdMaster master = VhostdMaster.start(env, config, env.logDir().resolve("restart-2.log"))) {
            master.awaitReady(READY_TIMEOUT);
            assertNoSurvivors(master);
        }
    }

    private static void assertNoSurvivors(VhostdMaster master) throws InterruptedException {
        List<String> survivors = master.terminate(STOP_TIMEOUT);
        assertTrue(
                survivors.isEmpty(),
                "still running " + STOP_TIMEOUT + " after SIGTERM to the master (killed now): " + survivors + "\n"
                        + master.logTail());
    }
}
