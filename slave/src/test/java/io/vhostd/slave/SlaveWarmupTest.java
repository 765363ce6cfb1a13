package io.vhostd.slave;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The warm-up a slave runs before its hello (issue #4): it must take a scratch session over and release it. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SlaveWarmupTest {

    @org.junit.jupiter.params.ParameterizedTest(name = "inflight region: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {true, false})
    void shouldTakeOverAndHandOverCarriedRequestsWhenRehearsingHandover(boolean inflightRegion) {
        // the adoption takes the scratch reads over as a rolling upgrade's carried requests; the release reports them,
        // and every scratch request went through the data path in between; QEMU's session has an inflight region
        // (INFLIGHT_SHMFD), libblkio's none
        SlaveWarmup.Rehearsal r = assertDoesNotThrow(
                () -> SlaveWarmup.rehearseHandover(2_000, TimeUnit.SECONDS.toNanos(30), () -> false, inflightRegion));
        assertEquals(SlaveWarmup.CARRIED, r.handedOver());
        assertEquals(2_000, r.requests());
        assertEquals(0, r.failed());
    }

    @Test
    void shouldStopScratchRequestsAndStillHandOverWhenHurried() {
        // a handover waits for this standby: the rehearsal stops posting at its next look and still releases cleanly
        java.util.concurrent.atomic.AtomicInteger looks = new java.util.concurrent.atomic.AtomicInteger();
        SlaveWarmup.Rehearsal r = assertDoesNotThrow(() -> SlaveWarmup.rehearseHandover(
                40_000, TimeUnit.SECONDS.toNanos(30), () -> looks.incrementAndGet() > 1, true));
        assertEquals(SlaveWarmup.CARRIED, r.handedOver());
        assertTrue(r.requests() >= 1_024 && r.requests() < 2_048, "requests " + r.requests());
        assertEquals(0, r.failed());
    }

    @Test
    void shouldSkipEveryStepLeftWhenHurriedBeforeWarmingUp() {
        String summary = SlaveWarmup.run(() -> true);
        assertTrue(
                summary.startsWith("hurried warm-up: 0 classes")
                        && summary.contains("control messages (0 round trips)")
                        && summary.contains("handover rehearsals (0 requests through the data path, 0 failed)"),
                summary);
    }

    @Test
    void shouldReportEveryStepWhenRun() {
        String summary = SlaveWarmup.run(() -> false);
        // the two rehearsals ran (SlaveWarmup counts every request; fewer when a loaded machine ran out of the budget)
        java.util.regex.Matcher m = java.util.regex.Pattern.compile(
                        "handover rehearsals \\((\\d+) requests through the data path, 0 failed\\)")
                .matcher(summary);
        assertTrue(summary.startsWith("warm-up: ") && summary.contains("classes in") && m.find(), summary);
        int requests = Integer.parseInt(m.group(1));
        assertTrue(requests > 0 && requests <= 2 * SlaveWarmup.DATA_PATH_REQUESTS, summary);
    }

    /** run() leaves the background codec warm-up running; a slave stops it when the master gives work. */
    @org.junit.jupiter.api.AfterAll
    static void stopBackgroundWarmUp() {
        SlaveWarmup.atWork();
    }
}
